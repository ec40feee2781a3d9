"""The training loop: tasks × epochs × batches.

Owns `TrainConfig`, `TaskLoop`, `fit_stream` and `RunResult`. Only this module does batching,
creates optimizers, checks for divergence, times and evaluates; after each task it reads the
strategy's `TaskReport` and warns when the task was learned no better than chance. Data
stays as in-memory tensors sliced by index with a generator seeded from (seed, task key,
epoch): no DataLoader, no global RNG. Same seed ⇒ bit-identical matrix on the CPU.
"""

from __future__ import annotations

import math
import resource
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from lifelong.callbacks import (
    Callback,
    Costs,
    CurvePoint,
    EpochEnd,
    RunEnd,
    RunStart,
    StepEnd,
    TaskEnd,
)
from lifelong.chance import chance_warning
from lifelong.data.task import Stream, Task, TensorData
from lifelong.errors import ConfigError, DivergenceError
from lifelong.evaluate import accuracies, accuracy
from lifelong.metrics import summary
from lifelong.models.heads import grow_model
from lifelong.optim import LoopStep
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


class TaskLoop:
    """The epoch loop for one task, handed to `Strategy.train_task`."""

    def __init__(self, strategy: Strategy, stream: Stream, task: Task, cfg: TrainConfig,
                 optimizer: torch.optim.Optimizer, seed: int, callbacks: Sequence[Callback],
                 step0: int) -> None:
        self.strategy, self.stream, self.task, self.cfg = strategy, stream, task, cfg
        self.optimizer, self.seed, self.callbacks = optimizer, seed, callbacks
        self.step_fn = LoopStep(strategy, optimizer)  # what `train_batch` hands its loss to
        self.step = step0  # global step counter, owned here and passed to events
        self.curve: list[CurvePoint] = []
        self.step_callbacks = [cb for cb in callbacks
                               if type(cb).on_step_end is not Callback.on_step_end]

    def run_epochs(self, data: TensorData, epochs: int | None = None) -> None:
        """Train `epochs` (default `cfg.epochs`, or `cfg.steps_per_task` steps where that
        is set: `TrainConfig.passes`) passes over `data`. If the strategy's
        trainable parameters changed since the optimizer was built (a model that grew during
        the task, e.g. Net2Net), a fresh optimizer over the new set is built first."""
        self.refresh_optimizer()
        device = self.strategy.device
        data = data.to(device)
        n, bs = len(data), self.cfg.batch_size
        if n == 0:
            raise ConfigError(f"task {self.task.key} has no training examples")
        passes = ([math.ceil(n / bs)] * epochs if epochs is not None
                  else self.cfg.passes(n))
        model = self.strategy.model
        model.train()
        for epoch, steps in enumerate(passes):
            if self.cfg.lr_decay_every is not None:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.cfg.lr_at(epoch)
            order = torch.randperm(n, generator=generator(self.seed, "batches", self.task.key,
                                                          epoch)).to(device)
            step_losses = []
            for i in range(steps):
                idx = order[i * bs:(i + 1) * bs]
                batch = data.batch(idx)
                step_losses.append(self.strategy.train_batch(batch, self.step_fn))
                self.step += 1
                if self.step_callbacks:
                    step_event = StepEnd(self.task.index, self.step)
                    for cb in self.step_callbacks:
                        cb.on_step_end(step_event)
                if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                    self._curve_point()
            losses = torch.stack(step_losses)
            total = float(losses.sum())  # one host sync per epoch
            if not math.isfinite(total):
                bad = int((~torch.isfinite(losses)).nonzero()[0, 0]) + 1
                raise DivergenceError(
                    f"{self.strategy.name}: loss became {float(losses[bad - 1])} at task "
                    f"{self.task.index + 1}/{len(self.stream)} ({self.task.key}), epoch "
                    f"{epoch + 1}, step {bad} (lr={self.cfg.lr}); lower train.lr or the "
                    "strategy's strength" + (f", {hint}" if (hint := self.strategy
                                                           .divergence_hint()) else ""))
            event = EpochEnd(self.task.index, epoch, steps, total / steps)
            for cb in self.callbacks:
                cb.on_epoch_end(event)

    def refresh_optimizer(self) -> bool:
        """Rebuild the optimizer if the set of trainable parameters is not the one it holds
        (returns whether it did). Its state (momentum) restarts, as at a new task, except with
        `keep_optimizer`, where the parameters that stay keep theirs."""
        held = [id(p) for group in self.optimizer.param_groups for p in group["params"]]
        if held == [id(p) for p in self.strategy.trainable_parameters()]:
            return False
        self.optimizer = make_optimizer(self.strategy, self.cfg,
                                        self.optimizer if self.cfg.keep_optimizer else None)
        capped, self.step_fn = self.step_fn.capped, LoopStep(self.strategy, self.optimizer)
        self.step_fn.capped = capped
        return True

    def _curve_point(self) -> None:
        point = CurvePoint(self.task.index, self.step, tuple(accuracies(
            self.strategy, self.stream, batch_size=self.cfg.eval_batch_size)))
        self.curve.append(point)  # (`accuracies` restores the training mode itself)
        for cb in self.callbacks:
            cb.on_curve_point(point)


