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

Why it is fast: the terms are folded once per task into one quadratic,
Σ_k Ω_k (θ − θ*_k)² = Ω̄ (θ − m)² + const with Ω̄ = Σ_k Ω_k and m = Σ_k Ω_k θ*_k / Ω̄, so a step
costs the same whatever the number of tasks. The penalty and its gradient 2·Ω̄·(θ − m) are
computed together with a handful of `torch._foreach_*` calls over all parameters (no Python loop
over parameters, no autograd graph per parameter) and handed to autograd through one custom
`Function`.

How the penalty is followed (`step`). The papers add it to the loss and let the optimizer
follow its gradient (``step="gradient"``). With plain SGD a weight whose penalty curvature
k = 2 · factor · strength · Ω̄ exceeds 2(1 + momentum)/lr is overshot by more at every step and
the run diverges — which a large strength does at everyday learning rates. So:

- ``step="proximal"``: the quadratic term is taken by an implicit (proximal) step after the
  optimizer's step on the task loss alone, θ ← (θ + c·m) / (1 + c) with c = η'·k and
  η' = lr / (1 − momentum) (the step size of heavy-ball SGD at rest). It is stable for any
  curvature, and its fixed point is the exact objective's stationary point:
  ∇L_task(θ) + k·Ω̄·(θ − m) = 0 (proximal gradient method; Parikh & Boyd 2014, §4.2). It needs
  plain SGD: an adaptive optimizer (Adam) has no single step size to take the implicit step
  with.
- ``step="auto"`` (the default of EWC, SI and MAS): proximal with plain SGD, the papers'
  gradient step with any other optimizer. Adam and its kin divide each step by a running
  gradient scale, so a stiff penalty does not make them overshoot as SGD does; the choice is
  made from the optimizer of each step (`prepare_step`), so a group of runs or a resumed run
  decides the same way.
- ``stiffness_cap=true`` (the library's earlier default, kept as an option): with plain SGD,
  Ω̄ is capped per weight at (1 + momentum) / (lr · 2 · factor · strength). Above the cap the
  strength stops meaning anything and the objective is no longer the paper's, so the fraction
  of weights capped is reported each task (a warning, and `capped_fraction` in the run's
  diagnostics). Adam and its kin are never capped.

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
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Batch, Task, TensorData
from lifelong.errors import ConfigError, StateError
from lifelong.strategies.base import Card, Strategy, StrategyState, TaskReport

Params = dict[str, Tensor]
Tensors = list[Tensor] | tuple[Tensor, ...]  # what torch._foreach_* take and return
Step = Literal["auto", "gradient", "proximal"]
STEPS = ("auto", "gradient", "proximal")
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


class _Folded:
    """The terms of `PenaltyState` folded into Ω̄ (θ − m)² + const, for the live parameters."""

    def __init__(self, model: nn.Module, anchors: list[Params], importances: list[Params],
                 who: str = "penalty"):
        live = dict(model.named_parameters())
        names = list(importances[0])
        if missing := [n for n in names if n not in live]:
            # Dropping them would silently make the penalty zero on those weights.
            raise StateError(
                f"{who}: the penalty holds importances for parameters the model no longer has "
                f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}; the model's "
                f"are {', '.join(list(live)[:4])}{', ...' if len(live) > 4 else ''}). A "
                "wrapper such as torch.compile ('_orig_mod.') or DataParallel ('module.') "
                "renames parameters: build the strategy around the model you train, and keep "
                "it for the whole stream")
        self.params = [live[n] for n in names]
        self.centre: list[Tensor] = []
        self.omega: list[Tensor] = []  # Ω̄ = Σ_k Ω_k
        const = 0.0
        with torch.no_grad():
            for n in names:
                omegas = [imp[n] for imp in importances]
                thetas = [a[n] for a in anchors]
                total = torch.stack(omegas).sum(0).clamp_min(0)
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
                self.omega.append(total)
        self.const = const
        self.sources: tuple[object, ...] = (*anchors, *importances)
        self.last_grads: Tensors | None = None
        self.keep_grads = False  # set by SI, which needs the penalty's gradient after the step
        self._weights: dict[tuple[float, float], tuple[list[Tensor], ...]] = {}
        self._prox: dict[tuple[float, ...], tuple[list[Tensor], list[Tensor]]] = {}

    def capped_fraction(self, scale: float, limit: float) -> float:
        """The fraction of the penalised weights whose Ω̄ exceeds the cap limit / (2·scale)."""
        if not math.isfinite(limit) or not self.omega:
            return 0.0
        with torch.no_grad():
            over = sum(int((o > limit / (2 * scale)).sum()) for o in self.omega)
        return over / sum(o.numel() for o in self.omega)

    def proximal(self, scale: float, rates: tuple[float, ...]) -> tuple[list[Tensor], ...]:
        """(1 / (1 + c), c·m / (1 + c)) per weight with c = rate · 2 · scale · Ω̄, `rates` the
        effective step size of each parameter: θ ← θ / (1 + c) + c·m / (1 + c) is the implicit
        step on scale · Ω̄ (θ − m)² (computed once per task and learning rate)."""
        key = (scale, *rates)
        if key not in self._prox:
            with torch.no_grad():
                c = [2 * scale * r * o for r, o in zip(rates, self.omega, strict=True)]
                self._prox[key] = ([1 / (1 + ci) for ci in c],
                                   [ci * m / (1 + ci) for ci, m in zip(c, self.centre,
                                                                        strict=True)])
        return self._prox[key]

    def weights(self, scale: float, limit: float) -> tuple[list[Tensor], ...]:
        """(r, −r ⊙ m, 2r) with r = √(scale · Ω') and Ω' = min(Ω̄, limit / (2·scale)): the
        per-weight factors of the value and of the gradient, computed once per (scale, limit).
        """
        key = (scale, limit)
        if key not in self._weights:
            with torch.no_grad():
                capped = [o.clamp(max=limit / (2 * scale)) if math.isfinite(limit) else o
                          for o in self.omega]
                root = [(scale * o).sqrt() for o in capped]
                shift = [-r * m for r, m in zip(root, self.centre, strict=True)]
                self._weights[key] = (root, shift, [2 * r for r in root])
        return self._weights[key]


