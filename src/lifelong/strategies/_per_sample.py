"""Per-sample gradient reductions: (1/N) Σ_n |g_n| or (1/N) Σ_n g_n², what the diagonal Fisher
(EWC) and MAS's importance are made of.

Owns `per_sample_gradient_mean` and its two exact ways to compute it. The general one works on
any model: per-sample gradients from `torch.func.vmap` over `torch.func.grad` of a functional
call, in chunks, with no Python loop over samples. It materialises one gradient per example
(N × parameters numbers), which for an MLP costs ~25 batched backward passes.

The fast one is for models whose trainable weights all sit in `nn.Linear` and `MultiHead` layers
(every MLP here). A linear layer's per-sample gradient is the outer product g_n = δ_n a_nᵀ of the
gradient δ_n at its output and its input a_n, and squaring or taking the absolute value acts on
each factor: Σ_n (δ_n a_nᵀ)² = (δ²)ᵀ(a²) and Σ_n |δ_n a_nᵀ| = |δ|ᵀ|a| (Goodfellow 2015,
"Efficient per-example gradient computations"). The δ_n are the output gradients of one batched
backward pass of the summed per-sample losses — per-sample gradients still, never the gradient
of the mean — so the result is the same number, one matrix product per layer instead of N
outer products. Models where that does not hold (convolutions, a layer used twice, inputs with
extra dimensions) take the general path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lifelong.data.task import TensorData
from lifelong.models.heads import MultiHead

Params = dict[str, Tensor]
Reduce = Literal["square", "abs"]
Method = Literal["auto", "vmap", "linear"]
# (logits (B, C), labels (B,)) -> the B per-example losses
SampleLoss = Callable[[Tensor, Tensor], Tensor]

_REDUCE: dict[str, Callable[[Tensor], Tensor]] = {"square": torch.Tensor.square_,
                                                   "abs": torch.Tensor.abs_}


def per_sample_gradient_mean(model: nn.Module, data: TensorData, sample_loss: SampleLoss,
                             reduce: Reduce, *, method: Method = "auto",
                             budget: int | None = None) -> Params:
    """(1/N) Σ_n reduce(∂ sample_loss(f(x_n), y_n) / ∂θ) for every trainable parameter.

    The model runs in eval mode (no dropout noise), as at test time, with the task labels
    `data.t` (so a multi-head model uses each example's own head).

    Args:
        sample_loss: per-example losses of a batch of logits and labels.
        reduce: ``"square"`` (Fisher) or ``"abs"`` (MAS), applied per example and weight.
        method: ``"auto"`` (the linear closed form where it applies, else vmap), or force one.
        budget: gradient entries per vmap chunk (default 4M on the CPU — small enough to stay
            in cache, several times faster than one huge chunk — and 128M on a GPU).
    """
    was_training = model.training
    model.eval()
    try:
        if method != "vmap":
            out = _linear_closed_form(model, data, sample_loss, reduce)
            if out is not None:
                return out
            if method == "linear":
                raise ValueError(f"{type(model).__name__} is not made of linear layers alone; "
                                 "use method='vmap' or 'auto'")
        return _vmap(model, data, sample_loss, reduce, budget)
    finally:
        model.train(was_training)


def _vmap(model: nn.Module, data: TensorData, sample_loss: SampleLoss, reduce: Reduce,
          budget: int | None) -> Params:
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    size = sum(p.numel() for p in params.values())
    if budget is None:
        on_gpu = any(p.device.type == "cuda" for p in params.values())
        budget = 1 << 27 if on_gpu else 1 << 22
    chunk = max(8, min(len(data), budget // max(size, 1)))

    def one(p: Params, x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0), t.unsqueeze(0)))
        return sample_loss(logits, y.unsqueeze(0)).sum()

    per_sample = vmap(grad(one), in_dims=(None, 0, 0, 0))
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    fn = _REDUCE[reduce]
    for start in range(0, len(data), chunk):
        stop = start + chunk
        grads = per_sample(params, data.x[start:stop], data.y[start:stop], data.t[start:stop])
        for n, g in grads.items():
            totals[n] += fn(g).sum(0)  # the per-sample gradients are fresh: reduce in place
    return {n: v / max(len(data), 1) for n, v in totals.items()}


def _linear_closed_form(model: nn.Module, data: TensorData, sample_loss: SampleLoss,
                        reduce: Reduce, chunk: int = 4096) -> Params | None:
    """The exact result for models built of `nn.Linear` / `MultiHead` layers, or None."""
    names = {id(p): n for n, p in model.named_parameters()}
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, MultiHead))]
    owned = {id(p) for m in layers for p in m.parameters(recurse=False)}
    if not layers or any(p.requires_grad and id(p) not in owned for p in model.parameters()) \
            or any(getattr(m, "inplace", False) for m in model.modules()):
        return None  # other trainable layers, or an in-place op that rewrites a layer output
    seen: dict[nn.Module, list[tuple[Tensor, Tensor, Tensor | None]]] = {}

    def record(m: nn.Module, inputs: tuple[object, ...], output: Tensor) -> None:
        a, t = inputs[0], inputs[1] if len(inputs) > 1 else None
        assert isinstance(a, Tensor)
        if isinstance(t, int):
            t = torch.full((len(a),), t, dtype=torch.long, device=a.device)
        seen.setdefault(m, []).append((a.detach(), output,
                                       t if isinstance(t, Tensor) else None))

    hooks = [m.register_forward_hook(record) for m in layers]
    fn = _REDUCE[reduce]
    totals: Params = {}
    try:
        for start in range(0, len(data), chunk):
            seen.clear()
            x, y, t = (v[start:start + chunk] for v in (data.x, data.y, data.t))
            with torch.enable_grad():
                loss = sample_loss(model(x, t), y).sum()  # per-sample output gradients
                calls = [(m, *c[0]) for m, c in seen.items()]
                if any(len(c) != 1 for c in seen.values()) or any(
                        a.dim() != 2 for _, a, _, _ in calls):
                    return None  # a layer used twice, or inputs with extra dimensions
                # A frozen layer fed by nothing trainable has an output outside the graph (and
                # no parameter to estimate): leave it out.
                calls = [c for c in calls if c[2].requires_grad]
                deltas = torch.autograd.grad(loss, [out for _, _, out, _ in calls],
                                             allow_unused=True)
            for (m, a, out, heads), delta in zip(calls, deltas, strict=True):
                if delta is None:
                    delta = torch.zeros_like(out)
                if isinstance(m, MultiHead) and m.num_heads > 1:
                    delta = _spread_over_heads(m, delta, heads, len(a))
                d, act = fn(delta.detach().clone()), fn(a.clone())
                weight_part = d.T @ act
                for param, part in ((m.weight, weight_part), (m.bias, d.sum(0))):
                    if param is None or not param.requires_grad:
                        continue
                    name = names[id(param)]
                    totals[name] = totals[name] + part if name in totals else part
    finally:
        for h in hooks:
            h.remove()
    return {n: totals[n] / max(len(data), 1) if n in totals else torch.zeros_like(p)
            for n, p in model.named_parameters() if p.requires_grad}


def _spread_over_heads(m: MultiHead, delta: Tensor, heads: Tensor | None, n: int) -> Tensor:
    """The gradient at a multi-head layer's full output, from the one at the selected head's."""
    full = torch.zeros(n, m.num_heads, m.num_outputs, dtype=delta.dtype, device=delta.device)
    idx = heads if heads is not None else torch.zeros(n, dtype=torch.long, device=delta.device)
    full[torch.arange(n, device=delta.device), idx] = delta
    return full.view(n, m.num_heads * m.num_outputs)
