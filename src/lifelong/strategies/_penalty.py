"""The quadratic-penalty family: L2, EWC, online EWC, SI and MAS share one rule.

Owns `QuadraticAnchor`, its state (`PenaltyState`), the fast penalty and the sampling of the
examples an importance is estimated from (the per-sample gradients themselves are in
`_per_sample.py`). Each method only says how the importance Ω of a task is estimated (van de
Ven & Tolias 2019 make the same decomposition):

    loss = task loss + factor · strength · Σ_k Σ_i Ω_k,i (θ_i − θ*_k,i)²

with one term k per past task (EWC, L2), or one merged term Ω ← decay·Ω + Ω_new anchored at the
latest weights (online EWC, SI, MAS). `factor` is ½ where the paper writes λ/2 (EWC, L2) and 1
where it writes c or λ alone (SI, MAS), so with ``normalize=False`` `strength` is exactly the
paper's symbol (see the scale of Ω below).

The strategy hands its terms to the loop as one value, `quadratic()` (a
`lifelong.quadratic.Quadratic`: the terms folded into Ω̄ (θ − m)² + const, so a step costs the
same whatever the number of tasks), and the loop follows it (`step`): by its gradient, as the
papers, or by an implicit step after the optimizer's, stable at any strength; ``"auto"`` picks
the implicit step with plain SGD and the gradient with any other optimizer
(`lifelong.quadratic` says why). The strategy never sees the optimizer.

The scale of Ω (`normalize`). A Fisher, a path integral or an output sensitivity has a size
that depends on the stream, the model and the training, not only on how much a weight matters:
a task that a small head fits to near-perfect accuracy leaves a Fisher orders of magnitude
smaller than a task learned to 65 %, and SI's Ω grows with the optimizer's step sizes. A
strength chosen on one kind of stream is then far too weak or far too strong on another. With
``normalize=True`` (the default of EWC, SI and MAS) each task's Ω is divided by its mean over
all the parameters it covers before it is stored or merged, so the weights keep their ranking
and their ratios but `strength` becomes relative: the pull on a weight of average importance,
whatever the stream. ``normalize=False`` keeps the papers' absolute form, where `strength` is
exactly the paper's symbol. A task whose Ω is zero everywhere stays zero.

Does not own any importance estimator (l2.py, ewc.py, si.py, mas.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Task, TensorData
from lifelong.errors import ConfigError
from lifelong.quadratic import STEPS, Params, Quadratic, Step
from lifelong.strategies.base import Card, Strategy, StrategyState

PROXIMAL_DEPARTURE = ("with plain SGD (step=auto, the default) the penalty is taken by an "
                      "implicit (proximal) step, not its gradient: same objective and "
                      "stationary point, stable at any strength; with Adam or any other "
                      "optimizer it follows the paper's gradient step; step=gradient is the "
                      "paper's with every optimizer")
NORMALIZE_DEPARTURE = ("each task's importance is divided by its mean over all parameters "
                       "(normalize=true, the default), so strength is relative and one "
                       "default serves permuted and split streams; normalize=false is the "
                       "paper's absolute form, where strength is the paper's symbol")

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


def mean_normalized(omega: Params) -> Params:
    """Ω divided by its mean over every entry of every parameter (Ω unchanged where that mean
    is 0): the same ranking and ratios, on a scale that no longer depends on the stream."""
    with torch.no_grad():
        total = sum((v.double().sum() for v in omega.values()),
                    torch.zeros((), dtype=torch.float64))
        count = sum(v.numel() for v in omega.values())
        mean = float(total) / max(count, 1)
    if not mean > 0 or not math.isfinite(mean):
        return omega
    return {n: v / mean for n, v in omega.items()}


class QuadraticAnchor(Strategy):
    """Base of the family: `factor · strength · Σ_k Σ_i Ω_k,i (θ_i − θ*_k,i)²` added to the loss.

    Subclasses implement `importance(task)` (Ω of the task just learned, called in
    `after_task`), set `online` (merge into one term) and `factor`, and may use `before_task`
    and `after_step`. Works with any model whose parameters have stable names, including
    multi-head models: a head the task never trained gets zero importance from EWC, SI and MAS.

    Args:
        strength: the penalty weight (λ of EWC, L2 and MAS; c of SI). 0 turns the penalty off.
        step: how the penalty is followed. ``"gradient"`` (the papers): its gradient joins the
            task loss's and the optimizer takes both. ``"proximal"``: an implicit step for the
            quadratic after the optimizer's step on the task loss alone — same stationary
            point, stable at any strength, with SGD or Adam. ``"auto"``: proximal with plain SGD,
            gradient with any other optimizer or with `stiffness_cap` (see the module doc).
        stiffness_cap: with plain SGD, cap each weight's importance at the stiffest pull SGD
            can follow (see the module doc). Off by default: it changes the objective wherever
            it binds. When on, the fraction of weights capped is reported every task.
        normalize: divide each task's Ω by its mean over all parameters, making `strength`
            relative (see the module doc); False is the papers' absolute form.
    """

    name = "quadratic-anchor"
    card = Card(family="penalty", caveats={"class": CLASS_IL_CAVEAT})
    factor: ClassVar[float] = 0.5
    online: bool = False  # merge every task into one decayed term
    decay: float = 1.0  # γ of online EWC: Ω ← decay·Ω + Ω_new, penalised as decay·Ω

    def __init__(self, model: nn.Module, *, strength: float, step: Step = "gradient",
                 stiffness_cap: bool = False, normalize: bool = False) -> None:
        super().__init__(model)
        problems = checks.number(f"strategy '{self.name}'", "strength", strength, low=0.0,
                                 hint="0 turns the penalty off")
        if step not in STEPS:
            problems.append(f"strategy '{self.name}': step={step!r} must be 'auto' (proximal "
                            "with plain SGD, the gradient step otherwise), 'gradient' (the "
                            "penalty's gradient joins the loss's) or 'proximal' (an implicit "
                            "step for the penalty, stable at any strength; SGD or Adam)")
        for option, value in (("stiffness_cap", stiffness_cap), ("normalize", normalize)):
            if not isinstance(value, bool):
                problems.append(f"strategy '{self.name}': {option}={value!r} must be true or "
                                "false")
        if stiffness_cap is True and step == "proximal":
            problems.append(f"strategy '{self.name}': stiffness_cap=true and step='proximal' "
                            "exclude each other (the proximal step needs no cap)")
        if problems:
            raise ConfigError(problems)
        self.strength = strength
        self.step = step
        self.stiffness_cap = stiffness_cap
        self.normalize = normalize
        self.state: PenaltyState = PenaltyState()
        self._quadratic: Quadratic | None = None

    # ------------------------------------------------------------------ to implement
    def importance(self, task: Task) -> Params:
        """Ω for `task`, just learned: a non-negative tensor per parameter name."""
        raise NotImplementedError

    def examples(self, task: Task, n: int | None, purpose: str) -> TensorData:
        """`n` training examples of `task` (a subset seeded by the task key; all if None) on
        the model's device: what an importance is averaged over."""
        return sample_rows(task.train, n, self.generator(purpose, task.key)).to(self.device)

    # ------------------------------------------------------------------------ penalty
    def quadratic(self) -> Quadratic | None:
        """The terms as one value for the loop (rebuilt when the state changes); None before
        the first task or at strength 0."""
        anchors, importances = self.state.anchors, self.state.importances
        if not importances or not self.strength:
            return None
        q = self._quadratic
        sources = (*anchors, *importances)
        if q is None or len(q.sources) != len(sources) or any(
                a is not b for a, b in zip(q.sources, sources, strict=True)):
            q = self._quadratic = Quadratic(
                self.model, anchors, importances, scale=self.penalty_scale(), step=self.step,
                cap=self.stiffness_cap, who=self.name, strength=self.strength)
        return q

    def penalty_scale(self) -> float:
        """The factor in front of Σ Ω̄ (θ − m)²: factor · strength, times γ for online EWC,
        whose penalty on task i is γ·F*_{i−1} (Schwarz et al. 2018, Eq. 4)."""
        return self.factor * self.strength * (self.decay if self.online else 1.0)

    def divergence_hint(self) -> str:
        if self.step != "gradient" or not self.strength:
            return ""
        return (f"or set strategy.step=proximal (an implicit step for {self.name}'s penalty, "
                "stable at any strength with plain SGD)")

    # ---------------------------------------------------------------- consolidation
    def after_task(self, task: Task) -> None:
        omega = {n: v.detach() for n, v in self.importance(task).items()}
        if self.normalize:
            omega = mean_normalized(omega)
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
        self._quadratic = None

    def remap(self, fn: Callable[..., Tensor]) -> None:
        """Carry the anchors and importances over a change of the model's shape (e.g.
        Net2Net's wider layers): `fn(name, value, importance=bool)` gives each tensor for the
        new parameter of that name."""
        self.state.anchors = [{n: fn(n, v, importance=False) for n, v in a.items()}
                              for a in self.state.anchors]
        self.state.importances = [{n: fn(n, v, importance=True) for n, v in o.items()}
                                  for o in self.state.importances]
        self._quadratic = None


def sample_rows(data: TensorData, n: int | None, g: torch.Generator) -> TensorData:
    """`n` rows of `data` drawn without replacement by `g` (all rows if n is None or more),
    taken where `data` is."""
    if n is None or n >= len(data):
        return data
    idx = torch.randperm(len(data), generator=g, device=g.device)[:n]
    return data.take(idx.to(data.y.device))
