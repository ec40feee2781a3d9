"""Callbacks observe a run through frozen events; they cannot change its results.

Owns the event types and the `Callback` base, plus the tqdm progress bar. The results store
callback lives in `lifelong.runner` next to the store it writes. If a callback raises, the run
stops; rows already stored stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

if TYPE_CHECKING:
    from lifelong.data.task import Stream


@dataclass(frozen=True, slots=True)
class RunStart:
    """Before training: the untrained model's accuracies are row 0 of R."""

    strategy: str
    stream: str
    task_keys: tuple[str, ...]
    epochs: int
    seed: int
    initial_accuracies: tuple[float, ...]
    # The stream's tasks themselves, for an observer that measures more than R on their test
    # sets (e.g. Expert Gate's routing accuracy); read-only, as the strategy it may read.
    data: Stream | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class EpochEnd:
    task_index: int
    epoch: int
    steps: int
    mean_loss: float


@dataclass(frozen=True, slots=True)
class StepEnd:
    """After each optimizer step. Sent only to callbacks that override `on_step_end`, so runs
    without such a callback pay nothing per step."""

    task_index: int
    step: int  # global step count since the run started


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """Accuracies measured within a task every `eval_every` steps (learning curves)."""

    task_index: int
    step: int  # global step count since the run started
    accuracies: tuple[float, ...]


# The per-task costs, with their types: each is a field of `TaskEnd` (one number) and of
# `lifelong.train.RunResult` (one number per task). The store's recorder, the reuse of stored
# runs and the JSON files go through this mapping, so a new cost is named here and in those two
# dataclasses only.
COSTS: dict[str, type[float] | type[int]] = {
    "train_seconds": float, "eval_seconds": float, "after_task_seconds": float,
    "peak_memory_bytes": int, "parameters": int, "state_bytes": int}


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """After training on task `task_index` (row `task_index + 1` of R).

    `diagnostics` are the strategy's `TaskReport.values` (e.g. ``capped_fraction``);
    `warnings` are the strategy's and the loop's (e.g. accuracy at chance) for this task.
    """

    task_index: int
    task_key: str
    accuracies: tuple[float, ...]
    train_seconds: float  # before_task + training + after_task
    eval_seconds: float
    after_task_seconds: float  # consolidation alone (importance, memories), within train
    peak_memory_bytes: int  # CUDA: peak of this task; CPU: process peak so far (see train.py)
    parameters: int
    curve: tuple[CurvePoint, ...]
    state_bytes: int = 0  # the model and the strategy's learned state (memories, anchors, ...)
    diagnostics: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def costs(self) -> dict[str, float]:
        """The `COSTS` of this task by name, as floats (how the store keeps them)."""
        return {name: float(getattr(self, name)) for name in COSTS}


@dataclass(frozen=True, slots=True)
class RunEnd:
    matrix: tuple[tuple[float, ...], ...]


class Callback:
    """Receives events; every method is a no-op by default."""

    def on_run_start(self, event: RunStart) -> None: ...
    def on_step_end(self, event: StepEnd) -> None: ...
    def on_epoch_end(self, event: EpochEnd) -> None: ...
    def on_curve_point(self, event: CurvePoint) -> None: ...
    def on_task_end(self, event: TaskEnd) -> None: ...
    def on_run_end(self, event: RunEnd) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar on stderr with one tick per epoch of each task."""

    def __init__(self, *, desc: str = "", leave: bool = False, disable: bool | None = None):
        self.desc, self.leave, self.disable = desc, leave, disable
        self._bar: tqdm[Any] | None = None

    def on_run_start(self, event: RunStart) -> None:
        self._bar = tqdm(total=len(event.task_keys) * event.epochs, unit="epoch",
                         desc=self.desc or event.strategy, leave=self.leave,
                         disable=self.disable, dynamic_ncols=True)

    def on_epoch_end(self, event: EpochEnd) -> None:
        if self._bar is not None:
            self._bar.set_postfix(task=event.task_index + 1, loss=f"{event.mean_loss:.3f}")
            self._bar.update(1)

    def on_run_end(self, event: RunEnd) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
