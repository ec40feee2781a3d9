"""Flat-gradient helpers shared by GEM and A-GEM, and their two projections as pure functions.

Owns gathering the gradients of the trainable parameters into one vector and writing one back,
the gradients of the memory loss (one per past task, or one for a memory batch), GEM's
quadratic program (Lopez-Paz & Ranzato 2017, Eqs. 10–11) and A-GEM's closed form (Chaudhry et
al. 2019, Eq. 11). Does not own the memory (`lifelong.memory`) or when a method projects (its
`after_backward`).

Speed: past-task gradients are one (k, P) matrix, computed by one `torch.func.vmap` over tasks
of the gradient of each task's memory loss, so k tasks cost one Python call and k·m examples
of arithmetic (a plain batched backward with k grad-outputs would cost k·(k·m)).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.task import Batch, Inputs, map_inputs
from lifelong.memory import PerTask

Solver = Literal["quadprog", "nnls"]


def flat_grad(params: Sequence[nn.Parameter]) -> Tensor:
    """The gradients of `params` as one vector (zeros where a parameter got no gradient)."""
    return torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).view(-1)
                      for p in params])


def write_grad(params: Sequence[nn.Parameter], flat: Tensor) -> None:
    """Copy `flat` back into the `.grad` of `params` (the inverse of `flat_grad`). A parameter
    that had no gradient keeps none where its part is all zeros, so weight decay or momentum
    do not start moving a parameter the step never touched."""
    for p, part in zip(params, torch.split(flat, [p.numel() for p in params]), strict=True):
        if p.grad is not None:
            p.grad.copy_(part.view_as(p))
        elif bool(part.any()):  # rare (a parameter unused by this batch): one check
            p.grad = part.view_as(p).clone()


def memory_gradient(model: nn.Module, params: Sequence[nn.Parameter], batch: Batch) -> Tensor:
    """∇ of the mean cross-entropy on `batch` with respect to `params`, as one vector."""
    loss = F.cross_entropy(model(batch.x, batch.t), batch.y)
    grads = torch.autograd.grad(loss, list(params), allow_unused=True, materialize_grads=True)
    return torch.cat([g.reshape(-1) for g in grads])


class TaskGradients:
    """Computes G, the (k, P) matrix whose row j is ∇ of the mean loss on task j's memories.

    One `vmap` over the task rows of a `PerTask` layout. A single task, or a model `torch.func`
    cannot map (e.g. one that updates buffers in place), takes a loop over tasks instead: the
    same numbers.
    """

    def __init__(self, model: nn.Module, params: list[nn.Parameter]) -> None:
        self.model, self.params = model, params
        name_of = {id(p): n for n, p in model.named_parameters()}
        self.names = [name_of[id(p)] for p in params]  # in the order of `params`
        self.vmapped: Callable[..., tuple[Tensor, ...]] | None = None
        self.use_loop = False

    def _task_loss(self, params: tuple[Tensor, ...], x: Inputs, y: Tensor, t: Tensor,
                   w: Tensor) -> Tensor:
        out = torch.func.functional_call(self.model, dict(zip(self.names, params, strict=True)),
                                         (x, t))
        return (F.cross_entropy(out, y, reduction="none") * w).sum() / w.sum()

    def __call__(self, mem: PerTask) -> Tensor:
        k = mem.y.shape[0]
        # vmap's fixed cost (about a millisecond of Python on a CPU) pays off from two tasks on.
        if k > 1 and not self.use_loop:
            if self.vmapped is None:
                self.vmapped = torch.func.vmap(torch.func.grad(self._task_loss),
                                               in_dims=(None, 0, 0, 0, 0))
            try:
                with torch.no_grad():  # torch.func.grad ignores it; no outer graph is built
                    grads = self.vmapped(tuple(self.params), mem.x, mem.y, mem.t, mem.weight)
                return torch.cat([g.reshape(k, -1) for g in grads], dim=1)
            except torch.cuda.OutOfMemoryError:
                raise  # not a vmap limitation: the memories do not fit; say so
            except (RuntimeError, NotImplementedError) as e:
                warnings.warn(f"GEM: per-task memory gradients cannot be vectorised for this "
                              f"model ({type(e).__name__}: {str(e)[:200]}); computing them one "
                              "task at a time from now on (same result, slower)",
                              RuntimeWarning, stacklevel=2)
                self.use_loop = True
        rows = []
        for j in range(k):
            real = mem.weight[j] > 0
            x = map_inputs(mem.x, lambda v, j=j, real=real: v[j][real])  # type: ignore[misc]
            rows.append(memory_gradient(self.model, self.params,
                                        Batch(x, mem.y[j][real], mem.t[j][real])))
        return torch.stack(rows)


def gem_project(g: Tensor, G: Tensor, *, margin: float = 0.0,
                solver: Solver = "quadprog") -> Tensor:
    """GEM's projection (Lopez-Paz & Ranzato 2017, Eqs. 10–11).

    The primal, min_z ½‖g − z‖² s.t. G z ≥ 0 (no past task's loss may increase to first order),
    is solved through its dual over the k rows of G:

        v* = argmin_v ½ vᵀ(G Gᵀ)v + gᵀGᵀv   s.t. v ≥ margin,      g̃ = Gᵀv* + g.

    `margin` is the paper's γ ("memory_strength"): a floor on v that biases the update towards
    positive backward transfer, as in the authors' code (γ = 0 is the exact projection).
    `solver="quadprog"` is Goldfarb–Idnani, the solver the authors use; a Gram matrix that is
    not numerically positive definite (parallel task gradients) falls back to "nnls", which
    solves the same dual as non-negative least squares with scipy and needs no definiteness.

    Args:
        g: the current gradient, shape (P,).
        G: one past-task gradient per row, shape (k, P).
    Returns:
        g̃, shape (P,), same dtype and device as `g`.
    """
    gram = (G @ G.T).double().cpu().numpy()
    # With v = margin + u, u ≥ 0, the linear term becomes G(g + margin·Gᵀ1).
    lin = (G @ g).double().cpu().numpy() + margin * gram.sum(axis=1)
    if solver == "quadprog":
        try:
            u = _dual_quadprog(gram, lin)
        except ValueError:  # "matrix G is not positive definite"
            u = _dual_nnls(gram, lin)
    elif solver == "nnls":
        u = _dual_nnls(gram, lin)
    else:
        raise ValueError(f"gem_project: solver={solver!r} is not 'quadprog' or 'nnls'")
    v = torch.as_tensor(u + margin, dtype=g.dtype, device=g.device)
    return g + v @ G


def _dual_quadprog(gram: np.ndarray, lin: np.ndarray) -> np.ndarray:
    """min_u ½uᵀ·gram·u + linᵀu s.t. u ≥ 0, with quadprog (min ½xᵀGx − aᵀx s.t. Cᵀx ≥ b)."""
    import quadprog

    k = len(lin)
    # A ridge 1e-10 of the largest diagonal: keeps a well-conditioned Gram unchanged to
    # working precision, and lets quadprog accept a nearly singular one.
    ridge = 1e-10 * max(float(np.max(np.diag(gram))), 1e-30)
    sol = quadprog.solve_qp(gram + ridge * np.eye(k), -lin, np.eye(k), np.zeros(k))
    return np.maximum(np.asarray(sol[0], dtype=np.float64), 0.0)


def _dual_nnls(gram: np.ndarray, lin: np.ndarray) -> np.ndarray:
    """The same dual as ‖A u − b‖² with u ≥ 0, where AᵀA = gram and Aᵀb = −lin.

    From gram = QΛQᵀ: A = Λ^½Qᵀ and b = −Λ^−½Qᵀlin on the eigenvalues above round-off (lin lies
    in the range of gram, since lin = G·(something)). Only k×k: P never reaches scipy.
    """
    from scipy.optimize import nnls

    lam, Q = np.linalg.eigh(gram)
    keep = lam > 1e-12 * max(float(lam.max()), 1e-30)
    root = np.sqrt(lam[keep])
    A = root[:, None] * Q[:, keep].T
    b = -(Q[:, keep].T @ lin) / root
    u, _ = nnls(A, b)
    return np.asarray(u, dtype=np.float64)


def agem_project(g: Tensor, ref: Tensor) -> Tensor:
    """A-GEM's projection (Chaudhry et al. 2019, Eq. 11): if gᵀg_ref < 0,
    g̃ = g − (gᵀg_ref / g_refᵀg_ref)·g_ref, else g. One reference gradient, no QP.

    Branch-free (no host sync): the coefficient is clamped to ≤ 0 and 0 when g_ref is 0.
    """
    dot = torch.dot(g, ref)
    norm = torch.dot(ref, ref)
    coef = torch.where(norm > 0, dot.clamp(max=0.0) / norm.clamp(min=torch.finfo(g.dtype).tiny),
                       torch.zeros_like(dot))
    return g - coef * ref
