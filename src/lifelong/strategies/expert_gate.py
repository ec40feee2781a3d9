"""`expert-gate`: one expert per task, chosen at test time by the autoencoder that
reconstructs the input best — no task label needed.

Owns training each task's gate (an autoencoder of its inputs) before its expert, task
relatedness from reconstruction errors, starting a new expert from the most related one,
training only the new expert, routing in `predict`, and reporting relatedness. The experts and
gates are `lifelong.models.experts`'.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Inputs, Task, image_inputs
from lifelong.errors import ConfigError
from lifelong.models.experts import Autoencoder, Experts
from lifelong.models.heads import grow_model
from lifelong.strategies import STRATEGIES
from lifelong.strategies.base import Card, Strategy, StrategyState, TaskReport


@dataclass
class ExpertGateState(StrategyState):
    relatedness: list[list[float]] = field(default_factory=list)  # per task: to each earlier


@STRATEGIES.register("expert-gate")
class ExpertGate(Strategy):
    """Expert Gate (Aljundi, Chakravarty & Tuytelaars 2017, CVPR, §3–4).

    Before a task, its gate — an undercomplete autoencoder of the task's inputs — trains for
    `gate_epochs` (Adam). Its error on the task's data, Er_a, and each earlier gate's error on
    the same data, Er_k, give the relatedness Rel(k, a) = 1 − (Er_k − Er_a)/Er_a (Eq. 3). The
    task's expert, a copy of the run's model, starts from the most related earlier expert
    (from the initial model on the first task) and is the only part that trains. At test time,
    without a task label (domain- and class-IL), each input goes to the expert whose gate
    reconstructs it best (the gate's softmax over −errors/T picks the same expert as the
    lowest error), with that expert's task label; in task-IL the label the gate would infer is
    given, and that task's expert answers. Nothing is forgotten by an expert; errors come from
    routing, whose accuracy `route` measures and the `expansion` experiment reports.

    Args:
        code: width of each gate's code (undercomplete: below the input size).
        gate_epochs: epochs of each gate's training.
        gate_lr: Adam's learning rate for the gates.
    """

    name = "expert-gate"
    card = Card(family="expansion", departures=(
        "gates see the raw inputs (the paper: features of a pretrained AlexNet)",
        "a new expert is always fine-tuned from the most related one (the paper uses LwF "
        "when relatedness is high)"))

    def __init__(self, model: nn.Module, *, code: int = 100, gate_epochs: int = 10,
                 gate_lr: float = 1e-3) -> None:
        super().__init__(model)
        who = "strategy 'expert-gate'"
        problems = [*checks.count(who, "code", code, hint="autoencoder code width"),
                    *checks.count(who, "gate_epochs", gate_epochs, hint="epochs per gate"),
                    *checks.number(who, "gate_lr", gate_lr, low=0.0, low_open=True,
                                   hint="Adam's learning rate for the gates")]
        if problems:
            raise ConfigError(problems)
        self.code, self.gate_epochs, self.gate_lr = code, gate_epochs, gate_lr
        if isinstance(model, nn.Module) and any(True for _ in model.parameters()):
            first = next(model.parameters())
            n_in = getattr(next((m for m in model.modules() if isinstance(m, nn.Linear)),
                                None), "in_features", first.shape[-1])
            self.model = Experts(model, int(n_in), code=code)
        self.state: ExpertGateState = ExpertGateState()
        self._related: list[float] = []

    @property
    def device(self) -> torch.device:
        # Before the first task there are no experts yet: the template's device.
        return next(self.experts().template.parameters()).device

    def experts(self) -> Experts:
        if not isinstance(self.model, Experts):
            raise ConfigError("strategy 'expert-gate' needs a model with parameters")
        return self.model

    def before_task(self, task: Task) -> None:
        net = self.experts()
        if task.label in net.labels:  # a task seen again trains its own expert again
            net.active = net.labels.index(task.label)
            return
        x = image_inputs(task.train.x, f"strategy '{self.name}'").to(self.device)
        gate = self._train_gate(x, task)
        with torch.no_grad():
            own = float(gate.error(x).mean())
            theirs = [float(e) for e in net.errors(x).mean(0)] if net.num_experts else []
        self._related = [1 - (er - own) / own for er in theirs]  # Eq. 3
        source = max(range(len(theirs)), key=lambda k: self._related[k]) if theirs else -1
        expert = net.add(task.label, source, gate.to(self.device))
        # A growing head (model.growing=true) gains the task's labels in the new expert: the
        # loop grew the model before this hook, when the expert did not exist yet.
        labels = [int(v) for v in torch.unique(task.train.y).tolist()]
        grow_model(expert, labels, generator=self.generator("grow", task.key))
        self.state.relatedness.append(list(self._related))

    def _train_gate(self, x: Tensor, task: Task) -> Autoencoder:
        gate = Autoencoder(x[0].numel(), self.code, self.generator("gate-init", task.key))
        gate = gate.to(self.device)
        opt = torch.optim.Adam(gate.parameters(), lr=self.gate_lr)
        order = self.generator("gate-batches", task.key)
        for _ in range(self.gate_epochs):
            for idx in torch.split(torch.randperm(len(x), generator=order), 64):
                opt.zero_grad(set_to_none=True)
                loss = gate.error(x[idx.to(x.device)]).mean()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
        gate.requires_grad_(False)
        if not math.isfinite(float(loss.detach())):
            raise ConfigError(f"expert-gate: the gate of task {task.key} diverged (loss "
                              f"{float(loss)}); lower strategy.gate_lr (now {self.gate_lr})")
        return gate

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        net = self.experts()
        return iter(net.experts[net.active].parameters())

    def predict(self, x: Inputs, t: Tensor | None) -> Tensor:
        net = self.experts()
        if not net.num_experts:  # row 0: the untrained model, as every method's
            out: Tensor = net.template(x, t)
            return out
        if t is not None and len(t) and bool((t == t[0]).all()) and int(t[0]) in net.labels:
            # Task-IL gives the label the gate exists to infer: that task's expert answers.
            label = int(t[0])
            out = net.experts[net.labels.index(label)](x, label)
            return out
        return net.routed(image_inputs(x, f"strategy '{self.name}'"))

    def route(self, x: Inputs) -> Tensor:
        """The task label each input is routed to (for routing accuracy)."""
        net = self.experts()
        x = image_inputs(x, f"strategy '{self.name}'")
        return torch.tensor(net.labels, device=x.device)[net.route(x)]

    def task_report(self) -> TaskReport:
        values: dict[str, Any] = {"experts": float(self.experts().num_experts)}
        if self._related:
            values["max_relatedness"] = max(self._related)
        return TaskReport(values)
