"""Tasks and streams: the values every other module passes around.

Owns `TensorData`, `Task` and `Stream` (frozen values), `Stream.reorder`, and `Scratch` (storage
a repeated concatenation reuses). Does not own where data comes from (`lifelong.data.sources`) or
how a stream is built (`lifelong.data.builders`).

Labels in `TensorData.y` are what the model is trained on: task-local ids (0..k-1) in the task-
and domain-incremental scenarios, global class ids in the class-incremental one. `Task.classes`
always holds the global ids. `TensorData.t` holds each sample's task label (the head to use in
task-IL); the evaluator passes it to the model only in the task-incremental scenario.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lifelong.errors import ConfigError, DataError

Scenario = Literal["task", "domain", "class"]
SCENARIOS: tuple[Scenario, ...] = ("task", "domain", "class")


Inputs = Tensor | tuple[Tensor, ...]
"""A batch of inputs: one tensor (images), or a tuple of tensors with the same number of rows
(e.g. a bAbI story and its question). Models are called as ``model(x, t)`` with either."""


def map_inputs(x: Inputs, fn: Callable[[Tensor], Tensor]) -> Inputs:
    """`fn` applied to the input tensor, or to each tensor of a tuple of inputs."""
    return fn(x) if isinstance(x, Tensor) else tuple(fn(part) for part in x)


def input_rows(x: Inputs) -> int:
    """The number of examples in `x`."""
    return int((x if isinstance(x, Tensor) else x[0]).shape[0])


def image_inputs(x: Inputs, user: str) -> Tensor:
    """`x` when it is one tensor (images); a `ConfigError` naming `user` (e.g. ``"strategy
    'dgr'"``) for multi-input examples, which it cannot work on."""
    if isinstance(x, Tensor):
        return x
    raise ConfigError(f"{user} works on image inputs (one tensor per example), but this stream's "
                      f"examples have {len(x)} input tensors (e.g. a bAbI story and question); "
                      "use it on an image stream, or choose another method")


class Batch(NamedTuple):
    """One training batch (a plain tuple: built every step, so no validation). `rows` is
    where its rows sit in the data it was drawn from (`TensorData.batch` sets it), so a method
    can look up what it computed once per example of a task (e.g. iCaRL's teacher outputs);
    None for a batch built by hand."""

    x: Inputs
    y: Tensor
    t: Tensor
    rows: Tensor | None = None


@dataclass(frozen=True, slots=True)
class TensorData:
    """In-memory examples: inputs `x` (a tensor, or a tuple of tensors for multi-input
    examples), int64 labels `y`, int64 task labels `t`, all with the same number of rows.

    The one place that indexes, slices, moves and concatenates examples: the loop, the
    evaluator, memories and strategies go through these methods, so every one of them works
    unchanged on multi-input examples.
    """

    x: Inputs
    y: Tensor
    t: Tensor

    def __post_init__(self) -> None:
        parts = (self.x,) if isinstance(self.x, Tensor) else self.x
        if not parts or not all(isinstance(p, Tensor) for p in parts):
            raise DataError("TensorData: x must be a tensor or a non-empty tuple of tensors")
        n = parts[0].shape[0]
        if any(p.shape[0] != n for p in parts):
            raise DataError("TensorData: the input tensors of x have different numbers of rows "
                            f"{[p.shape[0] for p in parts]}; give one row per example in each")
        if self.y.shape != (n,) or self.t.shape != (n,):
            raise DataError(
                f"TensorData: x has {n} rows but y has shape {tuple(self.y.shape)} and t "
                f"{tuple(self.t.shape)}; labels must be 1-D with one entry per row"
            )
        if self.y.dtype != torch.int64 or self.t.dtype != torch.int64:
            raise DataError("TensorData: labels y and t must be int64 tensors")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: Tensor) -> TensorData:
        """The rows at `index` (a batch, or a subset)."""
        return TensorData(map_inputs(self.x, lambda v: v[index]), self.y[index], self.t[index])

    def batch(self, index: Tensor) -> Batch:
        """The rows at `index` as a `Batch` (no validation: built every step). A 2-D index
        (k, n) gives every field a (k, n, ...) layout (e.g. memories one row per task)."""
        x = self.x[index] if isinstance(self.x, Tensor) else tuple(v[index] for v in self.x)
        return Batch(x, self.y[index], self.t[index], index)

    def slice(self, start: int, stop: int) -> TensorData:
        """Rows start..stop-1 (views, no copy)."""
        return TensorData(map_inputs(self.x, lambda v: v[start:stop]), self.y[start:stop],
                          self.t[start:stop])

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> TensorData:
        return TensorData(map_inputs(self.x, lambda v: v.to(device, non_blocking=non_blocking)),
                          self.y.to(device, non_blocking=non_blocking),
                          self.t.to(device, non_blocking=non_blocking))

    def with_task_label(self, label: int) -> TensorData:
        return TensorData(self.x, self.y, torch.full_like(self.t, label))

    def with_labels(self, y: Tensor) -> TensorData:
        return TensorData(self.x, y, self.t)

    @staticmethod
    def concat(parts: Sequence[TensorData], *, scratch: Scratch | None = None) -> TensorData:
        """The examples of `parts`, one after the other (inputs of the same kind and shape).
        With `scratch`, written into its storage (see `Scratch`) instead of new tensors."""
        tensors = [p.x for p in parts if isinstance(p.x, Tensor)]
        tuples = [p.x for p in parts if not isinstance(p.x, Tensor)]
        if tensors and tuples:
            raise DataError("TensorData.concat: parts mix single-tensor and multi-input examples")

        def cat(field: str, values: list[Tensor]) -> Tensor:
            return torch.cat(values) if scratch is None else scratch.cat(field, values)

        x: Inputs = (cat("x", tensors) if tensors else
                     tuple(cat(f"x{i}", [v[i] for v in tuples]) for i in range(len(tuples[0]))))
        return TensorData(x, cat("y", [p.y for p in parts]), cat("t", [p.t for p in parts]))


