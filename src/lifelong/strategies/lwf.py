"""`lwf`: Learning without Forgetting — distil the previous model's outputs on the new data.

Owns the teacher (a frozen copy of the model taken before each task after the first), the
outputs it is distilled on (the old tasks' heads in task-IL, the old classes of the shared head
otherwise) and `distillation`, the temperature-softened KL term. Needs no stored examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Batch, Inputs, Task, input_rows
from lifelong.errors import ConfigError
from lifelong.models.heads import MultiHead
from lifelong.strategies import STRATEGIES
from lifelong.strategies._teacher import Teacher, snapshot
from lifelong.strategies.base import Card, Strategy, StrategyState


@dataclass
class LwFState(StrategyState):
    teacher: dict[str, Any] | None = None  # the model's weights before the current task
    heads: list[int] = field(default_factory=list)  # task labels trained before (task-IL)
    outputs: list[int] = field(default_factory=list)  # shared-head outputs trained before


def distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)) over the last dim, summed over any middle
    dims (one per old head) and averaged over the batch. Its gradient is that of Li & Hoiem's
    modified cross-entropy −Σ y'_o log ŷ'_o (they differ by the teacher's entropy, a
    constant), and it is 0 when student = teacher."""
    target = F.log_softmax(teacher / temperature, -1)
    log_q = F.log_softmax(student / temperature, -1)
    return (target.exp() * (target - log_q)).sum() / student.shape[0]


def multi_head(model: nn.Module) -> MultiHead | None:
    """The model's `MultiHead` if it has several heads (task-IL), else None."""
    head = getattr(model, "head", None)
    return head if isinstance(head, MultiHead) and head.num_heads > 1 else None


def head_outputs(model: nn.Module, x: Inputs, heads: list[int]) -> Tensor:
    """Logits of every head in `heads`, shape (N, len(heads), outputs): one pass of the trunk
    and one matrix product when the model is `features` + `MultiHead`, else one pass per
    head."""
    head, features = multi_head(model), getattr(model, "features", None)
    if head is not None and isinstance(features, nn.Module):
        # All heads at once from the shared weight tensor, then the old ones picked.
        out = F.linear(features(x), head.weight, head.bias)
        return out.view(input_rows(x), head.num_heads, -1)[:, heads]
    return torch.stack([model(x, j) for j in heads], 1)


@STRATEGIES.register("lwf")
class LwF(Strategy):
    """Learning without Forgetting (Li & Hoiem 2017, TPAMI 40(12), §3, Alg. 1).

    Before each task after the first, the model is copied and frozen (the teacher, θ_s and θ_o
    of the paper). Each step's loss is λ_o · L_old + L_new: cross-entropy on the new task plus
    the teacher's temperature-softened outputs distilled into the student's on the same new
    inputs. The outputs are those of earlier tasks: in task-IL each old task's head (the task
    label picks it), in domain- and class-IL the outputs of the shared head that earlier tasks
    trained (their labels), softmaxed over those only. The teacher runs once per step without a
    graph; in task-IL the student's old heads take one more pass of its trunk.

    L_old is written as a KL divergence (`distillation`): the paper's modified cross-entropy
    less a constant, so the gradients are the paper's, without Hinton et al.'s T² factor
    (the paper has none). The paper's λ_o = 1 and T = 2 are the defaults. The paper's warm-up
    of the new head with the old weights frozen is not done.

    Args:
        temperature: T of the softened outputs (the paper's 2).
        strength: λ_o, the weight of the distillation term (the paper's 1).
    """

    name = "lwf"
    card = Card(family="distillation", caveats={"class": (
        "distilling the old outputs on new-class images does not stop the shared head from "
        "preferring the newest classes: LwF stays near naive in class-incremental learning "
        "(van de Ven & Tolias 2019, Table 2; Hsu et al. 2018: 24% on split MNIST; here ACC "
        "0.205 vs naive's 0.194 on split mnist-10k). Use replay for class-IL")},
        departures=("no warm-up: the paper first trains the new head alone, the shared "
                    "weights frozen; here every weight trains from the first step",))

    def __init__(self, model: nn.Module, *, temperature: float = 2.0,
                 strength: float = 1.0) -> None:
        super().__init__(model)
        problems = [
            *checks.number("strategy 'lwf'", "temperature", temperature, low=0.0,
                           low_open=True, hint="T; 1 = plain softmax"),
            *checks.number("strategy 'lwf'", "strength", strength, low=0.0,
                           hint="0 = naive fine-tuning")]
        if problems:
            raise ConfigError(problems)
        self.temperature = temperature
        self.strength = strength
        self.state: LwFState = LwFState()
        self._teacher = Teacher()

    def before_task(self, task: Task) -> None:
        if self.state.heads:
            self.state.teacher = snapshot(self.model)

    def after_task(self, task: Task) -> None:
        # Labels are the outputs a single head trained on: task-local ids in domain-IL,
        # global classes in class-IL.
        seen = {int(v) for v in torch.unique(task.train.y).tolist()}
        self.state.heads = sorted({*self.state.heads, task.label})
        self.state.outputs = sorted({*self.state.outputs, *seen})

    def teacher(self) -> nn.Module | None:
        """The frozen teacher module (None on the first task)."""
        return self._teacher.module(self.model, self.state.teacher)

    def loss(self, batch: Batch, logits: Tensor) -> Tensor:
        new = super().loss(batch, logits)
        teacher = self.teacher()
        if teacher is None or not self.strength:
            return new
        if multi_head(self.model) is not None:
            with torch.no_grad():
                target = head_outputs(teacher, batch.x, self.state.heads)
            student = head_outputs(self.model, batch.x, self.state.heads)
        else:
            with torch.no_grad():
                target = teacher(batch.x, batch.t)[:, self.state.outputs]
            student = logits[:, self.state.outputs]
        return new + self.strength * distillation(student, target, self.temperature)
