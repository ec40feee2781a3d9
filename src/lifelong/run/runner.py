"""Running a plan: reuse what the store holds, execute the rest, record, write, report.

Owns the driver's side of running experiments: `execute_runs` (skip runs the store holds
completed by the same code, hand the others to an `Executor`, record their results, write their
files, remove finished checkpoints) and `execute` (then let the experiment report, and keep its
figures in the store). Planning is `lifelong.run.planning`, one run's execution
`lifelong.run.execution`, where runs execute `lifelong.run.executors`, provenance
`lifelong.run.provenance`, run files `lifelong.run.files`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lifelong import config as cfgmod
from lifelong.callbacks import Costs, CurvePoint
from lifelong.errors import ConfigError, DivergenceError, RunBusyError
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Reference
from lifelong.run.execution import JobResult, RunJob, record_result
from lifelong.run.executors import Executor, InProcess
from lifelong.run.files import write_files
from lifelong.run.groups import balance, group_jobs
from lifelong.run.planning import Plan, RunSpec, plan
from lifelong.run.provenance import REUSE_KEYS, installed_versions, run_meta, with_user_code
from lifelong.store import DEFAULT_PATH, Store
from lifelong.train import RunResult

__all__ = ["ExperimentResult", "Plan", "RunSpec", "execute", "execute_runs",
           "installed_versions", "plan"]


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    experiment: str
    outcomes: tuple[Outcome, ...]
    figures: tuple[Path, ...]
    table: str
    references: tuple[tuple[Reference, float | None], ...]
    protocol_note: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A run of a sweep that failed in its worker (a crash, not a divergence)."""

    run_id: str
    label: str
    seed: int
    error: str


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file, before anything is stored."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the run files and figures")


def checkpoint_dir(store: Store) -> Path:
    """Where runs keep their checkpoints: ``checkpoints/<run_id>.pt`` beside the store, so
    ``lifelong resume RUN_ID`` needs only the store. (Run ids hash the whole run config: two
    stores in one folder share a checkpoint only for the same run.)"""
    return store.path.parent / "checkpoints"


def execute_runs(experiment: Experiment, specs: Sequence[RunSpec], *,
                 store: Store, out: Path, executor: Executor | None = None,
                 progress: bool | None = None, rerun: bool = False, resume: bool = False,
                 keep_checkpoints: bool = False, tolerate: bool = False,
                 imports: Sequence[str] = (), loggers: Sequence[tuple[str, str | None]] = (),
                 vectorize: bool = True,
                 on_result: Callable[[str, bool], None] | None = None,
                 ) -> tuple[list[Outcome], list[Failure]]:
    """Execute `specs` (runs of `experiment`) and return their outcomes in `specs` order,
    with the runs that failed in a worker.

    A run already completed in the store by the same code (same `lifelong` version, same
    hash of its source files, same torch, and for a user's strategy, model or stream builder
    the same hash of the file that registered it) is reused, not trained again — unless
    `rerun` or the experiment needs live runs (`Experiment.reuses_runs`). Every run writes a
    checkpoint after each task (`checkpoint_dir`); with `resume`, a run that has one
    continues from it. A finished run's checkpoint is removed unless `keep_checkpoints`.
    `loggers` are ``(kind, where)`` pairs of `lifelong.run.integrations.build_loggers`. With
    `vectorize`, runs that differ only in seed or in numeric strategy options train as one
    vectorised group where the strategy and model allow it (`lifelong.run.groups`); each is
    still its own run, with the R it would have alone.

    A run whose loss becomes NaN stops everything with its `DivergenceError`, unless the
    experiment goes on after divergence (`Experiment.continues_after_divergence`) or
    `tolerate` (a sweep): then it is an outcome with `error` set. A run that crashed in a
    worker is recorded failed; with `tolerate` it is returned as a `Failure`, otherwise it
    stops everything with its error. `on_result(run_id, reused)` is called as each run ends.
    """
    check_out(out)
    meta = run_meta(torch.get_num_threads())
    outcomes: dict[str, Outcome] = {}
    failures: list[Failure] = []
    jobs: dict[str, RunJob] = {}
    for spec in specs:
        if spec.run_id in outcomes or spec.run_id in jobs:
            continue
        own = with_user_code(spec.config, meta)
        old = None if rerun or not experiment.reuses_runs else stored_result(spec, store, own)
        if old is not None:
            outcomes[spec.run_id] = write_files(spec, old, store, out, reused=True)
            if on_result:
                on_result(spec.run_id, True)
            continue
        jobs[spec.run_id] = RunJob(spec, experiment.name, own,
                                   checkpoints=str(checkpoint_dir(store)), resume=resume,
                                   imports=tuple(imports), loggers=tuple(loggers))
    runner = executor if executor is not None else InProcess(store, progress=progress)
    groups = group_jobs(list(jobs.values()), vectorize=vectorize)
    # A pool of several workers gets at least one group each (`parallelism`: 1 in-process).
    groups = balance(groups, getattr(runner, "parallelism", 1))
    for res in runner.map(groups):
        job = jobs[res.run_id]
        if not res.recorded:
            if store.is_completed(res.run_id) and res.result is not None:
                # Another sweep on this store finished the same run meanwhile: keep its rows.
                outcomes[res.run_id] = write_files(job.spec, res.result, store, out)
                if on_result:
                    on_result(res.run_id, False)
                continue
            try:
                record_result(store, job, res)  # the driver alone writes what workers return
            except RunBusyError:
                if res.result is None:
                    continue  # another sweep is running it: its outcome is that sweep's
                # Another sweep is writing the same run: it stores it; we report ours.
                outcomes[res.run_id] = write_files(job.spec, res.result, store, out)
                if on_result:
                    on_result(res.run_id, False)
                continue
        if res.result is not None:
            outcomes[res.run_id] = dataclasses.replace(
                write_files(job.spec, res.result, store, out), resumed_tasks=res.resumed_tasks)
            store.finish_run(res.run_id, metrics=res.result.metrics,
                             artifacts=res.result.artifacts)
            if not keep_checkpoints:
                (checkpoint_dir(store) / f"{res.run_id}.pt").unlink(missing_ok=True)
        elif res.status == "diverged":
            if not (tolerate or experiment.continues_after_divergence):
                raise DivergenceError(res.error or "diverged")
            outcomes[res.run_id] = diverged_outcome(job.spec, res, out)
        else:
            if not tolerate:
                raise ConfigError(f"run {res.run_id} ({job.spec.label or job.spec.strategy}, "
                                  f"seed {job.spec.seed}) failed: {res.error}")
            failures.append(Failure(res.run_id, job.spec.label or job.spec.strategy,
                                    job.spec.seed, res.error or "failed"))
        if on_result:
            on_result(res.run_id, False)
    return [outcomes[s.run_id] for s in specs if s.run_id in outcomes], failures


