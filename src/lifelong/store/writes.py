"""Writing the results store: the events it is fed, each in one transaction.

Owns `NewRun` (what the store keeps about a run as it begins) and `Writes`, the writing half of
`Store`: `begin(run)`, `record(run_id, event)` (row 0 at the run's `RunStart`, each task's row
at its `TaskEnd`), `record_row` (the checked write under `record`), `finish_run`, `fail_run` and
`record_figure`. A killed process leaves whole matrix rows or none. Does not own the connection,
opening or transactions (`lifelong.store.sqlite`) or reading (`lifelong.store.records`).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong.callbacks import RunStart, TaskEnd
from lifelong.errors import ConfigError, RunBusyError, StateError
from lifelong.run.provenance import installed_versions
from lifelong.store.records import ROWS_SQL
from lifelong.store.schema import RUN_TABLES


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run as the store keeps it when it begins.

    Attributes:
        run_id: the run's id (a hash of its config and seed).
        experiment: the registered experiment that ran it.
        strategy: the strategy's registry name.
        stream: the stream's name.
        seed: the run's seed.
        config: the run's canonical config (stored as canonical JSON).
        num_tasks: how many tasks the stream has (rows of R: ``num_tasks + 1``).
        task_keys: the stream's task keys in training order (the run's `order`).
        versions: python/torch/lifelong versions; read from the environment when None.
        git_commit: the commit the code ran from, if known.
        label: how tables name the run (default: the strategy).
    """

    run_id: str
    experiment: str
    strategy: str
    stream: str
    seed: int
    config: dict[str, Any]
    num_tasks: int
    task_keys: tuple[str, ...] = ()
    versions: dict[str, str] | None = None
    git_commit: str | None = None
    label: str | None = None