class _Quadratic(torch.autograd.Function):
    """scale · (Σ Ω' (θ − m)² + const), its gradient 2·scale·Ω'·(θ − m) computed in the forward
    pass by three fused `_foreach` passes over the weights and handed back as is by the
    backward pass. Ω' is Ω̄, capped at `limit / (2·scale)` when `limit` is finite."""

    @staticmethod
    def forward(ctx: Any, folded: _Folded, scale: float, limit: float,
                *params: Tensor) -> Tensor:
        root, shift, root2 = folded.weights(scale, limit)
        w = torch._foreach_addcmul(shift, list(params), root)  # r ⊙ θ − r ⊙ m
        norms = torch.stack(torch._foreach_norm(w))
        torch._foreach_mul_(w, root2)  # now the gradient 2·scale·Ω' ⊙ (θ − m)
        ctx.grads = w
        if folded.keep_grads:
            folded.last_grads = w
        value = torch.dot(norms, norms)
        return value + scale * folded.const if folded.const else value

    @staticmethod
    def backward(ctx: Any, *outputs: Tensor) -> tuple[Tensor | None, ...]:
        g, grads = outputs[0], ctx.grads
        del ctx.grads  # hold no reference: autograd may then add the task gradient in place
        # On the CPU reading the upstream gradient costs nothing, and it is 1 whenever the
        # loss is back-propagated as is: skip a pass over the weights then.
        if g.device.type != "cpu" or float(g) != 1.0:
            grads = torch._foreach_mul(grads, g)
        return (None, None, None, *grads)


