"""Per-sample gradient reductions: (1/N) Σ_n w_n |g_n| or (1/N) Σ_n w_n g_n², what the diagonal
Fisher (EWC) and MAS's importance are made of.

Owns `per_sample_gradient_mean` and its two exact ways to compute it. The general one works on
any model: per-sample gradients from `torch.func.vmap` over `torch.func.grad` of a functional
call, in chunks, with no Python loop over samples. It materialises one gradient per example
(N × parameters numbers), which for an MLP costs many times one batched backward pass.

The fast one is for models whose trainable weights all sit in `nn.Linear` and `MultiHead` layers
(every MLP here). A linear layer's per-sample gradient is the outer product g_n = δ_n a_nᵀ of the
gradient δ_n at its output and its input a_n, and squaring or taking the absolute value acts on
each factor: Σ_n w_n (δ_n a_nᵀ)² = (w·δ²)ᵀ(a²) and Σ_n w_n |δ_n a_nᵀ| = (w·|δ|)ᵀ|a| (Goodfellow
2015, "Efficient per-example gradient computations"). The δ_n are the output gradients of one
batched backward pass of the summed per-sample losses — per-sample gradients still, never the
gradient of the mean — so the result is the same number, one matrix product per layer instead of
N outer products.

The fast path reads a_n, δ_n and the task labels from forward hooks, so it must be sure they are
what the layer really computed with; whenever it is not, it returns a reason and the general path
runs instead (silently: the answer is the same, only slower). It gives up on trainable layers
other than linear ones (convolutions), a layer called twice, inputs with extra dimensions, a
multi-head layer whose task labels it cannot read (positional or keyword), and a recorded input
or output that an in-place operation rewrote later in `forward` (`F.relu(h, inplace=True)`: the
gradient taken at that tensor would be the one after the ReLU). As a last safeguard against
what those checks do not foresee (a weight also used outside its layer, say), the same backward
pass takes the gradient G of the summed loss with respect to the weights, and the un-reduced
Σ_n δ_n a_nᵀ must equal it up to float rounding. That costs autograd's product for G, one more
matrix product per layer; the comparison itself is along a fixed direction v, G v = δᵀ(a v),
vectors only. An expectation over K labels (EWC's exact Fisher) shares the forward pass: one
backward pass per label down to the layer outputs, and still one product per layer in all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lifelong.data.task import Inputs, TensorData, map_inputs
from lifelong.models.heads import MultiHead

Params = dict[str, Tensor]
Reduce = Literal["square", "abs"]
Method = Literal["auto", "vmap", "linear"]
# (logits (B, C), labels (B,)) -> the B per-example losses
SampleLoss = Callable[[Tensor, Tensor], Tensor]

_REDUCE: dict[str, Callable[[Tensor], Tensor]] = {"square": torch.Tensor.square_,
                                                   "abs": torch.Tensor.abs_}


def per_sample_gradient_mean(model: nn.Module, data: TensorData, sample_loss: SampleLoss,
                             reduce: Reduce, *, weights: Tensor | None = None,
                             method: Method = "auto", budget: int | None = None) -> Params:
    """(1/N) Σ_n w_n · reduce(∂ sample_loss(f(x_n), y_n) / ∂θ) for every trainable parameter.

    The model runs in eval mode (no dropout noise), as at test time, with the task labels
    `data.t` (so a multi-head model uses each example's own head).

    Args:
        sample_loss: per-example losses of a batch of logits and labels.
        reduce: ``"square"`` (Fisher) or ``"abs"`` (MAS), applied per example and weight.
        weights: None (every w_n = 1); shape (N,): a factor w_n per example, with the labels
            `data.y`; or shape (N, K): a factor w_nk for every label k < K, summed over k
            (`data.y` is not read) — an expectation over labels, such as EWC's exact Fisher
            with w_nk = p_θ(k|x_n). The closed form shares one forward pass among the K labels.
        method: ``"auto"`` (the linear closed form where it applies, else vmap), or force one.
        budget: gradient entries per vmap chunk (default 4M on the CPU — small enough to stay
            in cache, several times faster than one huge chunk — and 128M on a GPU).

    Raises:
        ValueError: `weights` has neither shape, or ``method="linear"`` on a model the closed
            form does not apply to (the message says why).
    """
    if weights is not None and (weights.dim() not in (1, 2) or len(weights) != len(data)):
        raise ValueError(f"weights has shape {tuple(weights.shape)}; expected one row per "
                         f"example, ({len(data)},) or ({len(data)}, number of labels)")
    labels = _labels(data, weights)
    was_training = model.training
    model.eval()
    try:
        if method != "vmap":
            out = _linear_closed_form(model, data, labels, sample_loss, reduce)
            if not isinstance(out, str):
                return out
            if method == "linear":
                raise ValueError(f"{type(model).__name__}: the linear closed form does not "
                                 f"apply: {out}; use method='vmap' or 'auto'")
        return _vmap(model, data, labels, sample_loss, reduce, budget)
    finally:
        model.train(was_training)


# Labels with their per-example weights (None = 1): the result is the sum over the list.
Labels = list[tuple[Tensor, Tensor | None]]


def _labels(data: TensorData, weights: Tensor | None) -> Labels:
    if weights is None or weights.dim() == 1:
        return [(data.y, weights)]
    # A label no example gives any weight adds nothing: skip its backward pass.
    return [(torch.full_like(data.y, k), weights[:, k]) for k in range(weights.shape[1])
            if bool(weights[:, k].any())]


def _vmap(model: nn.Module, data: TensorData, labels: Labels, sample_loss: SampleLoss,
          reduce: Reduce, budget: int | None) -> Params:
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    size = sum(p.numel() for p in params.values())
    if budget is None:
        on_gpu = any(p.device.type == "cuda" for p in params.values())
        budget = 1 << 27 if on_gpu else 1 << 22
    chunk = max(8, min(len(data), budget // max(size, 1)))

    def one(p: Params, x: Inputs, y: Tensor, t: Tensor) -> Tensor:
        logits = functional_call(model, (p, buffers),
                                 (map_inputs(x, lambda v: v.unsqueeze(0)), t.unsqueeze(0)))
        return sample_loss(logits, y.unsqueeze(0)).sum()

    per_sample = vmap(grad(one), in_dims=(None, 0, 0, 0))
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    fn = _REDUCE[reduce]
    for y, w in labels:
        for start in range(0, len(data), chunk):
            stop = start + chunk
            rows = data.slice(start, stop)
            grads = per_sample(params, rows.x, y[start:stop], rows.t)
            for n, g in grads.items():
                part = fn(g)  # the per-sample gradients are fresh: reduce in place
                if w is None:
                    totals[n] += part.sum(0)
                else:
                    totals[n] += torch.tensordot(w[start:stop].to(part), part, dims=1)
    return {n: v / max(len(data), 1) for n, v in totals.items()}


@dataclass(frozen=True, slots=True)
class _Call:
    """One call of a linear layer as a forward hook saw it, with the version counters of its
    input and output then (an in-place operation later in `forward` bumps them)."""

    layer: nn.Linear | MultiHead
    a: Tensor
    out: Tensor
    heads: Tensor | None  # the task label of each row, for a layer with several heads
    versions: tuple[int, int]


def _linear_closed_form(model: nn.Module, data: TensorData, labels: Labels,
                        sample_loss: SampleLoss, reduce: Reduce,
                        chunk: int = 4096) -> Params | str:
    """The exact result for models built of `nn.Linear` / `MultiHead` layers, or the reason it
    cannot be sure of it (then the caller takes the vmap path)."""
    names = {id(p): n for n, p in model.named_parameters()}
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, MultiHead))]
    owned = {id(p) for m in layers for p in m.parameters(recurse=False)}
    if not layers or any(p.requires_grad and id(p) not in owned for p in model.parameters()):
        return "it is not made of linear layers alone"
    calls: list[_Call] = []
    problems: list[str] = []

    def record(m: nn.Module, args: tuple[object, ...], kwargs: dict[str, object],
               out: object) -> None:
        assert isinstance(m, (nn.Linear, MultiHead))
        # The task label reaches a head positionally or by keyword; a hook without kwargs
        # would see none and put every example on head 0.
        a = args[0] if args else kwargs.get("h" if isinstance(m, MultiHead) else "input")
        t = args[1] if len(args) > 1 else kwargs.get("t")
        if not isinstance(a, Tensor) or not isinstance(out, Tensor) or a.dim() != 2:
            problems.append(f"a {type(m).__name__} input is not one 2-D tensor")
            return
        heads = None
        if isinstance(m, MultiHead) and m.num_heads > 1:
            if isinstance(t, int):
                heads = torch.full((len(a),), t, dtype=torch.long, device=a.device)
            elif isinstance(t, Tensor) and not t.is_floating_point() \
                    and tuple(t.shape) in ((), (len(a),)):
                heads = t.expand(len(a))
            else:
                problems.append("a multi-head layer's task labels cannot be read")
                return
        calls.append(_Call(m, a.detach(), out, heads, (a._version, out._version)))

    hooks = [m.register_forward_hook(record, with_kwargs=True) for m in layers]
    fn = _REDUCE[reduce]
    totals: Params = {}
    try:
        for start in range(0, len(data), chunk):
            calls.clear()
            rows = slice(start, start + chunk)
            with torch.enable_grad():
                some = data.slice(rows.start, rows.stop)
                logits = model(some.x, some.t)
                losses = [sample_loss(logits, y[rows]).sum() for y, _ in labels]
                if problems:
                    return problems[0]
                if len({id(c.layer) for c in calls}) != len(calls):
                    return "a linear layer is called more than once"
                if any((c.a._version, c.out._version) != c.versions for c in calls):
                    return "an in-place operation rewrote a linear layer's input or output"
                # A frozen layer fed by nothing trainable has an output outside the graph (and
                # no parameter to estimate): leave it out.
                used = [c for c in calls if c.out.requires_grad and _trainable(c.layer)]
                if not used:
                    continue
                # Σ_n w_n reduce(δ_n) per layer, over the labels: one product with reduce(a)
                # per layer at the end, however many labels.
                sums = _reduced_deltas(used, labels, losses, rows, fn)
            if isinstance(sums, str):
                return sums
            for c, d in zip(used, sums, strict=True):
                act = fn(c.a.clone())
                for param, part in ((c.layer.weight, d.T @ act), (c.layer.bias, d.sum(0))):
                    if param is None or not param.requires_grad:
                        continue
                    name = names[id(param)]
                    totals[name] = totals[name] + part if name in totals else part
    finally:
        for h in hooks:
            h.remove()
    return {n: totals[n] / max(len(data), 1) if n in totals else torch.zeros_like(p)
            for n, p in model.named_parameters() if p.requires_grad}


def _reduced_deltas(used: list[_Call], labels: Labels, losses: list[Tensor], rows: slice,
                    fn: Callable[[Tensor], Tensor]) -> list[Tensor] | str:
    """Σ_k w_k · reduce(δ_k) at each layer's (full) output, one backward pass per label k from
    the shared forward pass; or the reason the first label's δ fail the check."""
    params = [p for c in used for p in _trainable(c.layer)]
    batch: dict[int, Tensor | None] = {}
    sums: list[Tensor] = []
    for k, ((_, w), loss) in enumerate(zip(labels, losses, strict=True)):
        # The first pass also takes the parameters' batch gradients, to check the closed form
        # against (`_agrees`); the other labels reuse the same graph, which that vouches for.
        grads = torch.autograd.grad(loss, [c.out for c in used] + (params if k == 0 else []),
                                    allow_unused=True, retain_graph=k < len(labels) - 1)
        if k == 0:
            batch = dict(zip(map(id, params), grads[len(used):], strict=True))
        for i, (c, delta) in enumerate(zip(used, grads[:len(used)], strict=True)):
            if delta is None:
                delta = torch.zeros_like(c.out)
            if c.heads is not None:
                assert isinstance(c.layer, MultiHead)
                delta = _spread_over_heads(c.layer, delta, c.heads)
            if k == 0 and not _agrees(c.layer, c.a, delta, batch):
                return "Σ_n δ_n a_nᵀ differs from the batch gradient of the summed loss"
            d = fn(delta.detach().clone())
            if w is not None:
                d *= w[rows].to(d)[:, None]
            if k == 0:
                sums.append(d)
            else:
                sums[i] += d
    return sums


def _trainable(m: nn.Linear | MultiHead) -> list[Tensor]:
    return [p for p in (m.weight, m.bias) if p is not None and p.requires_grad]


def _agrees(m: nn.Linear | MultiHead, a: Tensor, delta: Tensor,
            batch: dict[int, Tensor | None]) -> bool:
    """Whether Σ_n δ_n a_nᵀ and Σ_n δ_n equal the batch gradients autograd took, up to the
    rounding of sums of that many terms.

    The weight is compared along a fixed direction v: G v against δᵀ(a v), vectors only. A
    wrong δ (or a) makes each row of the difference a sum of N errors of both signs, of order
    1/√N of the sum of the terms' magnitudes, well above float rounding for any chunk."""
    tol = _tolerance(delta.dtype)
    checks: list[tuple[Tensor | None, Tensor | None, Tensor, Tensor]] = []
    if m.weight.requires_grad:
        v = torch.linspace(1.0, 2.0, a.shape[1], dtype=a.dtype, device=a.device)
        av = a @ v
        checks.append((batch[id(m.weight)], v, delta.T @ av, delta.abs().T @ (a.abs() @ v)))
    if m.bias is not None and m.bias.requires_grad:
        checks.append((batch[id(m.bias)], None, delta.sum(0), delta.abs().sum(0)))
    for g, direction, got, scale in checks:
        want = torch.zeros_like(got) if g is None else g if direction is None else g @ direction
        if not bool(((want - got).abs() <= tol * scale).all()):
            return False
    return True


def _tolerance(dtype: torch.dtype) -> float:
    """A relative tolerance for sums computed in two orders: √ε of the dtype, or more where
    float32 matrix products may round their inputs to TF32 or bfloat16."""
    eps = torch.finfo(dtype).eps
    rounded = {"high": 2.0 ** -10, "medium": 2.0 ** -7}.get(
        torch.get_float32_matmul_precision())
    if dtype == torch.float32 and rounded is not None:
        return float(max(eps ** 0.5, 4 * rounded))
    return float(eps ** 0.5)


def _spread_over_heads(m: MultiHead, delta: Tensor, heads: Tensor) -> Tensor:
    """The gradient at a multi-head layer's full output, from the one at the selected head's."""
    n = len(delta)
    full = torch.zeros(n, m.num_heads, m.num_outputs, dtype=delta.dtype, device=delta.device)
    full[torch.arange(n, device=delta.device), heads] = delta
    return full.view(n, m.num_heads * m.num_outputs)
