"""Callbacks observe a run through frozen events; they cannot change its results.

Owns the event types and the `Callback` base, plus the tqdm progress bar. The store is fed
these events (`Store.record`) by the callback in `lifelong.run.execution`. If a callback
raises, the run stops; rows already stored stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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
    # The tasks a resumed run finished before (`fit_stream(resume=...)`): their rows are
    # `completed[i].accuracies`; training goes on from task `len(completed)`.
    completed: tuple[TaskEnd, ...] = ()


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


@dataclass(frozen=True, slots=True)
class Costs:
    """What learning one task cost: the one record of it that `TaskEnd`, `RunResult`, the
    store, checkpoints and the JSON output all carry (a new cost is a new field here).

    Attributes:
        train_seconds: before_task + training + after_task.
        eval_seconds: measuring the row of R (and the task's own validation accuracy).
        after_task_seconds: consolidation alone (importance, memories), within train_seconds.
        peak_memory_bytes: CUDA: peak of this task; CPU: the process's peak so far.
        parameters: the model's size after the task.
        state_bytes: the model and the strategy's learned state (memories, anchors, ...).
    """

    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    after_task_seconds: float = 0.0
    peak_memory_bytes: int = 0
    parameters: int = 0
    state_bytes: int = 0

    def as_dict(self) -> dict[str, float]:
        """Every cost by name, as floats (how the store keeps them)."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> Costs:
        """The inverse of `as_dict`; a cost missing (stored by an older version) is 0."""
        v = {f.name: values.get(f.name, 0) for f in fields(cls)}
        return cls(float(v["train_seconds"]), float(v["eval_seconds"]),
                   float(v["after_task_seconds"]), int(v["peak_memory_bytes"]),
                   int(v["parameters"]), int(v["state_bytes"]))


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """After training on task `task_index` (row `task_index + 1` of R).

    `diagnostics` are the strategy's `TaskReport.values` (e.g. ``capped_fraction``);
    `warnings` are the strategy's and the loop's (e.g. accuracy at chance) for this task.
    """

    task_index: int
    task_key: str
    accuracies: tuple[float, ...]
    costs: Costs
    curve: tuple[CurvePoint, ...] = ()
    diagnostics: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


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


class Recorder(Callback):
    """A callback that keeps something a report needs beyond R (e.g. a parameter path): it
    still only observes, and what it keeps leaves the run as `artifact()` — JSON values
    (numbers, strings, lists, dicts) that the run returns, the store holds and a checkpoint
    saves — so a run may execute in another process or on another machine, and be resumed.

    Subclasses set `key` (unique within a run) and implement `artifact` and `restore`."""

    key: str = ""

    def artifact(self) -> Any:
        """What was recorded so far, as JSON values."""
        raise NotImplementedError

    def restore(self, value: Any) -> None:
        """Take back what `artifact()` returned (a resumed run goes on from there)."""
        raise NotImplementedError


class ProgressBar(Callback):
    """A tqdm bar on stderr with one tick per epoch of each task."""

    def __init__(self, *, desc: str = "", leave: bool = False, disable: bool | None = None):
        self.desc, self.leave, self.disable = desc, leave, disable
        self._bar: tqdm[Any] | None = None

    def on_run_start(self, event: RunStart) -> None:
        self._bar = tqdm(total=len(event.task_keys) * event.epochs, unit="epoch",
                         desc=self.desc or event.strategy, leave=self.leave,
                         disable=self.disable, dynamic_ncols=True,
                         initial=len(event.completed) * event.epochs)

    def on_epoch_end(self, event: EpochEnd) -> None:
        if self._bar is not None:
            self._bar.set_postfix(task=event.task_index + 1, loss=f"{event.mean_loss:.3f}")
            self._bar.update(1)

    def on_run_end(self, event: RunEnd) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
