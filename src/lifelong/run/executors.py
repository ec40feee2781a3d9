"""Where runs execute: in this process, in a pool of local processes, or on Ray.

Owns the `Executor` interface — `map(groups)` yields each run's `JobResult` as it finishes (a
group of several trains as one vectorised model, `lifelong.run.groups`; one task or worker
per group) — and
its three implementations. `InProcess` (what `lifelong run` uses) records rows in the store as
tasks end. `LocalPool` (the default of `lifelong sweep`) and `RayExecutor` (`--executor ray`)
send each run to a worker and return its result to the driver, which alone writes the store.
Checkpoints travel the same way: a worker puts each on a queue the driver drains into the
folder beside its store, and a run resumed elsewhere gets its checkpoint with its job, so a
run resumes on any node. Does not own what a run does (`lifelong.run.execution`) or the store.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol

from lifelong.errors import ConfigError
from lifelong.run.checkpoint import CheckpointFolder
from lifelong.run.execution import JobResult, RunJob, run_job, stream_key
from lifelong.run.groups import Group, run_group, run_group_in_worker

if TYPE_CHECKING:
    from lifelong.data.task import Stream
    from lifelong.store import Store


class Executor(Protocol):
    """Runs groups of jobs (`lifelong.run.groups`: a group of one is a plain run); yields one
    `JobResult` per job, in the order they finish."""

    def map(self, groups: Sequence[Group]) -> Iterator[JobResult]: ...


class InProcess:
    """One run after another in this process, each recording its rows in `store` as its tasks
    end. Consecutive runs on the same stream (same config and seed) share one built stream.
    Errors other than divergence propagate (the run is marked failed first)."""

    def __init__(self, store: Store, *, progress: bool | None = None) -> None:
        self.store, self.progress = store, progress

    def map(self, groups: Sequence[Group]) -> Iterator[JobResult]:
        from lifelong.run.execution import stream_for

        built: tuple[str, Stream] | None = None
        for group in groups:
            if len(group) > 1:
                built = None
                yield from run_group(group, store=self.store, progress=self.progress)
                continue
            (job,) = group
            key = stream_key(job.spec)
            if built is None or built[0] != key:
                built = None  # free the last stream before building the next
                built = (key, stream_for(job.spec))
            yield run_job(job, stream=built[1], store=self.store, progress=self.progress)


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def with_checkpoint(job: RunJob) -> RunJob:
    """`job` with its checkpoint's bytes from the driver's folder, where it resumes from one,
    so the worker that runs it needs no access to the driver's disk."""
    if not (job.resume and job.checkpoints) or job.resume_from is not None:
        return job
    data = CheckpointFolder(job.checkpoints).load(job.run_id)
    return job if data is None else dataclasses.replace(job, resume_from=data)


def wants_checkpoints(groups: Sequence[Group]) -> bool:
    return any(job.checkpoints for group in groups for job in group)


def drain(outbox: Any, groups: Sequence[Group]) -> None:
    """Write every checkpoint waiting on `outbox` (``(run_id, bytes)`` pairs put by workers)
    into its run's folder on the driver. A worker's put returns once the queue holds it, so
    a run's last checkpoint is here before its result."""
    folders = {job.run_id: job.checkpoints for group in groups for job in group}
    while True:
        try:
            run_id, data = outbox.get_nowait()
        except queue.Empty:  # (Ray's queue raises a subclass of it)
            return
        folder = folders.get(run_id)
        if folder:
            CheckpointFolder(folder).save(run_id, data)


def _init_worker(threads: int) -> None:
    import warnings

    import torch

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")  # a worker's warnings are recorded with its run


class LocalPool:
    """A pool of `workers` processes on this machine (spawned, each with one torch thread),
    at most `workers` runs at once."""

    def __init__(self, workers: int | None = None, *, threads: int = 1) -> None:
        self.workers = workers or default_workers()
        self.threads = threads

    @property
    def parallelism(self) -> int:
        return self.workers

    def map(self, groups: Sequence[Group]) -> Iterator[JobResult]:
        if not groups:
            return
        groups = [tuple(with_checkpoint(job) for job in group) for group in groups]
        ctx = multiprocessing.get_context("spawn")  # fork after torch started threads can hang
        # A manager's queue: a put returns once the manager holds it (an mp.Queue's feeder
        # thread could block a worker's exit on a full pipe, and lose the order with results).
        with ExitStack() as stack:
            outbox = (stack.enter_context(ctx.Manager()).Queue()
                      if wants_checkpoints(groups) else None)
            pool = stack.enter_context(ProcessPoolExecutor(
                max_workers=min(self.workers, len(groups)), mp_context=ctx,
                initializer=_init_worker, initargs=(self.threads,)))
            pending: dict[Future[list[JobResult]], Group] = {
                pool.submit(run_group_in_worker, group, outbox): group for group in groups}
            while pending:
                done, _ = wait(pending, timeout=0.5 if outbox is not None else None,
                               return_when=FIRST_COMPLETED)
                if outbox is not None:
                    drain(outbox, groups)
                for future in done:
                    group = pending.pop(future)
                    try:
                        yield from future.result()
                    except Exception as e:  # noqa: BLE001 - a worker process died
                        yield from (JobResult(job.run_id, "failed", error=f"worker process "
                                              f"failed: {type(e).__name__}: {e}")
                                    for job in group)


class RayExecutor:
    """One Ray task per run (one CPU each), at most `max_parallel` in flight. `address`
    joins a running cluster (``ray start --head`` prints it, e.g. ``10.0.0.5:6379``); None
    starts Ray on this machine, and `close` stops it. Every node needs lifelong installed,
    and the user's ``--import`` files at the same paths."""

    def __init__(self, address: str | None = None, max_parallel: int | None = None,
                 *, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray, which is not installed; install it "
                              "with: pip install 'lifelong[ray]' (or use --executor local)"
                              ) from None
        self.ray: Any = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus,
                         include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the cluster at {address}" if address else "a local Ray instance"
                raise ConfigError(f"--executor ray: cannot start or join {where} ({e}); check "
                                  "--address (host:port of `ray start --head`)") from None
        cpus = self.ray.cluster_resources().get("CPU", 1)
        self.max_parallel = max_parallel or max(1, int(cpus))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_group_in_worker)

    @property
    def parallelism(self) -> int:
        return self.max_parallel

    def map(self, groups: Sequence[Group]) -> Iterator[JobResult]:
        ray = self.ray
        groups = [tuple(with_checkpoint(job) for job in group) for group in groups]
        outbox = None
        if wants_checkpoints(groups):
            from ray.util.queue import Queue

            outbox = Queue(actor_options={"num_cpus": 0})  # an actor: reachable from any node
        todo = list(groups)
        pending: dict[Any, Group] = {}
        while todo or pending:
            while todo and len(pending) < self.max_parallel:
                group = todo.pop(0)
                pending[self._remote.remote(group, outbox)] = group
            done, _ = ray.wait(list(pending), num_returns=1,
                               timeout=0.5 if outbox is not None else None)
            if outbox is not None:
                drain(outbox, groups)
            for ref in done:
                group = pending.pop(ref)
                try:
                    yield from ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the node or the worker died
                    yield from (JobResult(job.run_id, "failed", error=f"Ray task failed: "
                                          f"{type(e).__name__}: {e}") for job in group)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
