"""The quadratic-penalty family: L2, EWC, online EWC, SI and MAS share one rule.

Owns `QuadraticAnchor`, its state (`PenaltyState`), the fast penalty and the per-sample gradient
reduction that EWC and MAS estimate their importances with. Each method only says how the
importance Ω of a task is estimated (van de Ven & Tolias 2019 make the same decomposition):

    loss = task loss + factor · strength · Σ_k Σ_i Ω_k,i (θ_i − θ*_k,i)²

with one term k per past task (EWC, L2), or one merged term Ω ← decay·Ω + Ω_new anchored at the
latest weights (online EWC, SI, MAS). `factor` is ½ where the paper writes λ/2 (EWC, L2) and 1
where it writes c or λ alone (SI, MAS), so `strength` is exactly the paper's symbol.

Why it is fast: the terms are folded once per task into one quadratic,
Σ_k Ω_k (θ − θ*_k)² = Ω̄ (θ − m)² + const with Ω̄ = Σ_k Ω_k and m = Σ_k Ω_k θ*_k / Ω̄, so a step
costs the same whatever the number of tasks. The penalty and its gradient 2·Ω̄·(θ − m) are
computed together with a handful of `torch._foreach_*` calls over all parameters (no Python loop
over parameters, no autograd graph per parameter) and handed to autograd through one custom
`Function`. Does not own any importance estimator (l2.py, ewc.py, si.py, mas.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lifelong.data.task import Task, TensorData
from lifelong.errors import ConfigError
from lifelong.strategies.base import Batch, Strategy, StrategyState

Params = dict[str, Tensor]
Tensors = list[Tensor] | tuple[Tensor, ...]  # what torch._foreach_* take and return

CLASS_IL_CAVEAT = (
    "quadratic penalties (L2, EWC, SI, MAS) are known to fail in class-incremental learning: "
    "they protect old weights but nothing stops the shared head from preferring the newest "
    "classes, so old classes are forgotten anyway (van de Ven & Tolias 2019, Table 2; Hsu et "
    "al. 2018). Use replay or a task-incremental stream to see what the penalty does.")


@dataclass
class PenaltyState(StrategyState):
    """Anchors θ*_k and importances Ω_k, one dict per past task (one in total when online),
    keyed by parameter name."""

    anchors: list[Params] = field(default_factory=list)
    importances: list[Params] = field(default_factory=list)


class _Folded:
    """The terms of `PenaltyState` folded into Ω̄ (θ − m)² + const, for the live parameters."""

    def __init__(self, model: nn.Module, anchors: list[Params], importances: list[Params]):
        live = dict(model.named_parameters())
        names = [n for n in importances[0] if n in live]
        self.params = [live[n] for n in names]
        self.centre: list[Tensor] = []
        self.root: list[Tensor] = []  # sqrt(Ω̄): the penalty is Σ ‖√Ω̄ ⊙ (θ − m)‖²
        const = 0.0
        with torch.no_grad():
            for n in names:
                omegas = [imp[n] for imp in importances]
                thetas = [a[n] for a in anchors]
                total = torch.stack(omegas).sum(0)
                if len(omegas) == 1:
                    centre = thetas[0].clone()
                else:
                    # In float64 so that the constant (which only shifts the loss value) is
                    # not lost to cancellation.
                    o64 = [o.double() for o in omegas]
                    t64 = [t.double() for t in thetas]
                    tot64 = total.double()
                    weighted = sum((o * t for o, t in zip(o64, t64, strict=True)),
                                   torch.zeros_like(tot64))
                    m64 = torch.where(tot64 > 0, weighted / tot64.clamp_min(1e-300), t64[-1])
                    const += float(sum(((o * t * t).sum() for o, t in zip(o64, t64,
                                                                          strict=True)),
                                       torch.zeros((), dtype=torch.float64))
                                   - (tot64 * m64 * m64).sum())
                    centre = m64.to(total.dtype)
                self.centre.append(centre)
                self.root.append(total.clamp_min(0).sqrt())
        self.const = const
        self.sources: tuple[object, ...] = (*anchors, *importances)
        self.last_grads: Tensors | None = None


class _Quadratic(torch.autograd.Function):
    """scale · (Σ Ω̄ (θ − m)² + const), with the gradient 2·scale·Ω̄·(θ − m) computed in the
    forward pass by fused `_foreach` kernels and returned as is in the backward pass."""

    @staticmethod
    def forward(ctx: Any, folded: _Folded, scale: float, *params: Tensor) -> Tensor:
        diff = torch._foreach_sub(list(params), folded.centre)
        torch._foreach_mul_(diff, folded.root)  # √Ω̄ ⊙ (θ − m)
        value = torch.stack(torch._foreach_norm(diff)).square().sum()
        grads = torch._foreach_mul(diff, folded.root)  # Ω̄ ⊙ (θ − m)
        torch._foreach_mul_(grads, 2.0 * scale)
        ctx.grads = grads
        folded.last_grads = grads
        return (value + folded.const) * scale

    @staticmethod
    def backward(ctx: Any, *outputs: Tensor) -> tuple[Tensor | None, ...]:
        grads = torch._foreach_mul(ctx.grads, outputs[0])
        return (None, None, *grads)


class QuadraticAnchor(Strategy):
    """Base of the family: `factor · strength · Σ_k Σ_i Ω_k,i (θ_i − θ*_k,i)²` added to the loss.

    Subclasses implement `importance(task)` (Ω of the task just learned, called in
    `after_task`), set `online` (merge into one term) and `factor`, and may use `before_task`
    and `after_step`. Works with any model whose parameters have stable names, including
    multi-head models: a head the task never trained gets zero importance from EWC, SI and MAS.

    Args:
        strength: the penalty weight (λ of EWC, L2 and MAS; c of SI). 0 turns the penalty off.
    """

    name = "quadratic-anchor"
    caveats: ClassVar[dict[str, str]] = {"class": CLASS_IL_CAVEAT}
    factor: ClassVar[float] = 0.5
    online: bool = False  # merge every task into one decayed term
    decay: float = 1.0  # γ of online EWC: Ω ← decay·Ω + Ω_new

    def __init__(self, model: nn.Module, *, strength: float) -> None:
        super().__init__(model)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) \
                or not math.isfinite(strength) or strength < 0:
            raise ConfigError(f"strategy '{self.name}': strength={strength!r} must be a "
                              "finite number >= 0 (0 turns the penalty off)")
        self.strength = strength
        self.state: PenaltyState = PenaltyState()
        self._folded: _Folded | None = None

    # ------------------------------------------------------------------ to implement
    def importance(self, task: Task) -> Params:
        """Ω for `task`, just learned: a non-negative tensor per parameter name."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ penalty
    def folded(self) -> _Folded | None:
        """The current terms folded into one quadratic (rebuilt when the state changes)."""
        anchors, importances = self.state.anchors, self.state.importances
        if not importances:
            return None
        f = self._folded
        sources = (*anchors, *importances)
        if f is None or len(f.sources) != len(sources) or any(
                a is not b for a, b in zip(f.sources, sources, strict=True)):
            f = self._folded = _Folded(self.model, anchors, importances)
        return f

    def penalty(self) -> Tensor:
        """Σ_k Σ_i Ω_k,i (θ_i − θ*_k,i)² (without `factor · strength`), differentiable."""
        f = self.folded()
        if f is None:
            return torch.zeros((), device=self.device)
        out: Tensor = _Quadratic.apply(f, 1.0, *f.params)  # type: ignore[no-untyped-call]
        return out

    def loss(self, batch: Batch, logits: Tensor) -> Tensor:
        base = super().loss(batch, logits)
        f = self.folded()
        if f is None:
            return base
        f.last_grads = None
        if not self.strength:
            return base
        scale = self.factor * self.strength
        out: Tensor = base + _Quadratic.apply(f, scale, *f.params)  # type: ignore[no-untyped-call]
        return out

    def penalty_gradients(self) -> Tensors | None:
        """The penalty's gradient from the last `loss` call, aligned with `folded().params`
        (SI subtracts it to integrate the task loss's own gradient)."""
        f = self._folded
        return f.last_grads if f is not None and f is self.folded() else None

    # ---------------------------------------------------------------- consolidation
    def after_task(self, task: Task) -> None:
        omega = {n: v.detach() for n, v in self.importance(task).items()}
        anchor = {n: p.detach().clone() for n, p in self.model.named_parameters()
                  if n in omega}
        if self.online and self.state.importances:
            old = self.state.importances[-1]
            omega = {n: self.decay * old[n] + v if n in old else v for n, v in omega.items()}
            self.state.anchors, self.state.importances = [anchor], [omega]
        else:
            self.state.anchors = [*self.state.anchors, anchor]
            self.state.importances = [*self.state.importances, omega]

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        super().load_state_dict(sd)
        # The base hands back the tensors of `sd` itself; SI updates some in place, so take
        # private copies and leave the caller's dict untouched.
        for f in dataclasses.fields(self.state):
            setattr(self.state, f.name, _clone(getattr(self.state, f.name)))
        self._folded = None


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def check_samples(name: str, option: str, value: object) -> None:
    """Raise a `ConfigError` unless `value` is None (all) or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ConfigError(f"strategy '{name}': {option}={value!r} must be a positive integer "
                          "or null (all training examples)")


def sample_rows(data: TensorData, n: int | None, g: torch.Generator) -> TensorData:
    """`n` rows of `data` drawn without replacement by `g` (all rows if n is None or more)."""
    if n is None or n >= len(data):
        return data
    idx = torch.randperm(len(data), generator=g, device=g.device)[:n]
    return data.take(idx.to(data.y.device))


def per_sample_gradient_mean(
    model: nn.Module,
    data: TensorData,
    sample_loss: Callable[[Tensor, Tensor], Tensor],
    reduce: Callable[[Tensor], Tensor],
    *,
    budget: int = 1 << 24,
) -> Params:
    """(1/N) Σ_n reduce(∂ sample_loss(f(x_n), y_n) / ∂θ), per parameter.

    Per-sample gradients come from `torch.func.vmap` over `torch.func.grad` of a functional
    call, in chunks of at most `budget` gradient entries, so memory stays bounded and there is
    no Python loop over samples. The model runs in eval mode (no dropout noise), as at test
    time; `sample_loss(logits, y)` gets one example's logits with shape (1, C).
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    size = sum(p.numel() for p in params.values())
    chunk = max(1, min(len(data), budget // max(size, 1)))

    def one(p: Params, x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0), t.unsqueeze(0)))
        return sample_loss(logits, y.unsqueeze(0))

    per_sample = vmap(grad(one), in_dims=(None, 0, 0, 0))
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(data), chunk):
            stop = start + chunk
            grads = per_sample(params, data.x[start:stop], data.y[start:stop],
                               data.t[start:stop])
            for n, g in grads.items():
                totals[n] += reduce(g).sum(0)
    finally:
        model.train(was_training)
    return {n: v / max(len(data), 1) for n, v in totals.items()}