def passes_per_task(cfg: TrainConfig, stream: Stream) -> int:
    """The passes over each task `RunStart` announces (a progress bar's ticks): `cfg.epochs`,
    or with `cfg.steps_per_task` those the first task's data takes (others may differ by
    one or two where tasks differ in size)."""
    if cfg.steps_per_task is None or not stream.tasks:
        return cfg.epochs
    return len(cfg.passes(len(stream.tasks[0].train)))


def make_optimizer(strategy: Strategy, cfg: TrainConfig,
                   carry: torch.optim.Optimizer | None = None) -> torch.optim.Optimizer:
    """The optimizer over the strategy's trainable parameters, taking over the state
    `carry` holds for any of them (`keep_optimizer` across a change of parameters); with
    `cfg.grad_clip`, it clips their gradient norm before each step (after the strategy's
    `after_backward`, so a projected gradient is clipped as it will be applied)."""
    params = list(strategy.trainable_parameters())
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    if carry is not None:
        for p in params:
            if p in carry.state:
                optimizer.state[p] = carry.state[p]
    if cfg.grad_clip is not None:
        limit = float(cfg.grad_clip)

        def clip(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            torch.nn.utils.clip_grad_norm_(params, limit)

        optimizer.register_step_pre_hook(clip)
    return optimizer


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


def fit_stream(
    strategy: Strategy,
    stream: Stream,
    train: TrainConfig | None = None,
    *,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    resume: Progress | None = None,
    checkpoint: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Train `strategy` on each task of `stream` in order and measure the accuracy matrix.

    Row 0 of R is the untrained model; row i+1 is measured after task i. Each task gets a
    fresh optimizer over `strategy.trainable_parameters()` (one kept across tasks with
    `train.keep_optimizer`). A model with a `GrowingHead` grows
    to the task's classes first; in row 0 it has no unit yet, so every logit ties and it
    predicts class 0.

    Args:
        resume: continue a run from its `Progress` (its first tasks are not trained again);
            the strategy must hold the state it had then (`Strategy.load_state_dict`). On the
            CPU the result equals the uninterrupted run's bit for bit: every draw derives from
            (seed, task key), and the optimizer is fresh per task or restored from
            `Progress.optimizer`. Callbacks get the finished
            tasks in `RunStart.completed`.
        checkpoint: called after each task with the run's `Progress` (after the callbacks,
            outside the timings), e.g. to save it with the strategy's state.

    Raises:
        ConfigError: bad training options, the strategy does not support the scenario, or
            `resume` is from another stream or order.
        DivergenceError: the loss became NaN or infinite.
    """
    cfg = train or TrainConfig()
    problems = cfg.problems()
    if stream.scenario not in strategy.card.scenarios:
        ok = ", ".join(sorted(strategy.card.scenarios))
        problems.append(f"strategy '{strategy.name}' does not support the {stream.scenario}-"
                        f"incremental scenario (it supports: {ok})")
    done = resume.ends if resume is not None else ()
    keys = tuple(t.key for t in stream.tasks)
    if tuple(e.task_key for e in done) != keys[:len(done)] or (
            resume is not None and len(resume.row0) != len(stream)):
        problems.append(f"the run to resume finished tasks {[e.task_key for e in done]}, which "
                        f"do not begin this stream ({list(keys)}); resume it with its own "
                        "config, or train it again")
    if problems:
        raise ConfigError(problems)
    warn_caveat(strategy, stream)
    device = resolve_device(cfg.device)
    strategy.to(device)
    strategy.attach(seed=seed)

    row0 = resume.row0 if resume is not None else tuple(
        accuracies(strategy, stream, batch_size=cfg.eval_batch_size))
    start = RunStart(strategy.name, stream.name, keys, passes_per_task(cfg, stream), seed,
                     row0, stream, completed=done)
    for cb in callbacks:
        cb.on_run_start(start)
    rows = [row0, *(e.accuracies for e in done)]
    ends: list[TaskEnd] = list(done)
    step = resume.step if resume is not None else 0
    kept: torch.optim.Optimizer | None = None  # with cfg.keep_optimizer, across tasks
    if cfg.keep_optimizer and resume is not None and resume.optimizer is not None:
        kept = make_optimizer(strategy, cfg)
        kept.load_state_dict(resume.optimizer)
    for position in range(len(done), len(stream)):  # a part of a stream keeps its indices
        task = stream.tasks[position]
        if device.type == "cuda":  # the peak of this task alone
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        # A growing head (an opt-in model option) gains units for the task's new classes
        # before `before_task`, so the strategy sees the grown model and the fresh optimizer
        # below includes the new units. Class-IL labels are the global ids in `task.classes`;
        # elsewhere they are task-local positions.
        grow_model(strategy.model,
                   task.classes if stream.scenario == "class" else range(len(task.classes)),
                   generator=generator(seed, "grow", task.key))
        strategy.before_task(task)
        optimizer = make_optimizer(strategy, cfg, kept)
        loop = TaskLoop(strategy, stream, task, cfg, optimizer, seed, callbacks, step)
        strategy.train_task(task, loop)
        if cfg.keep_optimizer:
            kept = loop.optimizer
        ta = time.perf_counter()
        strategy.after_task(task)
        step = loop.step
        t1 = time.perf_counter()
        row = tuple(accuracies(strategy, stream, batch_size=cfg.eval_batch_size))
        measured = own_accuracies(strategy, stream, task, cfg)
        t2 = time.perf_counter()
        rows.append(row)
        event = task_end(strategy, stream, position, cfg, row, loop.curve, measured,
                         train_seconds=t1 - t0, eval_seconds=t2 - t1,
                         after_task_seconds=t1 - ta, device=device,
                         capped=loop.step_fn.capped)
        ends.append(event)
        for cb in callbacks:
            cb.on_task_end(event)
        if checkpoint is not None:
            checkpoint(Progress(row0, tuple(ends), step,
                                None if kept is None else kept.state_dict()))
    matrix = tuple(rows)
    for cb in callbacks:
        cb.on_run_end(RunEnd(matrix))
    return RunResult(
        strategy=strategy.name, stream=stream.name, seed=seed, matrix=matrix,
        costs=tuple(e.costs for e in ends), curves=tuple(p for e in ends for p in e.curve),
        diagnostics=tuple(e.diagnostics for e in ends),
        warnings=tuple(e.warnings for e in ends), tasks=keys)