class Scratch:
    """Storage that `TensorData.concat` writes into and keeps from one call to the next.

    For a concatenation made again at every task (a task's examples plus a memory, as iCaRL
    trains on): on a CPU a fresh tensor of tens of MB comes from the operating system page by
    page, which costs about ten times the copy itself (24 ms against 2.4 ms for 12000
    Fashion-MNIST images, one thread). What `concat` returns views this storage, so it is
    valid until the next `concat` into the same `Scratch`.
    """

    def __init__(self) -> None:
        self._store: dict[str, Tensor] = {}

    def cat(self, field: str, values: list[Tensor]) -> Tensor:
        """`torch.cat(values)`, written into this field's tensor (grown when too small)."""
        rows = sum(len(v) for v in values)
        dtype = functools.reduce(torch.promote_types, (v.dtype for v in values))
        shape, device = values[0].shape[1:], values[0].device
        held = self._store.get(field)
        if (held is None or len(held) < rows or held.shape[1:] != shape or held.dtype != dtype
                or held.device != device):
            held = self._store[field] = torch.empty((rows, *shape), dtype=dtype, device=device)
        return torch.cat(values, out=held[:rows])


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a stream.

    Attributes:
        key: stable identity, e.g. ``"permuted/digits/3"``; seeds everything random about it.
        index: position in its stream (changes under `Stream.reorder`).
        train, test: the task's examples.
        classes: the global class ids the task contains.
        validation: examples held out of `train` for choosing hyperparameters and models
            (e.g. bAbI's 10 %, Sukhbaatar et al. 2015 §4.2), or None when the stream keeps none.
        label: the task label, equal to `index`; exposed at test time only in task-IL.
    """

    key: str
    index: int
    train: TensorData
    test: TensorData
    classes: tuple[int, ...]
    validation: TensorData | None = None

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
        input_shape: shape of one example, e.g. ``(1, 28, 28)``; for multi-input examples
            one shape per input tensor, e.g. ``((50, 11), (11,))`` for a bAbI story and question.
        vocabulary: for token inputs (bAbI), the words the token ids index (id 0 padding);
            empty for images. Token models read its size; image models refuse such streams.
        answers: for token inputs, the answer string of each class (bAbI: ``"kitchen"``,
            ``"n,e"``; class 0 ``<unk>``), so a model can tie answers to their words; empty
            for images.
    """

    name: str
    scenario: Scenario
    tasks: tuple[Task, ...]
    num_classes: int
    num_outputs: int
    input_shape: tuple[int, ...] | tuple[tuple[int, ...], ...]
    vocabulary: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def num_heads(self) -> int:
        return len(self.tasks) if self.scenario == "task" else 1

    def reorder(self, order: Sequence[int]) -> Stream:
        """The same tasks in another order. Keys and data are unchanged; only each task's
        position (and so its task label) follows the new order."""
        if problems := check_order(order, len(self.tasks)):
            raise ConfigError(f"stream order {list(order)} is not a permutation of "
                              f"0..{len(self.tasks) - 1}: " + "; ".join(problems))
        tasks = []
        for new_index, old in enumerate(order):
            task = self.tasks[old]
            tasks.append(
                replace(
                    task,
                    index=new_index,
                    train=task.train.with_task_label(new_index),
                    test=task.test.with_task_label(new_index),
                    validation=(None if task.validation is None
                                else task.validation.with_task_label(new_index)),
                )
            )
        return replace(self, tasks=tuple(tasks))


def check_order(order: Sequence[int], t: int) -> list[str]:
    """Problems that keep `order` from being a permutation of 0..t-1 (empty when it is one)."""
    items = list(order)
    where = f"order {items} for {t} tasks"
    ok = [i for i in items if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < t]
    out = []
    if len(items) != t:
        out.append(f"{where} has {len(items)} entries; list each position 0..{t - 1} once")
    if len(ok) < len(items):  # by identity: True == 1 must not pass for a position
        odd = [i for i in items if not any(i is j for j in ok)]
        out.append(f"{where} has {odd}, not positions 0..{t - 1}")
    if repeats := sorted({i for i in ok if ok.count(i) > 1}):
        out.append(f"{where} repeats {repeats}; list each position once")
    if missing := sorted(set(range(t)) - set(ok)):
        out.append(f"{where} misses {missing}; list each position 0..{t - 1} once")
    return out
