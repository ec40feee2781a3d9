"""`net2net`: grow only when needed — train the task with a retention method, and if the
network cannot reach a threshold accuracy on it, widen it with Net2Net and keep training.

Owns the decision to grow, the optional held-out split, the widening of every hidden layer and
the record of growth. The operators are `lifelong.models.net2net`'s through `MLP.wider`; the
retention method is any of `naive`, `ewc`, `gem` at its defaults, run inside this one as a
`Wrapper` (every hook is the retention method's but the two below and `train_task`), which
carries its own state through the growth (`Strategy.remap`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from lifelong import checks, evaluate
from lifelong.data.task import Task, TensorData
from lifelong.errors import ConfigError
from lifelong.models.mlp import MLP
from lifelong.strategies import STRATEGIES, build_strategy
from lifelong.strategies._wrapper import Wrapper, WrapperState
from lifelong.strategies.base import Card, TaskReport

if TYPE_CHECKING:
    from lifelong.epochs import TaskLoop


@dataclass
class Net2NetState(WrapperState):
    growth: list[dict[str, Any]] = field(default_factory=list)  # one entry per widening


@STRATEGIES.register("net2net")
class Net2NetOnDemand(Wrapper):
    """Expansion on demand: widen the network with Net2Net when a task is not learned.

    Sodhani, Chandar & Bengio 2018 (arXiv:1811.07017, §3), with Net2Net's function-preserving
    widening (Chen et al. 2016, §3.2).

    Each task trains with the retention method (on all but a `validation` share of its data,
    if one is held out). If the accuracy on the task's data (or that held-out share) is then
    below `threshold`, every hidden layer is widened by `widen_by` of its original width (new
    units copy existing ones, so the function is unchanged but for `noise`), the optimizer is
    rebuilt over the grown parameters and the task trains for the run's epochs again; at most
    `max_growth` times per task. With EWC the anchors and importances of the widened weights
    are carried over to the copies (a copied incoming row
    keeps its anchor with 1/c² of its importance; a consumer's copied column keeps its
    importance with 1/c of its anchor), so the penalty means what it meant before growth.
    Each widening is recorded (task, accuracy, widths before and after) and reported.

    Args:
        retention: the method trained inside: "naive", "ewc" (Sodhani et al.'s) or "gem".
        threshold: accuracy on the task below which the network grows.
        widen_by: units added to each hidden layer per growth, as a fraction of its width
            when the run started (so repeated growth is linear in the number of growths).
        max_growth: growths allowed per task.
        validation: share of each task's training data held out to decide; 0 (default)
            decides on the training data itself: the question is whether the network can
            learn the task at all, and no example is withheld from training.
        noise: Net2Net's symmetry-breaking noise, in standard deviations of the layer's
            weights (0 keeps the function exactly).
    """

    name = "net2net"
    card = Card(family="expansion", caveats={"class": (
        "with retention=ewc (the default) it forgets old classes as EWC does in class-"
        "incremental learning, however much it grows; use retention=gem")}, departures=(
        "the threshold, growth step and deciding on the training data are this library's "
        "choices, not swept; the paper grows a one-layer LSTM",))

    def __init__(self, model: nn.Module, *, retention: Literal["naive", "ewc", "gem"] = "ewc",
                 threshold: float = 0.8, widen_by: float = 0.5, max_growth: int = 2,
                 validation: float = 0.0, noise: float = 0.01) -> None:
        who = "strategy 'net2net'"
        problems = [
            *checks.number(who, "threshold", threshold, low=0.0, high=1.0,
                           hint="accuracy on the task to reach"),
            *checks.number(who, "widen_by", widen_by, low=0.0, low_open=True,
                           hint="0.5 adds half the units"),
            *([] if max_growth == 0 else checks.count(who, "max_growth", max_growth,
                                                       hint="growths per task; 0 = never")),
            *checks.number(who, "validation", validation, low=0.0, high=1.0, high_open=True,
                           hint="0 decides on the training data"),
            *checks.number(who, "noise", noise, low=0.0, hint="0 = exact copies")]
        if problems:
            raise ConfigError(problems)
        super().__init__(model, build_strategy(retention, model))
        self.retention, self.threshold, self.widen_by = retention, threshold, widen_by
        self.max_growth, self.validation, self.noise = max_growth, validation, noise
        self.state: Net2NetState = Net2NetState()
        self._grew: list[dict[str, Any]] = []

    # ----------------------------- the retention method: every other hook is its own
    def before_task(self, task: Task) -> None:
        self._grew = []
        super().before_task(task)

    def task_report(self) -> TaskReport:
        inner = super().task_report()
        values = {**inner.values, "growths": float(len(self._grew)),
                  "parameters": float(sum(p.numel() for p in self.model.parameters()))}
        return TaskReport(values, inner.warnings)

    # ------------------------------------------------------------------------ growth
    def train_task(self, task: Task, loop: TaskLoop) -> None:
        train, held = self._split(self.task_data(task), task)
        loop.run_epochs(train)
        for _ in range(self.max_growth):
            accuracy = evaluate.accuracy(self, held, task_labels=loop.stream.scenario == "task",
                                         batch_size=loop.cfg.eval_batch_size)
            if accuracy >= self.threshold:
                return
            self._widen(task, accuracy)
            loop.run_epochs(train)  # the loop rebuilds the optimizer over the grown set

    def _split(self, data: TensorData, task: Task) -> tuple[TensorData, TensorData]:
        n = len(data)
        k = min(n - 1, round(self.validation * n))
        if k <= 0:
            return data, data
        order = torch.randperm(n, generator=self.generator("held-out", task.key))
        order = order.to(data.y.device)
        return data.take(order[k:]), data.take(order[:k])

    def _widen(self, task: Task, accuracy: float) -> None:
        if not isinstance(self.model, MLP):
            raise ConfigError(f"strategy 'net2net' widens an MLP, and the model is a "
                              f"{type(self.model).__name__}; use model.name=mlp")
        before = self.model.widths
        # Additive: each growth adds `widen_by` of the layer's *original* width, so a stream
        # whose tasks keep missing the threshold grows linearly, not geometrically.
        original = [int(w) for w in self.model.options["hidden"]]  # type: ignore[attr-defined]
        draws = self.generator("widen", task.key, len(self._grew))
        for layer, width in enumerate(before):
            step = math.ceil(self.widen_by * (original[layer] if layer < len(original)
                                              else width))
            change = self.model.wider(layer, width + step, generator=draws, noise=self.noise)
            self.remap(change.remap)  # the retention method carries its state over
        entry = {"task": task.key, "accuracy": accuracy, "widths": before,
                 "to": self.model.widths}
        self._grew.append(entry)
        self.state.growth.append(entry)