def plain_sgd(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` is heavy-ball SGD, whose step size the proximal step needs (no
    Nesterov, no dampening)."""
    return type(optimizer) is torch.optim.SGD and not any(
        g.get("nesterov") or g.get("dampening") for g in optimizer.param_groups)


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


def stiffness_limit(optimizer: torch.optim.Optimizer) -> float:
    """Half the largest curvature plain SGD can follow stably, (1 + momentum) / lr, over its
    parameter groups; infinite for other optimizers (Adam and its kin rescale each step, so a
    stiff penalty does not make them diverge)."""
    if type(optimizer) is not torch.optim.SGD:
        return math.inf
    return min((1.0 + float(g.get("momentum", 0.0))) / float(g["lr"])
               for g in optimizer.param_groups)


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
            point, stable at any strength; plain SGD only. ``"auto"``: proximal with plain SGD,
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
    keeps_penalty_gradients: ClassVar[bool] = False  # SI reads them after the step
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
                            "step for the penalty, stable at any strength; plain SGD only)")
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
        self._folded: _Folded | None = None
        # The step this optimizer step takes: `step`, with 'auto' resolved by `prepare_step`
        # (the gradient step until an optimizer has been seen).
        self._step: Literal["gradient", "proximal"] = "proximal" if step == "proximal" \
            else "gradient"
        self._limit = math.inf  # set from the optimizer at each step
        self._rates: tuple[float, ...] = ()  # effective SGD step per penalised parameter
        self._rates_key: tuple[object, ...] = ()
        self._capped: float | None = None  # fraction of weights capped in the current task

    # ------------------------------------------------------------------ to implement
    def importance(self, task: Task) -> Params:
        """Ω for `task`, just learned: a non-negative tensor per parameter name."""
        raise NotImplementedError

    def examples(self, task: Task, n: int | None, purpose: str) -> TensorData:
        """`n` training examples of `task` (a subset seeded by the task key; all if None) on
        the model's device: what an importance is averaged over."""
        return sample_rows(task.train, n, self.generator(purpose, task.key)).to(self.device)

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
            f = self._folded = _Folded(self.model, anchors, importances, self.name)
            f.keep_grads = self.keeps_penalty_gradients
        return f

    def penalty_scale(self) -> float:
        """The factor in front of Σ Ω̄ (θ − m)²: factor · strength, times γ for online EWC,
        whose penalty on task i is γ·F*_{i−1} (Schwarz et al. 2018, Eq. 4)."""
        return self.factor * self.strength * (self.decay if self.online else 1.0)

    def penalty(self, scale: float = 1.0, limit: float = math.inf) -> Tensor:
        """`scale` · Σ_k Σ_i Ω_k,i (θ_i − θ*_k,i)², differentiable; each Ω̄_i capped at
        `limit` / (2 · scale) (see the module doc)."""
        f = self.folded()
        if f is None:
            return torch.zeros((), device=self.device)
        out: Tensor = _Quadratic.apply(f, scale, limit, *f.params)  # type: ignore[no-untyped-call]
        return out

    def loss(self, batch: Batch, logits: Tensor) -> Tensor:
        base = super().loss(batch, logits)
        f = self.folded()
        if f is not None:
            f.last_grads = None  # set again by this step's penalty, if any
        if f is None or not self.strength or self._step == "proximal":
            return base
        return base + self.penalty(self.penalty_scale(), self._limit)

    def prepare_step(self, optimizer: torch.optim.Optimizer) -> None:
        # The optimizer of this step decides how stiff the penalty may be, or the size of the
        # implicit step (see the module doc).
        if self.step == "auto":
            self._step = ("proximal" if plain_sgd(optimizer) and not self.stiffness_cap
                          else "gradient")
        if self._step == "proximal":
            self._rates = self._proximal_rates(optimizer)
        elif self.stiffness_cap:
            self._limit = stiffness_limit(optimizer)
            f = self.folded()
            if self._capped is None and f is not None and self.strength:
                self._capped = f.capped_fraction(self.penalty_scale(), self._limit)

    def after_step(self) -> None:
        f = self.folded()
        if self._step != "proximal" or f is None or not self.strength:
            return
        inv, shift = f.proximal(self.penalty_scale(), self._rates)
        params: list[Tensor] = list(f.params)
        with torch.no_grad():
            torch._foreach_mul_(params, inv)
            torch._foreach_add_(params, shift)

    def _proximal_rates(self, optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
        if not plain_sgd(optimizer):
            raise ConfigError(f"strategy '{self.name}': step='proximal' needs plain SGD "
                              f"(train.optimizer=sgd, got {type(optimizer).__name__}); use "
                              "step='auto' (the gradient step with Adam) or step='gradient'")
        f = self.folded()
        if f is None:
            return ()
        key = (optimizer, f, *((g["lr"], g.get("momentum")) for g in optimizer.param_groups))
        if self._rates_key != key:  # once per task, not per step
            rate = {id(p): float(g["lr"]) / (1.0 - float(g.get("momentum", 0.0)))
                    for g in optimizer.param_groups for p in g["params"]}
            self._rates_key = key
            self._rates = tuple(rate.get(id(p), 0.0) for p in f.params)
        return self._rates

    def penalty_gradients(self) -> Tensors | None:
        """The penalty's gradient from the last `loss` call, aligned with `folded().params`
        (SI subtracts it to integrate the task loss's own gradient)."""
        f = self._folded
        return f.last_grads if f is not None and f is self.folded() else None

    def divergence_hint(self) -> str:
        if self.step != "gradient" or not self.strength:
            return ""
        return (f"or set strategy.step=proximal (an implicit step for {self.name}'s penalty, "
                "stable at any strength with plain SGD)")

    # ---------------------------------------------------------------- consolidation
    def before_task(self, task: Task) -> None:
        self._capped = None

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

    def task_report(self) -> TaskReport:
        if not self.stiffness_cap or self._capped is None:
            return TaskReport()
        values = {"capped_fraction": self._capped}
        if not self._capped:
            return TaskReport(values)
        return TaskReport(values, (
            f"{self.name}: stiffness_cap held {self._capped:.1%} of the penalised weights "
            f"below their importance (strength {self.strength:g}, lr-bound curvature "
            f"{self._limit:g}); for those weights the penalty is not the paper's and a larger "
            "strength changes nothing. Set stiffness_cap=false, with step=proximal for "
            "stability",))

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        super().load_state_dict(sd)
        self._folded = None

    def remap(self, fn: Callable[..., Tensor]) -> None:
        """Carry the anchors and importances over a change of the model's shape (e.g.
        Net2Net's wider layers): `fn(name, value, importance=bool)` gives each tensor for the
        new parameter of that name."""
        self.state.anchors = [{n: fn(n, v, importance=False) for n, v in a.items()}
                              for a in self.state.anchors]
        self.state.importances = [{n: fn(n, v, importance=True) for n, v in o.items()}
                                  for o in self.state.importances]
        self._folded = None


def sample_rows(data: TensorData, n: int | None, g: torch.Generator) -> TensorData:
    """`n` rows of `data` drawn without replacement by `g` (all rows if n is None or more),
    taken where `data` is."""
    if n is None or n >= len(data):
        return data
    idx = torch.randperm(len(data), generator=g, device=g.device)[:n]
    return data.take(idx.to(data.y.device))
