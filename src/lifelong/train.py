"""The training loop: tasks × epochs × batches, for one run or a group of runs.

Owns `TrainConfig`, `fit_members` (the one task loop: grow, `before_task`, train, `after_task`,
evaluate, the task's end, callbacks, checkpoint and resume, for G ≥ 1 members), `fit_stream` (a
run alone: a group of one), `Member`, `Progress` and `RunResult`. How a task's epochs are taken
is a `Trainer`'s: `lifelong.epochs.Alone` for one run, `lifelong.group`'s stacked trainer for a
group. After each task it reads the strategy's `TaskReport` and warns when the task was
learned no better than chance. Same seed ⇒ bit-identical matrix on the CPU.
"""

from __future__ import annotations

import math
import resource
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import torch

from lifelong.callbacks import (
    Callback,
    Costs,
    CurvePoint,
    RunEnd,
    RunStart,
    TaskEnd,
)
from lifelong.chance import chance_warning
from lifelong.data.task import Stream, Task
from lifelong.epochs import Alone
from lifelong.errors import ConfigError
from lifelong.evaluate import accuracies, accuracy
from lifelong.metrics import summary
from lifelong.models.heads import grow_model
from lifelong.seeding import generator
from lifelong.strategies.base import Strategy

Optimizer = Literal["sgd", "adam"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How each task is trained.

    Attributes:
        epochs: passes over each task's data.
        steps_per_task: optimizer steps on each task instead (None = `epochs` passes): passes
            over the task's data, each freshly shuffled, until this many batches have been
            drawn, the last pass cut short, e.g. van de Ven & Tolias' 2000 iterations per
            task. `epochs` is then unused; `lr_decay_every` still counts passes.
        batch_size: examples per step.
        optimizer: ``"sgd"`` (with `momentum`) or ``"adam"``; a fresh one per task unless
            `keep_optimizer`.
        keep_optimizer: keep one optimizer, and its state (Adam's moments, SGD's momentum),
            across the tasks instead of a fresh one per task, as Hsu et al.'s and van de Ven &
            Tolias' code do; where the trainable parameters change (a new column, a grown
            head), the ones that stay keep their state. Off by default: a fresh optimizer per
            task is what most papers describe.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay of the optimizer.
        grad_clip: rescale each step's gradient to this L2 norm when it is larger (over the
            parameters being trained; None = off), e.g. 40 for MemN2N (Sukhbaatar et al. 2015).
        lr_decay_every: multiply the learning rate by `lr_decay` every this many epochs of a
            task (a step schedule; None = a constant rate), e.g. MemN2N's halving every 25
            epochs. Each task's fresh optimizer starts again at `lr`.
        lr_decay: the factor of that schedule.
        eval_every: measure learning curves every N steps within a task (None = off).
        measure_train: after each task, also measure the accuracy on its training examples
            (diagnostic ``train_accuracy``), e.g. to pick the best of several seeds by
            training error as MemN2N's protocol does. Accuracy on a task's validation split,
            where the stream keeps one, is always recorded (``validation_accuracy``).
        eval_batch_size: batch size for evaluation.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
    """

    epochs: int = 1
    steps_per_task: int | None = None
    batch_size: int = 32
    optimizer: Optimizer = "sgd"
    keep_optimizer: bool = False
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float | None = None
    lr_decay_every: int | None = None
    lr_decay: float = 0.5
    eval_every: int | None = None
    measure_train: bool = False
    eval_batch_size: int = 2048
    device: str = "auto"

    def lr_at(self, epoch: int) -> float:
        """The learning rate of a task's epoch `epoch` (from 0) under the step schedule."""
        if self.lr_decay_every is None:
            return self.lr
        return self.lr * self.lr_decay ** (epoch // self.lr_decay_every)

    def passes(self, n: int) -> list[int]:
        """The steps of each pass over `n` training examples: `epochs` full passes, or, with
        `steps_per_task`, as many passes as those steps take, the last one cut short."""
        full = math.ceil(n / self.batch_size)
        if self.steps_per_task is None:
            return [full] * self.epochs
        whole, rest = divmod(self.steps_per_task, full)
        return [full] * whole + ([rest] if rest else [])

    def problems(self) -> list[str]:
        out = []
        for key in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                out.append(f"train.{key}={v!r} must be a positive integer")
        if self.optimizer not in ("sgd", "adam"):
            out.append(f"train.optimizer={self.optimizer!r} must be 'sgd' or 'adam'")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            out.append(f"train.lr={self.lr!r} must be a positive number")
        if not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            out.append(f"train.momentum={self.momentum!r} must be in [0, 1) (0 = none)")
        if not isinstance(self.weight_decay, (int, float)) or not self.weight_decay >= 0:
            out.append(f"train.weight_decay={self.weight_decay!r} must be a number >= 0")
        if self.lr_decay_every is not None and (not isinstance(self.lr_decay_every, int)
                                                or self.lr_decay_every < 1):
            out.append(f"train.lr_decay_every={self.lr_decay_every!r} must be a positive "
                       "integer (epochs) or null")
        if not isinstance(self.lr_decay, (int, float)) or not 0 < self.lr_decay <= 1:
            out.append(f"train.lr_decay={self.lr_decay!r} must be in (0, 1]")
        if self.grad_clip is not None and (not isinstance(self.grad_clip, (int, float))
                                           or not self.grad_clip > 0):
            out.append(f"train.grad_clip={self.grad_clip!r} must be a positive number or null")
        if not isinstance(self.keep_optimizer, bool):
            out.append(f"train.keep_optimizer={self.keep_optimizer!r} must be true or false")
        if not isinstance(self.measure_train, bool):
            out.append(f"train.measure_train={self.measure_train!r} must be true or false")
        if self.eval_every is not None and (not isinstance(self.eval_every, int)
                                            or self.eval_every < 1):
            out.append(f"train.eval_every={self.eval_every!r} must be a positive integer or null")
        if self.steps_per_task is not None and (not isinstance(self.steps_per_task, int)
                                                or isinstance(self.steps_per_task, bool)
                                                or self.steps_per_task < 1):
            out.append(f"train.steps_per_task={self.steps_per_task!r} must be a positive "
                       "integer (optimizer steps per task) or null (train.epochs passes)")
        return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device={name!r} is not a device; use auto, cpu or cuda") from None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What `fit_stream` returns: the matrix R, per-task `Costs`, learning curves, per task
    the strategy's diagnostics and the warnings raised (the strategy's, the loop's), and what
    the run's `Recorder` callbacks kept (`artifacts`, JSON values by recorder key)."""

    strategy: str
    stream: str
    seed: int
    matrix: tuple[tuple[float, ...], ...]
    costs: tuple[Costs, ...] = ()  # per task
    curves: tuple[CurvePoint, ...] = field(default=())
    diagnostics: tuple[Mapping[str, float], ...] = ()  # per task: the strategy's TaskReport
    warnings: tuple[tuple[str, ...], ...] = ()  # per task: the strategy's and the loop's
    tasks: tuple[str, ...] = ()  # the task keys in training order (the stream's order)
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return summary(self.matrix)

    def per_task(self) -> dict[str, Any]:
        """The per-task fields as JSON values: each cost as a list over tasks,
        ``diagnostics`` as a list (one name → value object per task) and ``warnings`` as a
        list of ``{"task": index from 0, "message": ...}``."""
        names = [f.name for f in fields(Costs)]
        return {**{n: [getattr(c, n) for c in self.costs] for n in names}, **self.notes()}

    def notes(self) -> dict[str, Any]:
        """``diagnostics`` and ``warnings`` as in `per_task` (what ``lifelong run --json``
        adds to each run)."""
        return {"diagnostics": [dict(d) for d in self.diagnostics],
                "warnings": [{"task": t, "message": m}
                             for t, messages in enumerate(self.warnings) for m in messages]}


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a run got: row 0 of R, the `TaskEnd` of every task finished (in order), the
    global step count and, with `TrainConfig.keep_optimizer`, the optimizer's `state_dict`.
    `fit_stream` reports it after each task (to write a checkpoint) and continues from it
    (`resume`), with the strategy's state loaded separately."""

    row0: tuple[float, ...]
    ends: tuple[TaskEnd, ...]
    step: int
    optimizer: dict[str, Any] | None = None


def passes_per_task(cfg: TrainConfig, stream: Stream) -> int:
    """The passes over each task `RunStart` announces (a progress bar's ticks): `cfg.epochs`,
    or with `cfg.steps_per_task` those the first task's data takes (others may differ by
    one or two where tasks differ in size)."""
    if cfg.steps_per_task is None or not stream.tasks:
        return cfg.epochs
    return len(cfg.passes(len(stream.tasks[0].train)))


def _peak_memory(device: torch.device) -> int:
    """On CUDA, the peak allocated since the task began. On the CPU, the peak resident memory
    of the whole process so far: an upper bound that includes everything the process did
    before (PyTorch keeps no CPU allocator statistics); compare methods with `state_bytes`."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # Peak resident set size of the process (kB on Linux, bytes on macOS).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


class LifelongWarning(UserWarning):
    """A setting that runs but is known to give poor or misleading results."""


def warn_caveat(strategy: Strategy, stream: Stream) -> None:
    # Python's default warning filter shows each distinct message once per process.
    reason = strategy.card.caveats.get(stream.scenario)
    if reason:
        warnings.warn(f"{strategy.name} in the {stream.scenario}-incremental scenario: {reason}",
                      LifelongWarning, stacklevel=3)


def own_accuracies(strategy: Strategy, stream: Stream, task: Task,
                    cfg: TrainConfig) -> dict[str, float]:
    """The accuracy on the task's validation split (where the stream keeps one) and, with
    `cfg.measure_train`, on its training examples: diagnostics recorded with the task."""
    labels = stream.scenario == "task"
    out = {}
    if task.validation is not None and len(task.validation):
        out["validation_accuracy"] = accuracy(strategy, task.validation, task_labels=labels,
                                              batch_size=cfg.eval_batch_size)
    if cfg.measure_train:
        out["train_accuracy"] = accuracy(strategy, task.train, task_labels=labels,
                                         batch_size=cfg.eval_batch_size)
    return out


def task_end(strategy: Strategy, stream: Stream, position: int, cfg: TrainConfig,
             row: tuple[float, ...], curve: Sequence[CurvePoint], measured: Mapping[str, float],
             *, train_seconds: float, eval_seconds: float, after_task_seconds: float,
             device: torch.device, capped: tuple[float, str] | None = None) -> TaskEnd:
    """The `TaskEnd` of the task at `position`, just learned and evaluated (`row`): its costs,
    the strategy's report and the loop's own measurements as diagnostics, and the warnings
    (the strategy's, and "learned nothing" where the task's accuracy is at chance), which are
    also raised as `LifelongWarning`s. Read after `after_task` and outside the timings: it
    observes, it does not learn."""
    task = stream.tasks[position]
    report = strategy.task_report()
    values = dict(report.values)
    messages = list(report.warnings)
    if capped is not None:  # the loop's stiffness cap on the strategy's penalty
        values["capped_fraction"] = capped[0]
        messages.extend([capped[1]] if capped[1] else [])
    if (chance := chance_warning(strategy, stream, position, cfg, row[position])):
        messages.append(chance)
    for message in messages:  # warnings.warn shows each distinct message once
        warnings.warn(message, LifelongWarning, stacklevel=3)
    costs = Costs(train_seconds=train_seconds, eval_seconds=eval_seconds,
                  after_task_seconds=after_task_seconds, peak_memory_bytes=_peak_memory(device),
                  parameters=sum(p.numel() for p in strategy.model.parameters()),
                  state_bytes=strategy.memory_bytes())
    return TaskEnd(task.index, task.key, row, costs, tuple(curve),
                   diagnostics={**{str(k): float(v) for k, v in values.items()},
                                **measured}, warnings=tuple(messages))


@dataclass
class Member:
    """One run of `fit_members`: its strategy (around its own model), stream, seed and
    callbacks, and where it continues from (`resume`, None: its first task)."""

    strategy: Strategy
    stream: Stream
    seed: int
    callbacks: Sequence[Callback] = ()
    resume: Progress | None = None


class Trainer(Protocol):
    """How `fit_members` takes one task's epochs for its members (built once per run, after
    the members are on their device): `Alone` for one run, `lifelong.group`'s stacked
    trainer for a group. `train` returns the global step count and, per member, its learning
    curve and the stiffness cap's fraction and warning (None: no cap)."""

    def train(self, tasks: Sequence[Task], step: int) -> tuple[
            int, list[list[CurvePoint]], list[tuple[float, str] | None]]: ...

    def optimizer_state(self) -> dict[str, Any] | None: ...


