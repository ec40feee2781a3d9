"""Execution: one run, from its `RunSpec` to its `RunResult`, in whatever process runs it.

Owns `RunJob` (everything a run needs, as plain values, so it can be sent to another process
or machine), `run_job` (build the stream, model, strategy and the experiment's observers; resume
from a checkpoint; train; checkpoint after each task) and `JobResult`. A run's outcome is only
what it returns (its result, with what its `Recorder`s kept) and what the store holds. Does not
own choosing where runs execute (`lifelong.run.executors`) or the driver's bookkeeping
(`lifelong.run.runner`).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lifelong import config as cfgmod
from lifelong.callbacks import Callback, ProgressBar, Recorder, RunStart, TaskEnd
from lifelong.data.builders import MEASURED_ORDERS, build_stream
from lifelong.data.task import Stream
from lifelong.errors import DivergenceError
from lifelong.run.checkpoint import (
    Checkpoint,
    CheckpointFolder,
    Checkpoints,
    checkpoint_path,
    from_bytes,
    to_bytes,
)
from lifelong.run.planning import RunSpec
from lifelong.store.writes import NewRun
from lifelong.strategies import strategy_for
from lifelong.train import Member, Progress, RunResult, TrainConfig, fit_stream

if TYPE_CHECKING:
    from lifelong.store import Store


@dataclass(frozen=True, slots=True)
class RunJob:
    """One run to execute.

    Attributes:
        spec: what to run.
        experiment: the experiment's registered name (its observers are built where the run
            executes).
        meta: versions and git commit of the driver, recorded with the run.
        checkpoints: the driver's folder for checkpoints (None: write none). A run in this
            process writes there; a worker sends its checkpoints to the driver, which writes
            them there (`lifelong.run.executors`).
        resume: continue from the run's checkpoint where one exists.
        resume_from: the bytes of that checkpoint, sent with the job by the driver when the
            run executes elsewhere, so it resumes on any node (a worker reads no checkpoint
            from its own disk).
        imports: the user's ``--import`` modules, imported again by a worker process.
        loggers: ``(kind, where)`` of the tracking integrations to log the run to
            (`lifelong.run.integrations.build_loggers`: MLflow, TensorBoard).
    """

    spec: RunSpec
    experiment: str
    meta: dict[str, Any]
    checkpoints: str | None = None
    resume: bool = False
    resume_from: bytes | None = None
    imports: tuple[str, ...] = ()
    loggers: tuple[tuple[str, str | None], ...] = ()

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def new_run(self, stream: str, task_keys: Sequence[str], *, num_tasks: int | None = None,
                group_size: int | None = None) -> NewRun:
        """The run as the store keeps it when it begins (`Store.begin`), on the stream named
        `stream` with these task keys (`num_tasks`: their number unless given); a member of a
        vectorised group of `group_size` records it with its versions."""
        versions = dict(self.meta["versions"])
        if group_size is not None:
            versions["group_size"] = str(group_size)
        return NewRun(self.run_id, self.experiment, self.spec.strategy, stream, self.spec.seed,
                      self.spec.config, len(task_keys) if num_tasks is None else num_tasks,
                      tuple(task_keys), versions, self.meta["git_commit"],
                      self.spec.label or self.spec.strategy)


@dataclass(frozen=True, slots=True)
class JobResult:
    """What came back from one run: its result, or why there is none.

    `status` is ``"diverged"`` for a `DivergenceError` (the message in `error`) and
    ``"failed"`` for any other error in a worker (type, message and the traceback's last
    line). `resumed_tasks` counts the tasks taken from a checkpoint; `recorded` says whether
    the run wrote its rows to the store itself (in-process) or the driver must."""

    run_id: str
    status: Literal["completed", "diverged", "failed"]
    result: RunResult | None = None
    error: str | None = None
    resumed_tasks: int = 0
    recorded: bool = False
    num_tasks: int = 0
    task_keys: tuple[str, ...] = ()


class StoreRecorder(Callback):
    """Feeds the store a run's events as they happen (`Store.record`): row 0 (and a resumed
    run's finished rows) at its start, each task's row as it ends."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def on_run_start(self, event: RunStart) -> None:
        self.store.record(self.run_id, event)

    def on_task_end(self, event: TaskEnd) -> None:
        self.store.record(self.run_id, event)


def stream_key(spec: RunSpec) -> str:
    """Runs with equal keys train on the same stream (built once in one process)."""
    measured = spec.config["stream"].get("order") in MEASURED_ORDERS
    return cfgmod.canonical([spec.config["stream"], spec.seed] + (
        [spec.config["model"], spec.config["strategy"], spec.config["train"]]
        if measured else []))


