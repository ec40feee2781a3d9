"""`icarl`: incremental classifier and representation learning — herded exemplars, sigmoid
distillation, nearest-mean-of-exemplars classification.

Owns the loss (binary cross-entropy on the classes seen so far, old classes distilled from the
model before the task), training on the task plus the exemplars, and the class means `predict`
classifies by. The exemplar sets under one total budget, and herding, are
`lifelong.memory.ClassMemory`'s; the frozen teacher is `_teacher`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Batch, Inputs, Scratch, Task, TensorData
from lifelong.errors import ConfigError
from lifelong.memory import ClassMemory, Selection
from lifelong.strategies import STRATEGIES
from lifelong.strategies._teacher import Teacher, snapshot
from lifelong.strategies.base import Card, Strategy

if TYPE_CHECKING:
    from lifelong.epochs import TaskLoop


@dataclass
class ICaRLState(ClassMemory):
    """The exemplar sets (`ClassMemory`'s fields) plus what iCaRL learned besides them."""

    teacher: dict[str, Any] | None = None  # the weights before the current task
    old: list[int] = field(default_factory=list)  # classes of the tasks learned before
    means: Tensor | None = None  # (len(classes), d) unit means of exemplars, rows as `classes`
    width: int = 0  # the model's number of outputs (the label space)


@STRATEGIES.register("icarl")
class ICaRL(Strategy):
    """iCaRL (Rebuffi et al. 2017): herded exemplars, sigmoid distillation, nearest mean.

    Rebuffi, Kolesnikov, Sperl & Lampert, "iCaRL: Incremental Classifier and Representation
    Learning", CVPR 2017, Algorithms 1–5.

    Training on a task (Alg. 3) uses its examples plus every stored exemplar. The loss is
    binary cross-entropy summed over the classes seen so far, one sigmoid per class: for the
    task's new classes the target is the one-hot label, for the old classes the output of the
    model as it was before the task (distillation). As in Alg. 3, those outputs q_i are
    computed once per task for every example it trains on, in large batches without a graph,
    and looked up by each batch's rows (`Batch.rows`), not recomputed every step of every
    epoch. After the task (Alg. 4, 5) every class's exemplars are cut to
    m = memory_size // classes seen, keeping the first m, and each new class gets m exemplars
    chosen by herding on the L2-normalised features φ (the model's `features` module) — or at
    random, the paper's ablation. The class means μ_y of the normalised exemplar features,
    renormalised, are then computed once, and `predict` classifies by the nearest mean
    (Alg. 1): y* = argmin_y ‖φ(x) − μ_y‖ over the classes seen only, computed as the highest
    φ(x)·μ_y (the same order, as the μ_y are unit vectors). No task label is used.

    Only class-incremental: the method is defined for a growing set of classes. Any model
    with a `features` module (mlp, cnn) works, with a fixed head (the unseen classes' outputs
    stay out of the loss) or a growing one (`model.growing=true`).

    Args:
        memory_size: K, exemplars kept in all (the paper's 2000, for 100 classes).
        selection: "herding" (the paper) or "random" exemplars.
        classifier: "nme", nearest mean of exemplars (the paper), or "network", the outputs
            of the network trained with the same loss (the paper's "hybrid1" ablation).
    """

    name = "icarl"
    card = Card(family="distillation + memory", scenarios=frozenset({"class"}), departures=(
        "trains with the run's optimizer and epochs (the paper: SGD lr 2.0 divided by 5 at "
        "49 and 63 of 70 epochs, weight decay 1e-5, batch 128, ResNet-32 on CIFAR-100)",
        "class means from the exemplars only, without the paper's horizontally flipped "
        "copies (digits are not mirror-symmetric)",
        "herding never picks an example twice (the printed Algorithm 4 may)"))

    def __init__(self, model: nn.Module, *, memory_size: int = 2000,
                 selection: Selection = "herding",
                 classifier: Literal["nme", "network"] = "nme") -> None:
        super().__init__(model)
        problems = checks.count("strategy 'icarl'", "memory_size", memory_size,
                                hint="exemplars kept in all, shared by the classes seen")
        if problems:
            raise ConfigError(problems)
        self.memory_size, self.selection, self.classifier = memory_size, selection, classifier
        self.state: ICaRLState = ICaRLState()
        self._teacher = Teacher()
        self._old = torch.zeros(0, dtype=torch.int64)  # the classes earlier tasks brought
        self._seen = torch.zeros(0)  # per output: 1 for a class seen so far, else 0
        self._columns_of_means: tuple[object, Tensor] = ((), torch.zeros(0))
        self._targets: Tensor | None = None  # the task's rows' targets, while it trains
        self._scratch = Scratch()  # where the task and the exemplars are joined

    def features(self) -> nn.Module:
        """The representation φ: the model's `features` module."""
        found = getattr(self.model, "features", None)
        if not isinstance(found, nn.Module):
            raise ConfigError(f"strategy 'icarl' needs a model with a `features` module (the "
                              f"representation its class means live in), and "
                              f"{type(self.model).__name__} has none; use model.name=mlp or cnn")
        return found

    def before_task(self, task: Task) -> None:
        self.features()  # fail before training, not after it
        old = sorted(set(self.state.old) - set(task.classes))
        self._old = torch.tensor(old, dtype=torch.int64, device=self.device)
        # The loss covers the seen classes' outputs through a 0/1 weight per output rather
        # than a slice or gather of the logits: the same sum, without a copy (and its backward)
        # every step, whatever the order the classes arrive in.
        dtype = next(self.model.parameters()).dtype
        self._seen = torch.zeros(self._outputs(task.train), dtype=dtype, device=self.device)
        self._seen[[*old, *task.classes]] = 1
        if old:
            self.state.teacher = snapshot(self.model)

    def task_data(self, task: Task) -> TensorData:
        """The task's examples followed by every exemplar, in storage reused from task to task
        (valid until the next call)."""
        data = task.train.to(self.device)
        return (TensorData.concat([data, self.state.data()], scratch=self._scratch)
                if len(self.state) else data)

    def train_task(self, task: Task, loop: TaskLoop) -> None:
        data = self.task_data(task)
        chunk = loop.cfg.eval_batch_size
        self._targets = torch.cat([self._target_rows(part)  # once per task, as in Alg. 3
                                   for part in (data.slice(i, i + chunk)
                                                for i in range(0, len(data), chunk))])
        try:
            loop.run_epochs(data)
        finally:
            self._targets = None

    def _target_rows(self, rows: TensorData | Batch) -> Tensor:
        """The loss's targets, one column per output: the one-hot label for the task's new
        classes, q_i (the frozen model's sigmoid outputs) for the old; 0 for the unseen
        classes, whose weight in the loss is 0."""
        target = F.one_hot(rows.y, len(self._seen)).to(self._seen.dtype)
        teacher = self._teacher.module(self.model, self.state.teacher)
        if teacher is not None and len(self._old):
            with torch.no_grad():
                out = teacher(rows.x, rows.t)[:, self._old]
            target[:, self._old] = torch.sigmoid(out)
        return target

    def loss(self, batch: Batch, logits: Tensor) -> Tensor:
        if self._targets is not None and batch.rows is not None:
            target = self._targets[batch.rows]
        else:  # a batch from elsewhere (not the loop's): its targets now
            target = self._target_rows(batch)
        out = F.binary_cross_entropy_with_logits(logits, target, weight=self._seen,
                                                 reduction="sum")
        return out / len(batch.y)

    def after_task(self, task: Task) -> None:
        phi = self.features()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                data = task.train.to(self.device)
                self.state.add(data, memory_size=self.memory_size, selection=self.selection,
                               features=phi, generator=self.generator("exemplars", task.key),
                               device=self.device)
                self.state.means = self._class_means(phi)
        finally:
            self.model.train(was_training)
        self.state.width = self._outputs(task.train)
        self.state.old = sorted({*self.state.old, *task.classes})

    def _outputs(self, data: TensorData) -> int:
        """The model's number of outputs (the label space), from one example in eval mode
        (so no normalisation statistics move)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                first = data.slice(0, 1).to(self.device)
                return int(self.model(first.x, first.t).shape[1])
        finally:
            self.model.train(was_training)

    def _class_means(self, phi: nn.Module) -> Tensor:
        """μ_y for every stored class: the renormalised mean of its exemplars' unit features."""
        mem = self.state.data()
        unit = F.normalize(phi(mem.x).flatten(1), dim=1)
        group = torch.repeat_interleave(torch.arange(len(self.state.count), device=unit.device),
                                        torch.tensor(self.state.count, device=unit.device))
        sums = unit.new_zeros(len(self.state.count), unit.shape[1]).index_add_(0, group, unit)
        return F.normalize(sums, dim=1)  # the mean's direction: the count cancels

    def predict(self, x: Inputs, t: Tensor | None) -> Tensor:
        means = self.state.means
        if self.classifier == "network" or means is None:  # e.g. the untrained model, row 0
            return super().predict(x, t)
        unit = F.normalize(self.features()(x).flatten(1), dim=1)
        # ‖φ − μ‖² = ‖φ‖² + 1 − 2 φ·μ with unit μ: the nearest mean has the highest φ·μ, one
        # matrix product. These scores are the logits; unseen classes get the lowest value.
        out = unit.new_full((len(x), self.state.width), torch.finfo(unit.dtype).min)
        return out.index_copy_(1, self._mean_columns(), unit @ means.T)

    def _mean_columns(self) -> Tensor:
        """The class ids of the rows of `means`, as a tensor on the model's device (cached)."""
        key = (tuple(self.state.classes), self.device)
        if self._columns_of_means[0] != key:
            self._columns_of_means = (key, torch.tensor(self.state.classes, device=self.device))
        return self._columns_of_means[1]