def fit_stream(strategy: Strategy, stream: Stream, train: TrainConfig | None = None, *,
               seed: int = 0, callbacks: Sequence[Callback] = (),
               resume: Progress | None = None,
               checkpoint: Callable[[Progress], None] | None = None) -> RunResult:
    """Train `strategy` on each task of `stream` in order and measure the accuracy matrix:
    `fit_members` with one member (`Alone`); `resume` and `checkpoint` as there."""
    (result,) = fit_members([Member(strategy, stream, seed, callbacks, resume)], train,
                            checkpoint=None if checkpoint is None
                            else lambda g, progress: checkpoint(progress))
    return result


def fit_members(members: Sequence[Member], train: TrainConfig | None = None, *,
                trainer: Callable[[Sequence[Member], TrainConfig, torch.device],
                                  Trainer] = Alone,
                checkpoint: Callable[[int, Progress], None] | None = None,
                problems: Sequence[str] = (),
                diagnostics: Mapping[str, float] | None = None) -> list[RunResult]:
    """Train each member on each task of its stream in order and measure its accuracy matrix:
    the one task loop, for a run alone (`Alone`) or a group (`lifelong.group`), which differ
    only in how a task's epochs are taken (`trainer`, built once the members are on their
    device). Row 0 of R is the untrained model; row i+1 is measured after task i. A model with
    a `GrowingHead` grows to the task's classes first (in row 0 it has no unit, so every logit
    ties and it predicts class 0).

    A member's `resume` continues it from its `Progress` (its finished tasks are not trained
    again; its strategy must hold the state it had then, `Strategy.load_state_dict`, and its
    callbacks get them in `RunStart.completed`); on the CPU it ends as the uninterrupted run,
    bit for bit: every draw derives from (seed, task key), and the optimizer is fresh per task
    or restored from `Progress.optimizer`. A group's members continue from one point.
    `checkpoint(g, progress)` is called after each task for each member (after the callbacks,
    outside the timings); `problems` are the caller's own objections, reported with the
    loop's; `diagnostics` are added to every task's (a group's ``group_size``).

    Raises:
        ConfigError: bad training options, a strategy does not support the scenario, a
            `resume` from another stream or order, or members whose streams or resume points
            differ.
        DivergenceError: a loss became NaN or infinite.
    """
    cfg = train or TrainConfig()
    out = [*cfg.problems(), *problems]
    first = members[0]
    point = (len(first.resume.ends), first.resume.step) if first.resume else (0, 0)
    for m in members:
        if m.stream.scenario not in m.strategy.card.scenarios:
            ok = ", ".join(sorted(m.strategy.card.scenarios))
            out.append(f"strategy '{m.strategy.name}' does not support the "
                       f"{m.stream.scenario}-incremental scenario (it supports: {ok})")
        done = m.resume.ends if m.resume is not None else ()
        keys = tuple(t.key for t in m.stream.tasks)
        if tuple(e.task_key for e in done) != keys[:len(done)] or (
                m.resume is not None and len(m.resume.row0) != len(m.stream)):
            out.append(f"the run to resume finished tasks {[e.task_key for e in done]}, which "
                       f"do not begin this stream ({list(keys)}); resume it with its own "
                       "config, or train it again")
        if len(m.stream) != len(first.stream) or m.stream.scenario != first.stream.scenario:
            out.append("the members' streams differ in length or scenario")
        if ((len(m.resume.ends), m.resume.step) if m.resume else (0, 0)) != point:
            out.append("the members continue from different points; resume them one by one")
    if out:
        raise ConfigError(list(dict.fromkeys(out)))
    device = resolve_device(cfg.device)
    for m in members:
        warn_caveat(m.strategy, m.stream)
        m.strategy.to(device)
        m.strategy.attach(seed=m.seed)
    trains = trainer(members, cfg, device)
    size, (start, step) = len(members), point
    rows: list[list[tuple[float, ...]]] = []
    ends: list[list[TaskEnd]] = []
    for m in members:
        done = m.resume.ends if m.resume is not None else ()
        row0 = m.resume.row0 if m.resume is not None else tuple(
            accuracies(m.strategy, m.stream, batch_size=cfg.eval_batch_size))
        begin = RunStart(m.strategy.name, m.stream.name, tuple(t.key for t in m.stream.tasks),
                         passes_per_task(cfg, m.stream), m.seed, row0, m.stream,
                         completed=done)
        for cb in m.callbacks:
            cb.on_run_start(begin)
        rows.append([row0, *(e.accuracies for e in done)])
        ends.append(list(done))
    for position in range(start, len(first.stream)):  # a part of a stream keeps its indices
        tasks = [m.stream.tasks[position] for m in members]
        if device.type == "cuda":  # the peak of this task alone
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for m, task in zip(members, tasks, strict=True):
            # A growing head (an opt-in model option) gains units for the task's new classes
            # before `before_task`, so the strategy sees the grown model and the fresh
            # optimizer includes the new units. Class-IL labels are the global ids in
            # `task.classes`; elsewhere they are task-local positions.
            grow_model(m.strategy.model, task.classes if m.stream.scenario == "class"
                       else range(len(task.classes)),
                       generator=generator(m.seed, "grow", task.key))
            m.strategy.before_task(task)
        step, curves, capped = trains.train(tasks, step)
        ta = time.perf_counter()
        spent = []  # each member's own consolidation
        for m, task in zip(members, tasks, strict=True):
            c0 = time.perf_counter()
            m.strategy.after_task(task)
            spent.append(time.perf_counter() - c0)
        for g, (m, task) in enumerate(zip(members, tasks, strict=True)):
            e0 = time.perf_counter()
            row = tuple(accuracies(m.strategy, m.stream, batch_size=cfg.eval_batch_size))
            measured = own_accuracies(m.strategy, m.stream, task, cfg)
            e1 = time.perf_counter()
            rows[g].append(row)
            event = task_end(m.strategy, m.stream, position, cfg, row, curves[g],
                             {**measured, **(diagnostics or {})},
                             train_seconds=(ta - t0) / size + spent[g], eval_seconds=e1 - e0,
                             after_task_seconds=spent[g], device=device, capped=capped[g])
            ends[g].append(event)
            for cb in m.callbacks:
                cb.on_task_end(event)
        if checkpoint is not None:
            for g in range(size):
                checkpoint(g, Progress(rows[g][0], tuple(ends[g]), step,
                                       trains.optimizer_state()))
    results = []
    for m, r, e in zip(members, rows, ends, strict=True):
        matrix = tuple(r)
        for cb in m.callbacks:
            cb.on_run_end(RunEnd(matrix))
        results.append(RunResult(
            strategy=m.strategy.name, stream=m.stream.name, seed=m.seed, matrix=matrix,
            costs=tuple(x.costs for x in e), curves=tuple(p for x in e for p in x.curve),
            diagnostics=tuple(x.diagnostics for x in e),
            warnings=tuple(x.warnings for x in e), tasks=tuple(t.key for t in m.stream.tasks)))
    return results