def execute(p: Plan, *, store_path: str | Path = DEFAULT_PATH,
            out_dir: str | Path = DEFAULT_PATH.parent, progress: bool | None = None,
            rerun: bool = False, resume: bool = False, keep_checkpoints: bool = False,
            executor: Executor | None = None, imports: Sequence[str] = (),
            loggers: Sequence[tuple[str, str | None]] = (), vectorize: bool = True
            ) -> ExperimentResult:
    """Run every `RunSpec` of the plan (`execute_runs`), then report: the experiment's table
    and figures (kept in the store too, for ``lifelong report``) and its published numbers
    beside ours."""
    out = Path(out_dir)
    check_out(out)
    with Store(store_path) as store:
        outcomes, _ = execute_runs(p.experiment, p.runs, store=store, out=out,
                                   executor=executor, progress=progress, rerun=rerun,
                                   resume=resume, keep_checkpoints=keep_checkpoints,
                                   imports=imports, loggers=loggers, vectorize=vectorize)
        group = cfgmod.run_id({"runs": [o.run_id for o in outcomes]}, 0)[:8]
        fig_dir = out / f"{p.experiment.name}-{group}"
        table, figures = p.experiment.report(outcomes, fig_dir, p.options)
        for f in figures:
            store.record_figure(p.experiment.name, f, [o.run_id for o in outcomes])
    for kind, where in loggers:
        if kind == "mlflow" and figures:
            from lifelong.run.integrations import log_figures

            log_figures(where, p.experiment.name, figures, [o.run_id for o in outcomes])
    ours = p.experiment.ours(outcomes)
    refs = tuple((r, ours.get(r.ours) if r.ours else None) for r in p.experiment.references)
    all_figures = [f for o in outcomes for f in sorted(o.run_dir.glob("*.png"))] + figures
    return ExperimentResult(p.experiment.name, tuple(outcomes), tuple(all_figures), table,
                            refs, p.experiment.protocol_note)


def stored_result(spec: RunSpec, store: Store, meta: dict[str, Any]) -> RunResult | None:
    """The result of `spec` as stored, if it completed under the code running now."""
    if not store.is_completed(spec.run_id):
        return None
    rec = store.get_run(spec.run_id)
    if any(rec.versions.get(k) != meta["versions"].get(k) for k in REUSE_KEYS):
        return None  # stored by other code: train again
    return result_of(rec)


def result_of(rec: Any) -> RunResult:
    """A stored run (`lifelong.store.RunRecord`) as the `RunResult` its training returned."""
    tasks = range(len(rec.matrix) - 1)
    points: dict[tuple[int, int], list[float]] = {}
    for c in rec.curves:  # ordered by task, step, then evaluated task
        points.setdefault((c.trained_task, c.step), []).append(c.accuracy)
    return RunResult(
        strategy=rec.strategy, stream=rec.stream, seed=rec.seed,
        matrix=tuple(tuple(row) for row in rec.matrix),
        costs=tuple(Costs.from_dict(rec.costs.get(t, {})) for t in tasks),
        curves=tuple(CurvePoint(t, step, tuple(acc)) for (t, step), acc in points.items()),
        diagnostics=tuple(rec.diagnostics.get(t, {}) for t in tasks),
        warnings=tuple(tuple(w.message for w in rec.warnings if w.task == t) for t in tasks),
        tasks=tuple(rec.task_keys), artifacts=dict(rec.artifacts))


def diverged_outcome(spec: RunSpec, res: JobResult, out: Path) -> Outcome:
    """The outcome of a run whose loss became NaN or infinite, in an experiment that goes on
    after it: no metrics (`result` is empty); the store keeps the rows it finished, marked
    failed with the error."""
    empty = RunResult(strategy=spec.strategy, stream=str(spec.config["stream"]["name"]),
                      seed=spec.seed, matrix=())
    return Outcome(spec.run_id, spec.strategy, spec.label or spec.strategy, spec.seed,
                   spec.config, empty, out / spec.run_id, error=res.error)


def describe_experiments() -> list[tuple[str, str]]:
    return [(n, EXPERIMENTS.get(n).summary) for n in EXPERIMENTS.names()]
