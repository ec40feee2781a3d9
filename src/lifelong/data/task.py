"""Tasks and streams: the values every other module passes around.

Owns `TensorData`, `Task` and `Stream` (frozen values) and `Stream.reorder`. Does not own where
data comes from (`lifelong.data.sources`) or how a stream is built (`lifelong.data.builders`).

Labels in `TensorData.y` are what the model is trained on: task-local ids (0..k-1) in the task-
and domain-incremental scenarios, global class ids in the class-incremental one. `Task.classes`
always holds the global ids. `TensorData.t` holds each sample's task label (the head to use in
task-IL); the evaluator passes it to the model only in the task-incremental scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from lifelong.errors import ConfigError, DataError

Scenario = Literal["task", "domain", "class"]
SCENARIOS: tuple[Scenario, ...] = ("task", "domain", "class")


@dataclass(frozen=True, slots=True)
class TensorData:
    """In-memory examples: inputs `x`, int64 labels `y`, int64 task labels `t` (same length)."""

    x: Tensor
    y: Tensor
    t: Tensor

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.y.shape != (n,) or self.t.shape != (n,):
            raise DataError(
                f"TensorData: x has {n} rows but y has shape {tuple(self.y.shape)} and t "
                f"{tuple(self.t.shape)}; labels must be 1-D with one entry per row"
            )
        if self.y.dtype != torch.int64 or self.t.dtype != torch.int64:
            raise DataError("TensorData: labels y and t must be int64 tensors")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: Tensor) -> TensorData:
        """The rows at `index` (a batch, or a subset)."""
        return TensorData(self.x[index], self.y[index], self.t[index])

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(self.x.to(device), self.y.to(device), self.t.to(device))

    def with_task_label(self, label: int) -> TensorData:
        return TensorData(self.x, self.y, torch.full_like(self.t, label))

    @staticmethod
    def concat(parts: Sequence[TensorData]) -> TensorData:
        return TensorData(
            torch.cat([p.x for p in parts]),
            torch.cat([p.y for p in parts]),
            torch.cat([p.t for p in parts]),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a stream.

    Attributes:
        key: stable identity, e.g. ``"permuted/digits/3"``; seeds everything random about it.
        index: position in its stream (changes under `Stream.reorder`).
        train, test: the task's examples.
        classes: the global class ids the task contains.
        label: the task label, equal to `index`; exposed at test time only in task-IL.
    """

    key: str
    index: int
    train: TensorData
    test: TensorData
    classes: tuple[int, ...]

    @property
    def label(self) -> int:
        return self.index


@dataclass(frozen=True, slots=True)
class Stream:
    """An ordered sequence of tasks in one scenario.

    Attributes:
        name: the builder's name and source, e.g. ``"permuted/digits"``.
        scenario: ``"task"`` (a head per task, task label given at test time), ``"domain"``
            (one shared head over task-local labels) or ``"class"`` (one head over all classes).
        num_classes: total global classes across tasks.
        num_outputs: width of each head (classes per task in task/domain-IL, else num_classes).
        input_shape: shape of one example, e.g. ``(1, 28, 28)``.
    """

    name: str
    scenario: Scenario
    tasks: tuple[Task, ...]
    num_classes: int
    num_outputs: int
    input_shape: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def num_heads(self) -> int:
        return len(self.tasks) if self.scenario == "task" else 1

    def reorder(self, order: Sequence[int]) -> Stream:
        """The same tasks in another order. Keys and data are unchanged; only each task's
        position (and so its task label) follows the new order."""
        if sorted(order) != list(range(len(self.tasks))):
            raise ConfigError(
                f"stream order {list(order)} is not a permutation of 0..{len(self.tasks) - 1}"
            )
        tasks = []
        for new_index, old in enumerate(order):
            task = self.tasks[old]
            tasks.append(
                replace(
                    task,
                    index=new_index,
                    train=task.train.with_task_label(new_index),
                    test=task.test.with_task_label(new_index),
                )
            )
        return replace(self, tasks=tuple(tasks))