class Writes:
    """Every write of the store; `Store` (`lifelong.store.sqlite`) gives the connection."""

    path: Path

    if TYPE_CHECKING:
        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def begin(self, run: NewRun) -> None:
        """Record `run` as 'running' with this process's pid; an old run of its id is replaced
        (its rows too). Versions are read from the environment where `run.versions` is None.

        Raises:
            RunBusyError: a live process on this host is writing the same run.
        """
        run_id, num_tasks = run.run_id, run.num_tasks
        if not run_id or num_tasks < 1:
            raise StateError(f"run {run_id!r}: needs a non-empty id and num_tasks >= 1, "
                             f"got num_tasks={num_tasks}")
        config_json = _json(run.config, f"run {run_id!r}: config")
        versions = installed_versions() if run.versions is None else run.versions
        versions_json = _json(versions, "versions")
        host, pid = socket.gethostname(), os.getpid()
        with self._tx() as con:
            old = con.execute("SELECT status, pid, host FROM runs WHERE run_id = ?",
                              (run_id,)).fetchone()
            if (old and old[0] == "running" and old[2] == host and old[1] != pid
                    and process_alive(old[1])):
                raise RunBusyError(f"run {run_id!r} is being written by process {old[1]} on "
                                   f"{host} ({self.path}); wait for it or stop that process")
            for table in RUN_TABLES:
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            con.execute(
                "INSERT INTO runs (run_id, experiment, strategy, stream, seed, config_json,"
                " versions_json, git_commit, status, pid, host, started_at, num_tasks, label)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (run_id, run.experiment, run.strategy, run.stream, int(run.seed), config_json,
                 versions_json, run.git_commit, pid, host, _now(), int(num_tasks), run.label))
            con.executemany("INSERT INTO task_keys (run_id, position, key) VALUES (?, ?, ?)",
                            [(run_id, i, str(k)) for i, k in enumerate(run.task_keys)])

    def record(self, run_id: str, event: RunStart | TaskEnd) -> None:
        """Record what `event` says about run `run_id`: at its start, row 0 (and the rows of
        the tasks a resumed run had finished); at a task's end, that task's row with its
        costs, curve, diagnostics and warnings (`record_row`)."""
        if isinstance(event, RunStart):
            with self._tx():  # row 0 and a resumed run's rows: all of them or none
                self.record_row(run_id, row=0, accuracies=event.initial_accuracies)
                for done in event.completed:
                    self.record(run_id, done)
            return
        self.record_row(
            run_id, row=event.task_index + 1, accuracies=event.accuracies,
            costs=event.costs.as_dict(), diagnostics=event.diagnostics,
            warnings=event.warnings,
            curve=[(p.step, j, a) for p in event.curve for j, a in enumerate(p.accuracies)])

    def record_row(
        self, run_id: str, *, row: int, accuracies: Sequence[float],
        costs: Mapping[str, float] | None = None,
        curve: Sequence[tuple[int, int, float]] | None = None,
        diagnostics: Mapping[str, float] | None = None, warnings: Sequence[str] = (),
    ) -> None:
        """Record row `row` of the accuracy matrix, with that task's costs, curve points,
        diagnostics and warnings, in one transaction.

        Args:
            run_id: a run begun with `begin` and still running.
            row: 0 for the untrained model, i after training task i; rows come in order.
            accuracies: accuracy on each task, finite and in [0, 1].
            costs: costs of training task ``row - 1`` (train_seconds, eval_seconds,
                peak_memory_bytes, parameters, ...); only for row > 0.
            curve: (step, eval_task, accuracy) points measured while training task ``row - 1``.
            diagnostics: what the strategy reported about task ``row - 1`` (name → number;
                NaN allowed, stored as NULL).
            warnings: messages raised while learning task ``row - 1``.

        Raises:
            StateError: the run is unknown or not running, or a value is out of range, in
                which case nothing is written.
        """
        accs = [float(a) for a in accuracies]
        cost_items = [(str(k), float(v)) for k, v in (costs or {}).items()]
        diag_items = [(str(k), float(v)) for k, v in (diagnostics or {}).items()]
        messages = [str(m) for m in warnings]
        points = sorted({(int(s), int(t)): float(a) for s, t, a in (curve or ())}.items())
        with self._tx() as con:
            num_tasks, recorded = _running(con, self.path, run_id)
            problems = []
            if not 0 <= row <= num_tasks:
                problems.append(f"row must be in 0..{num_tasks} (0 = untrained, i = after task i)")
            elif row != recorded:
                problems.append(f"row {recorded} comes next; rows are recorded in order")
            if len(accs) != num_tasks:
                problems.append(f"{len(accs)} accuracies given for {num_tasks} tasks")
            problems += [f"accuracy on task {j} is {a}, expected a finite value in [0, 1]"
                         for j, a in enumerate(accs) if not 0.0 <= a <= 1.0]
            if row == 0 and (cost_items or points or diag_items or messages):
                problems.append("costs, curves, diagnostics and warnings belong to a trained "
                                "task (row >= 1)")
            problems += [f"cost {k!r} is {v}, expected a finite number"
                         for k, v in cost_items if not math.isfinite(v)]
            problems += [f"diagnostic {k!r} is {v}, expected a finite number or NaN"
                         for k, v in diag_items if math.isinf(v)]
            problems += [f"curve point (step={s}, eval_task={t}, accuracy={a}) needs step >= 0, "
                         f"eval_task in 0..{num_tasks - 1} and accuracy in [0, 1]"
                         for (s, t), a in points
                         if s < 0 or not 0 <= t < num_tasks or not 0.0 <= a <= 1.0]
            if len(points) != len(curve or ()):
                problems.append("a (step, eval_task) pair repeats in the curve")
            if problems:
                raise StateError(f"run {run_id!r}, row {row}: " + "; ".join(problems))
            con.executemany('INSERT INTO cells (run_id, "row", col, accuracy) VALUES (?, ?, ?, ?)',
                            [(run_id, row, j, a) for j, a in enumerate(accs)])
            con.executemany("INSERT INTO costs VALUES (?, ?, ?, ?)",
                            [(run_id, row - 1, k, v) for k, v in cost_items])
            con.executemany("INSERT INTO curves VALUES (?, ?, ?, ?, ?)",
                            [(run_id, row - 1, s, t, a) for (s, t), a in points])
            con.executemany("INSERT INTO diagnostics VALUES (?, ?, ?, ?)",
                            [(run_id, row - 1, k, None if math.isnan(v) else v)
                             for k, v in diag_items])
            con.executemany("INSERT INTO warnings VALUES (?, ?, ?, ?)",
                            [(run_id, row - 1, i, m) for i, m in enumerate(messages)])

    def finish_run(self, run_id: str, *, metrics: Mapping[str, float],
                   artifacts: Mapping[str, Any] | None = None) -> None:
        """Store the summary metrics (NaN = undefined) and what the run's recorders kept
        (`artifacts`: JSON values by name), and mark the run 'completed'."""
        values = {str(k): float(v) for k, v in metrics.items()}
        kept = [(run_id, str(k), _json(v, f"run {run_id!r}: artifact {k!r}"))
                for k, v in (artifacts or {}).items()]
        with self._tx() as con:
            num_tasks, recorded = _running(con, self.path, run_id)
            if recorded != num_tasks + 1:
                raise StateError(f"run {run_id!r}: {recorded} of {num_tasks + 1} matrix rows "
                                 "recorded; record every row before finish_run, or call fail_run")
            if bad := sorted(k for k, v in values.items() if math.isinf(v)):
                raise StateError(f"run {run_id!r}: metrics {bad} are infinite; expected finite "
                                 "numbers, or NaN where a metric is undefined")
            con.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                            [(run_id, k, None if math.isnan(v) else v) for k, v in values.items()])
            con.executemany("INSERT INTO artifacts VALUES (?, ?, ?)", kept)
            con.execute("UPDATE runs SET status = 'completed', finished_at = ?, error = NULL"
                        " WHERE run_id = ?", (_now(), run_id))

    def fail_run(self, run_id: str, *, error: str) -> None:
        """Mark a running run 'failed' with `error`; the rows recorded so far are kept."""
        with self._tx() as con:
            _running(con, self.path, run_id)
            con.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ?"
                        " WHERE run_id = ?", (_now(), error, run_id))

    def record_figure(self, experiment: str, path: Path, run_ids: Sequence[str]) -> None:
        """Keep the PNG at `path`, an `experiment`'s figure of the runs `run_ids`, replacing
        the figure of the same experiment and file name (the report embeds them)."""
        png = path.read_bytes()
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO figures VALUES (?, ?, ?, ?, ?)",
                        (experiment, path.name, json.dumps(list(run_ids)), png, _now()))


def _running(con: sqlite3.Connection, path: Path, run_id: str) -> tuple[int, int]:
    """(num_tasks, rows recorded) of a run that must exist and be running."""
    got = con.execute(f"SELECT status, num_tasks, ({ROWS_SQL}) FROM runs r"
                            " WHERE run_id = ?", (run_id,)).fetchone()
    if got is None:
        raise StateError(f"run {run_id!r} is not in {path}; call begin first")
    if got[0] != "running":
        raise StateError(f"run {run_id!r} is {got[0]}, not running; call begin to "
                         "record it again")
    return int(got[1]), int(got[2])


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a zombie counts until it is reaped)."""
    if sys.platform == "win32":  # os.kill would terminate the process there; assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json(obj: Any, what: str) -> str:
    """Canonical JSON (sorted keys, no spaces), so equal configs are stored identically."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} cannot be stored as JSON ({exc}); use plain numbers, "
                          "strings, lists and dicts") from None
