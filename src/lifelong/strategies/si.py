"""`si`: Synaptic Intelligence — importance from each weight's share of the drop in the loss
along the training path.

Owns the per-step path integral (`after_step`) and Ω at the end of a task. The penalty itself
lives in `_penalty.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Task
from lifelong.errors import ConfigError
from lifelong.quadratic import Params, Quadratic, Step
from lifelong.strategies import STRATEGIES
from lifelong.strategies._penalty import (
    NORMALIZE_DEPARTURE,
    PROXIMAL_DEPARTURE,
    PenaltyState,
    QuadraticAnchor,
)


@dataclass
class SIState(PenaltyState):
    """Adds the running path integral ω of the current task, the weights before the last step
    and the weights at the start of the task — all private copies, never views of the live
    parameters (a view would make every Δθ zero, and SI silently a no-op)."""

    omega: Params = field(default_factory=dict)
    previous: Params = field(default_factory=dict)
    start: Params = field(default_factory=dict)


@STRATEGIES.register("si")
class SI(QuadraticAnchor):
    """Synaptic Intelligence (Zenke, Poole & Ganguli 2017, ICML; Sec. 3, Eqs. 4–5).

    During task μ, each step adds ω_k += −g_k · Δθ_k, the discretised path integral of Sec. 3,
    where g is the gradient of the current task's loss alone (the penalty's part is taken out,
    as in the authors' code) and Δθ the actual update. At the end of the task (Eq. 5),
    Ω_k += max(0, ω_k / ((θ_k(t^μ) − θ_k(t^{μ−1}))² + ξ)) — summed over tasks, and anchored at
    the latest weights. The penalty is c · Σ_k Ω_k (θ_k − θ̃_k)² (Eq. 4, no ½).

    Departure: Eq. 5 does not clamp, and the authors' code only clamps the sum. Here each
    task's contribution is clamped at 0 before it is added: a weight whose path integral came
    out negative (the loss rose along its path, which noise in SGD does) gets no importance
    from that task, rather than a negative one that would push it away from its anchor and
    cancel what earlier tasks recorded.

    Args:
        strength: c, relative to the mean Ω when `normalize` is on (the default). Zenke et
            al. use c = 0.1 on permuted MNIST and c = 1 on split MNIST, both with Adam, in the
            absolute form; Ω scales with the optimizer's steps and with the stream, so their
            values do not carry over to other training. The default was chosen by `lifelong
            run strength-sweep` (see `ewc.EWC`'s `strength`; the table is in the README).
        damping: ξ, which keeps Ω finite for weights that barely moved (0.1 on permuted MNIST
            in the paper's code).
        step: ``"auto"`` (the default): the proximal step with plain SGD (where the gradient
            step diverges at large c), the paper's gradient step with Adam or any other
            optimizer; or ``"proximal"`` or ``"gradient"`` always. Same objective (see
            `_penalty.py`). Δθ in the path integral is the whole step, the implicit pull
            included; g is the task loss's gradient alone either way.
        normalize: divide each task's Ω by its mean over all weights before it is added (the
            default; a declared departure), which makes c independent of the optimizer's step
            sizes and of the stream; ``false`` is Eq. 4 as written.
        stiffness_cap: the earlier per-weight cap (off; see `_penalty.py`).
    """

    name = "si"
    card = replace(QuadraticAnchor.card, departures=(
        PROXIMAL_DEPARTURE, NORMALIZE_DEPARTURE,
        "each task's importance is clamped at 0 before it is added (Eq. 5 does not clamp)"))
    factor = 1.0
    online = True
    version = 2  # v1: strength was the absolute c (normalize did not exist)

    def __init__(self, model: nn.Module, *, strength: float = 0.003,
                 damping: float = 0.1,
                 step: Step = "auto", stiffness_cap: bool = False,
                 normalize: bool = True) -> None:
        super().__init__(model, strength=strength, step=step, stiffness_cap=stiffness_cap,
                         normalize=normalize)
        problems = checks.number("strategy 'si'", "damping", damping, low=0.0, low_open=True,
                                 hint="ξ, e.g. 0.1")
        if problems:
            raise ConfigError(problems)
        self.damping = damping
        self.state: SIState = SIState()
        self._reset_path()

    def _reset_path(self) -> None:
        with torch.no_grad():
            live = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
            self.state.omega = {n: torch.zeros_like(p) for n, p in live.items()}
            self.state.previous = {n: p.detach().clone() for n, p in live.items()}
            self.state.start = {n: p.detach().clone() for n, p in live.items()}
        self._lists: tuple[object, list[Tensor], list[Tensor], list[Tensor]] | None = None
        self._pairs: tuple[object, list[Tensor], list[tuple[int, int]]] | None = None

    def before_task(self, task: Task) -> None:
        super().before_task(task)
        self._reset_path()

    def _aligned(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Live parameters, ω and θ_prev as lists in one order (rebuilt after a reload)."""
        cache = self._lists
        if cache is None or cache[0] is not self.state.omega:
            live = dict(self.model.named_parameters())
            names = list(self.state.omega)
            cache = self._lists = (self.state.omega, [live[n] for n in names],
                                   [self.state.omega[n] for n in names],
                                   [self.state.previous[n] for n in names])
        return cache[1], cache[2], cache[3]

    def after_step(self) -> None:
        params, omega, previous = self._aligned()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        with torch.no_grad():
            delta = torch._foreach_sub(params, previous)  # the step's Δθ (an implicit one too)
            torch._foreach_addcmul_(omega, grads, delta, value=-1.0)  # ω −= g · Δθ
            q = self.quadratic()
            if q is not None and q.followed == "gradient":  # g held the penalty's pull too:
                torch._foreach_addcmul_(*self._pull(q, params, omega, delta), value=1.0)
            torch._foreach_copy_(previous, params)

    def _pull(self, q: Quadratic, params: list[Tensor], omega: list[Tensor],
              delta: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """ω, the penalty's pull at the weights before the step (what the loop added to
        `.grad`) and Δθ of the parameters both cover, in one order (the pairing is worked
        out once per penalty value, not every step)."""
        if self._pairs is None or self._pairs[0] is not q or self._pairs[1] is not params:
            at = {id(p): i for i, p in enumerate(params)}
            pairs = [(at[id(p)], j) for j, p in enumerate(q.params) if id(p) in at]
            self._pairs = (q, params, pairs)
        pairs = self._pairs[2]
        before = self.state.previous
        pull = q.pull_at([before.get(n, p) for n, p in zip(q.names, q.params, strict=True)])
        return ([omega[i] for i, _ in pairs], [pull[j] for _, j in pairs],
                [delta[i] for i, _ in pairs])

    def importance(self, task: Task) -> Params:
        with torch.no_grad():
            live = dict(self.model.named_parameters())
            out = {n: (w / ((live[n] - self.state.start[n]).square() + self.damping)).clamp_min(0)
                   for n, w in self.state.omega.items()}
        return out  # the path restarts in the next before_task
