"""Runs executed as vectorised groups: which runs train together, and running a group.

Owns `group_jobs` (runs of one configuration that differ only in seed or in numeric strategy
options, such as ``strategy.strength``, form a group, when the strategy and model allow it) and
`run_group` (build every member, train them with `lifelong.group.fit_group`, record each as an
ordinary run, marked with its group's size). A group larger than memory allows is split; a group
in which a member diverges, or that cannot train together after all, is trained one run at a
time (`lifelong.run.execution.run_job`), so every run ends as it would alone. Does not own the
group loop (`lifelong.group`) or where groups execute (`lifelong.run.executors`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from lifelong import config as cfgmod
from lifelong.callbacks import ProgressBar
from lifelong.errors import ConfigError, DivergenceError
from lifelong.group import fit_group, groupable
from lifelong.run.checkpoint import Checkpoints, checkpoint_path, load_checkpoint
from lifelong.run.execution import JobResult, Outbox, Prepared, RunJob, run_job, stream_for
from lifelong.strategies import STRATEGIES
from lifelong.train import TrainConfig

if TYPE_CHECKING:
    from lifelong.data.task import Stream
    from lifelong.store import Store
    from lifelong.strategies.base import Strategy

Group = tuple[RunJob, ...]
MEMORY_SHARE = 0.5  # of the memory available when a group starts, for its members


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def group_key(job: RunJob) -> str | None:
    """Runs with equal keys may train as one group; None for a run that trains alone."""
    cfg = job.spec.config
    model = cfg["model"]
    if (groupable(STRATEGIES.get(job.spec.strategy)) or model.get("name") != "mlp"
            or model.get("dropout") or model.get("growing")
            or cfg["train"].get("keep_optimizer")):
        return None  # (a kept optimizer's state would have to be cut per member to resume)
    strategy = {k: ("<numeric>" if _numeric(v) else v) for k, v in cfg["strategy"].items()}
    key: list[Any] = [job.experiment, {**cfg, "strategy": strategy}, job.loggers]
    if job.resume and job.checkpoints and (path := checkpoint_path(
            job.checkpoints, job.run_id)).exists():
        try:  # runs with checkpoints at one point (tasks done, steps) continue as a group
            ckpt = load_checkpoint(path, job.run_id)
        except Exception:  # noqa: BLE001 - the run alone reports what is wrong with it
            return None
        if ckpt is not None:
            key.append(["resume", ckpt.tasks_done, ckpt.progress.step])
    return cfgmod.canonical(key)


def group_jobs(jobs: Sequence[RunJob], *, vectorize: bool = True) -> list[Group]:
    """`jobs` as groups, in the order of their first run; each run is in exactly one."""
    groups: dict[str, list[RunJob]] = {}
    alone: list[Group] = []
    order: list[str | Group] = []
    for job in jobs:
        key = group_key(job) if vectorize else None
        if key is None:
            alone.append((job,))
            order.append(alone[-1])
        elif key in groups:
            groups[key].append(job)
        else:
            groups[key] = [job]
            order.append(key)
    return [tuple(groups[o]) if isinstance(o, str) else o for o in order]


def balance(groups: Sequence[Group], workers: int) -> list[Group]:
    """Split the largest groups in two until there are at least `workers` of them (or every
    group is one run), so a pool of workers is not left idle by one big group."""
    out = list(groups)
    while len(out) < workers:
        big = max(range(len(out)), key=lambda i: len(out[i]), default=None)
        if big is None or len(out[big]) < 2:
            break
        group = out.pop(big)
        half = (len(group) + 1) // 2
        out[big:big] = [group[:half], group[half:]]
    return out


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable on Linux, else a conservative 4 GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def member_bytes(stream: Stream, strategy: Strategy) -> int:
    """What one member is estimated to hold: its stream's tensors, and its model and learned
    state several times over (gradients, optimizer state, an anchor per task)."""
    return _stream_bytes(stream) + strategy.memory_bytes() * (len(stream) + 4)


def _stream_bytes(stream: Stream) -> int:
    total = 0
    for task in stream.tasks:
        for data in (task.train, task.test):
            for part in (data.x,) if isinstance(data.x, Tensor) else data.x:
                total += part.numel() * part.element_size()
    return total


def run_group(jobs: Group, *, store: Store | None = None, progress: bool | None = False,
              budget: int | None = None, checkpoints: Checkpoints | None = None
              ) -> list[JobResult]:
    """Execute the runs of `jobs` as one vectorised group (one run alone as `run_job`).

    Each member is built, recorded and checkpointed as `run_job` does it (`Prepared`): with
    `store`, its rows are recorded as tasks end, and its checkpoints go to `checkpoints` (by
    default the driver's folder); members that continue from checkpoints (`group_key` groups
    them by their point) resume inside the group. Returns one `JobResult` per job, in order.
    """
    if len(jobs) == 1:
        return [run_job(jobs[0], store=store, progress=progress, checkpoints=checkpoints)]
    built: dict[str, Stream] = {}
    runs: list[Prepared] = []
    for job in jobs:
        key = cfgmod.canonical([job.spec.config["stream"], job.spec.seed])
        stream = built.get(key) or built.setdefault(key, stream_for(job.spec))
        runs.append(Prepared(job, stream, checkpoints))
        if len(runs) == 1:  # split a group that would not fit, before building the rest
            each = member_bytes(stream, runs[0].strategy)
            fits = max(1, int((budget or MEMORY_SHARE * available_memory()) // max(each, 1)))
            if fits < len(jobs):
                return [r for k in range(0, len(jobs), fits)
                        for r in run_group(jobs[k:k + fits], store=store, progress=progress,
                                           budget=budget, checkpoints=checkpoints)]
    size = len(jobs)
    labels = sorted({j.spec.label or j.spec.strategy for j in jobs})
    seeds = ",".join(str(j.spec.seed) for j in jobs)
    bar = ProgressBar(desc=f"{' / '.join(labels)} seeds {seeds} (a group of {size})",
                      disable=None if progress is None else not progress)
    members = [run.member(store=store, bar=bar if g == 0 else None, group_size=size)
               for g, run in enumerate(runs)]
    try:
        results = fit_group(members, TrainConfig(**jobs[0].spec.config["train"]),
                            checkpoint=lambda g, progress: runs[g].save(progress))
    except (DivergenceError, ConfigError):
        # A member diverged, or the members cannot train together after all: every run
        # again on its own, so each ends (completed or diverged) as it would alone.
        for run in runs:
            run.failed(None, None)
        return [run_job(dataclasses.replace(job, resume=False, resume_from=None), store=store,
                        progress=progress, checkpoints=checkpoints) for job in jobs]
    except BaseException as e:
        for run in runs:
            run.failed(store, e)
        raise
    return [run.completed(r, store) for run, r in zip(runs, results, strict=True)]


def run_group_in_worker(jobs: Group, outbox: Any = None) -> list[JobResult]:
    """`run_group` in a worker process or on a Ray node (no store, no progress bar); each
    checkpoint is put on the queue `outbox` (None: dropped) for the driver to write. Any error
    comes back as ``"failed"`` results, as `run_job_in_worker` does for one run."""
    from lifelong.run.execution import run_job_in_worker

    sink = Outbox(outbox.put if outbox is not None else None)
    if len(jobs) == 1:
        return [run_job_in_worker(jobs[0], sink)]
    try:
        if jobs[0].imports:
            from lifelong.extensions import import_extensions

            import_extensions(jobs[0].imports)
        return run_group(jobs, checkpoints=sink)
    except Exception:  # noqa: BLE001 - retried one by one, so each failure is its own
        return [run_job_in_worker(job, sink) for job in jobs]