def stream_for(spec: RunSpec) -> Stream:
    """The run's stream, in its `order`. An order a chooser picks by measuring the tasks
    (`easy-to-hard`, `greedy-affinity`) is measured here, with the run's own model, strategy,
    training and seed (`lifelong.curriculum.measured_affinity`, its default budget), so the
    run is reproducible from its config alone."""
    s = dict(spec.config["stream"])
    name, order = s.pop("name"), s.pop("order", None)
    if order not in MEASURED_ORDERS:
        return build_stream(name, seed=spec.seed, order=order, **s)
    from lifelong.curriculum import choose, measured_affinity

    stream, affinity = measured_affinity(spec.config, spec.strategy, spec.seed)
    return stream.reorder(choose(order, stream, affinity=affinity, seed=spec.seed).order)


class Outbox:
    """A worker's checkpoints: each is sent to the driver (`put`, a queue the executor drains
    and writes beside its store; None: dropped). A worker loads none from its own disk: a
    resumed run's checkpoint comes with its job (`RunJob.resume_from`)."""

    def __init__(self, put: Callable[[tuple[str, bytes]], object] | None) -> None:
        self.put = put

    def save(self, run_id: str, data: bytes) -> None:
        if self.put is not None:
            self.put((run_id, data))

    def load(self, run_id: str) -> bytes | None:
        return None


def checkpoints_of(job: RunJob, given: Checkpoints | None) -> Checkpoints | None:
    """Where `job`'s checkpoints go: None where it keeps none, else `given` (a worker's
    `Outbox`) or, in the driver's process, its folder."""
    if not job.checkpoints:
        return None
    return given if given is not None else CheckpointFolder(job.checkpoints)


def resume_point(job: RunJob, checkpoints: Checkpoints | None) -> Checkpoint | None:
    """The checkpoint `job` continues from: the one sent with it, or with `job.resume` the
    one `checkpoints` holds; None to train from its first task."""
    data = job.resume_from
    if data is None and job.resume and checkpoints is not None:
        data = checkpoints.load(job.run_id)
    if data is None:
        return None
    where = checkpoint_path(job.checkpoints or ".", job.run_id)
    return from_bytes(data, job.run_id, where=str(where))


class Prepared:
    """One run built where it executes, as `run_job` and each member of a group
    (`lifelong.run.groups.run_group`) need it: its strategy and the experiment's observers,
    restored from its checkpoint where it continues from one, and where its checkpoints go.
    `member` opens it (loggers, the store's record); `save`, `failed` and `completed` are
    its checkpoint, its end on an error, and its result."""

    def __init__(self, job: RunJob, stream: Stream,
                 checkpoints: Checkpoints | None = None) -> None:
        from lifelong.experiments import get_experiment

        spec = job.spec
        self.job, self.stream = job, stream
        self.strategy = strategy_for(spec.config, spec.strategy, stream, spec.seed)
        self.observers = get_experiment(job.experiment).callbacks(spec.run_id, self.strategy)
        self.recorders = [cb for cb in self.observers if isinstance(cb, Recorder)]
        self.sink = checkpoints_of(job, checkpoints)
        self.ckpt = resume_point(job, self.sink)
        if self.ckpt is not None:
            self.strategy.load_state_dict(self.ckpt.strategy)
            for rec in self.recorders:
                if rec.key in self.ckpt.artifacts:
                    rec.restore(self.ckpt.artifacts[rec.key])
        self.tracked: list[Callback] = []

    def member(self, *, store: Store | None, bar: Callback | None,
               callbacks: Sequence[Callback] = (), group_size: int | None = None) -> Member:
        """The run as a `Member` of `fit_members`: its loggers built, its start recorded in
        `store` (as a member of a group of `group_size`), its callbacks in order (`bar`, the
        store's recorder, `callbacks`, loggers, observers)."""
        job, spec = self.job, self.job.spec
        if job.loggers:
            from lifelong.run.integrations import build_loggers

            self.tracked = build_loggers(
                job.loggers, run_id=spec.run_id, experiment=job.experiment,
                run_name=f"{spec.label or spec.strategy} seed {spec.seed}", config=spec.config)
        hooks: list[Callback] = [*callbacks, *self.tracked, *self.observers]
        if store is not None:
            store.begin(job.new_run(self.stream.name, [t.key for t in self.stream.tasks],
                                    group_size=group_size))
            hooks.insert(0, StoreRecorder(store, spec.run_id))
        return Member(self.strategy, self.stream, spec.seed, [*([bar] if bar else []), *hooks],
                      self.ckpt.progress if self.ckpt is not None else None)

    def save(self, progress: Progress) -> None:
        if self.sink is not None:
            self.sink.save(self.job.run_id, to_bytes(Checkpoint(
                self.job.run_id, progress, self.strategy.state_dict(),
                {r.key: r.artifact() for r in self.recorders})))

    def failed(self, store: Store | None, error: BaseException | None) -> None:
        """End the run's loggers (an integration's run ends as failed, not left open) and,
        with `error`, fail it in `store`."""
        for logger in self.tracked:
            getattr(logger, "close", lambda: None)()
        if store is not None and error is not None:
            store.fail_run(self.job.run_id, error=f"{type(error).__name__}: {error}")

    def completed(self, result: RunResult, store: Store | None) -> JobResult:
        result = dataclasses.replace(result, artifacts={r.key: r.artifact()
                                                        for r in self.recorders})
        return JobResult(self.job.run_id, "completed", result,
                         resumed_tasks=self.ckpt.tasks_done if self.ckpt is not None else 0,
                         recorded=store is not None, num_tasks=len(self.stream),
                         task_keys=result.tasks)


def run_job(job: RunJob, *, stream: Stream | None = None, store: Store | None = None,
            progress: bool | None = False, callbacks: Sequence[Callback] = (),
            checkpoints: Checkpoints | None = None) -> JobResult:
    """Execute `job` here and return its result.

    With `store`, the run's rows are recorded as each task ends (the run is left 'running':
    the driver marks it completed once its files are written). With `job.checkpoints`, a
    checkpoint is saved after each task (to `checkpoints`, by default the driver's folder)
    and, with `job.resume`, a run's checkpoint is continued from. A `DivergenceError` becomes
    a ``"diverged"`` result (and a failed run in `store`); any other error propagates.
    """
    spec = job.spec
    run = Prepared(job, stream if stream is not None else stream_for(spec), checkpoints)
    bar = ProgressBar(desc=f"{spec.label or spec.strategy} seed {spec.seed}",
                      disable=None if progress is None else not progress)
    member = run.member(store=store, bar=bar, callbacks=callbacks)
    try:
        result = fit_stream(member.strategy, member.stream, TrainConfig(**spec.config["train"]),
                            seed=spec.seed, callbacks=member.callbacks, resume=member.resume,
                            checkpoint=run.save if run.sink is not None else None)
    except BaseException as e:
        run.failed(store, e)
        if not isinstance(e, DivergenceError):
            raise
        return JobResult(spec.run_id, "diverged", error=str(e), recorded=store is not None,
                         num_tasks=len(run.stream), task_keys=tuple(t.key for t in
                                                                    run.stream.tasks))
    return run.completed(result, store)


def run_job_in_worker(job: RunJob, outbox: Outbox | None = None) -> JobResult:
    """`run_job` in a worker process or on a Ray node: no store, no progress bar, checkpoints
    sent to the driver through `outbox`, and any error comes back as a ``"failed"`` result
    instead of ending the worker (a sweep goes on)."""
    try:
        if job.imports:
            from lifelong.extensions import import_extensions

            import_extensions(job.imports)
        return run_job(job, progress=False, checkpoints=outbox or Outbox(None))
    except Exception as e:  # noqa: BLE001 - every error is the run's, reported to the driver
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
        return JobResult(job.run_id, "failed", error=f"{type(e).__name__}: {e}{at}")


def record_result(store: Store, job: RunJob, res: JobResult) -> None:
    """Record in `store` a run that executed elsewhere (the driver is the only writer): its
    rows, or its failure with the error, in one transaction. Completing it is the caller's
    (`finish_run`), after its files are written."""
    with store.transaction():
        _record(store, job, res)


def _record(store: Store, job: RunJob, res: JobResult) -> None:
    spec = job.spec
    result = res.result
    store.begin(job.new_run(result.stream if result else str(spec.config["stream"]["name"]),
                            res.task_keys, num_tasks=max(res.num_tasks, 1)))
    if result is None:
        store.fail_run(spec.run_id, error=res.error or res.status)
        return
    rows = result.matrix
    ends = [TaskEnd(i, key, rows[i + 1], result.costs[i],
                    tuple(p for p in result.curves if p.task_index == i),
                    diagnostics=result.diagnostics[i], warnings=result.warnings[i])
            for i, key in enumerate(result.tasks)]
    store.record(spec.run_id, RunStart(result.strategy, result.stream, result.tasks, 1,
                                       result.seed, rows[0], completed=tuple(ends)))
