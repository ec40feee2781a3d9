"""SQLite results store.

Owns the on-disk record of runs: one SQLite file (default ``runs/lifelong.sqlite``) holding each
run's metadata, its accuracy matrix R cell by cell, summary metrics, per-task costs,
diagnostics and warnings, and within-task learning curves; marking runs whose process died as
failed; migrating a store of an older schema version when it opens. Every write is one
transaction, so a killed process leaves whole matrix rows or none. Does not own computing
metrics (`metrics.py`), deriving run ids (`config.py`), training, plots, or the plain-text
tables of ``lifelong runs`` and ``lifelong show`` (`tables.py`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple

from lifelong.errors import ConfigError, StateError
from lifelong.registry import suggest

DEFAULT_PATH = Path("runs/lifelong.sqlite")
SCHEMA_VERSION = 3  # PRAGMA user_version; bump it, with a migration, when the tables change
APPLICATION_ID = 0x4C4C5354  # PRAGMA application_id ("LLST"): tells our files from others
BUSY_TIMEOUT_S = 30.0  # how long parallel sweep workers wait for the write lock
SUMMARY_METRICS = ("acc", "bwt", "fwt", "forgetting")
Status = Literal["running", "completed", "failed"]

_FK = "run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE"
# Version 2: what the strategy and the loop observed per task. value is NULL for NaN (a
# diagnostic the strategy could not compute); seq keeps the warnings in the order raised.
_TABLES_V2 = (
    f"""CREATE TABLE diagnostics ({_FK}, task INTEGER NOT NULL, name TEXT NOT NULL,
        value REAL, PRIMARY KEY (run_id, task, name)) WITHOUT ROWID""",
    f"""CREATE TABLE warnings ({_FK}, task INTEGER NOT NULL, seq INTEGER NOT NULL,
        message TEXT NOT NULL, PRIMARY KEY (run_id, task, seq)) WITHOUT ROWID""",
)
# Version 3: the task keys in training order (a run's `order`; runs stored before have none).
_TABLES_V3 = (
    f"""CREATE TABLE task_keys ({_FK}, position INTEGER NOT NULL, key TEXT NOT NULL,
        PRIMARY KEY (run_id, position)) WITHOUT ROWID""",
)
# Statements that take a store from version N (the key) to N + 1, run in one transaction.
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _TABLES_V2, 2: _TABLES_V3}
_SCHEMA = (
    """CREATE TABLE runs (run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL,
        strategy TEXT NOT NULL, stream TEXT NOT NULL, seed INTEGER NOT NULL,
        config_json TEXT NOT NULL, versions_json TEXT NOT NULL, git_commit TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')), error TEXT,
        pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
        num_tasks INTEGER NOT NULL CHECK (num_tasks > 0))""",
    "CREATE INDEX runs_by_start ON runs (started_at)",
    f"""CREATE TABLE cells ({_FK}, "row" INTEGER NOT NULL, col INTEGER NOT NULL,
        accuracy REAL NOT NULL, PRIMARY KEY (run_id, "row", col)) WITHOUT ROWID""",
    # value is NULL for an undefined metric (NaN in Python).
    f"""CREATE TABLE metrics ({_FK}, name TEXT NOT NULL, value REAL,
        PRIMARY KEY (run_id, name)) WITHOUT ROWID""",
    f"""CREATE TABLE costs ({_FK}, task INTEGER NOT NULL, name TEXT NOT NULL,
        value REAL NOT NULL, PRIMARY KEY (run_id, task, name)) WITHOUT ROWID""",
    f"""CREATE TABLE curves ({_FK}, trained_task INTEGER NOT NULL, step INTEGER NOT NULL,
        eval_task INTEGER NOT NULL, accuracy REAL NOT NULL,
        PRIMARY KEY (run_id, trained_task, step, eval_task)) WITHOUT ROWID""",
    *_TABLES_V2,
    *_TABLES_V3,
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_ROWS_SQL = 'SELECT COUNT(DISTINCT "row") FROM cells c WHERE c.run_id = r.run_id'
_SUMMARY_SQL = (
    "SELECT r.run_id, r.experiment, r.strategy, r.stream, r.seed, r.status, r.started_at,"
    " r.finished_at, " + ", ".join(
        f"(SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = '{name}')"
        for name in SUMMARY_METRICS) + f", r.num_tasks, ({_ROWS_SQL}) FROM runs r"
)


class CurveRow(NamedTuple):
    """Accuracy on `eval_task` after `step` optimiser steps of training on `trained_task`."""

    trained_task: int
    step: int
    eval_task: int
    accuracy: float


@dataclass(frozen=True, slots=True)
class TaskWarning:
    """A warning raised while learning `task` (index from 0), by the strategy or the loop."""

    task: int
    message: str


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of ``lifelong runs``; metrics are None until the run completes, or undefined."""

    run_id: str
    experiment: str
    strategy: str
    stream: str
    seed: int
    status: Status
    started_at: str  # ISO 8601, UTC
    finished_at: str | None
    acc: float | None
    bwt: float | None
    fwt: float | None
    forgetting: float | None
    num_tasks: int
    rows_recorded: int


@dataclass(frozen=True, slots=True)
class RunRecord(RunSummary):
    """Everything stored about one run.

    `matrix[i][j]` is the accuracy on task j after training task i (row 0: untrained model);
    `costs[t]` maps cost names to values for task t, `diagnostics[t]` the strategy's
    reported values (NaN where it gave NaN); undefined metrics are NaN. `warnings` are in
    task order, then in the order they were raised.
    """

    config: dict[str, Any]
    matrix: list[list[float]]
    metrics: dict[str, float]
    costs: dict[int, dict[str, float]]
    curves: list[CurveRow]
    diagnostics: dict[int, dict[str, float]]
    warnings: list[TaskWarning]
    error: str | None
    versions: dict[str, str]
    git_commit: str | None
    host: str
    pid: int
    task_keys: list[str]  # in training order; empty for runs stored before schema 3


class Store:
    """The results store in one SQLite file (WAL mode, so readers never block the writer).

    Args:
        path: the database file. Opening checks that the file is a lifelong store of a schema
            this version reads, and marks runs left 'running' by a dead process on this host
            as failed.
        create: create the file (and its folder) if missing; False for commands that only
            read, which then fail with a clear message instead of leaving an empty store.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise StateError(f"{self.path}: no results store here; run an experiment first "
                                 "(lifelong run NAME) or pass --store PATH")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"{self.path}: cannot create the store's folder ({exc}); "
                                 "pass --store with a writable path") from None
        elif self.path.is_dir():
            raise StateError(f"{self.path} is a folder; pass --store with a file path, e.g. "
                             f"{self.path / 'lifelong.sqlite'}")
        with self._errors():
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
            # lock up front and waits for it, instead of failing when upgrading a read lock.
            self._con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._open()
        except BaseException:
            self._con.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (committed rows are already on disk)."""
        self._con.close()

    def begin_run(
        self, run_id: str, *, experiment: str, strategy: str, stream: str, seed: int,
        config: dict[str, Any], num_tasks: int, versions: dict[str, str] | None = None,
        git_commit: str | None = None, task_keys: Sequence[str] = (),
    ) -> None:
        """Record a run as 'running' with this process's pid; an old run of that id is replaced.

        Args:
            versions: python/torch/lifelong versions; read from the environment when None.
            task_keys: the stream's task keys in training order (the run's `order`).
        """
        if not run_id or num_tasks < 1:
            raise StateError(f"run {run_id!r}: needs a non-empty id and num_tasks >= 1, "
                             f"got num_tasks={num_tasks}")
        config_json = _json(config, f"run {run_id!r}: config")
        versions_json = _json(installed_versions() if versions is None else versions, "versions")
        host, pid = socket.gethostname(), os.getpid()
        with self._tx() as con:
            old = con.execute("SELECT status, pid, host FROM runs WHERE run_id = ?",
                              (run_id,)).fetchone()
            if old and old[0] == "running" and old[2] == host and old[1] != pid and _alive(old[1]):
                raise StateError(f"run {run_id!r} is being written by process {old[1]} on "
                                 f"{host} ({self.path}); wait for it or stop that process")
            for table in ("task_keys", "warnings", "diagnostics", "curves", "costs", "metrics",
                          "cells", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            con.execute(
                "INSERT INTO runs (run_id, experiment, strategy, stream, seed, config_json,"
                " versions_json, git_commit, status, pid, host, started_at, num_tasks)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, experiment, strategy, stream, int(seed), config_json, versions_json,
                 git_commit, pid, host, _now(), int(num_tasks)))
            con.executemany("INSERT INTO task_keys (run_id, position, key) VALUES (?, ?, ?)",
                            [(run_id, i, str(k)) for i, k in enumerate(task_keys)])

    def record_row(
        self, run_id: str, *, row: int, accuracies: Sequence[float],
        costs: Mapping[str, float] | None = None,
        curve: Sequence[tuple[int, int, float]] | None = None,
        diagnostics: Mapping[str, float] | None = None, warnings: Sequence[str] = (),
    ) -> None:
        """Record row `row` of the accuracy matrix, with that task's costs, curve points,
        diagnostics and warnings, in one transaction.

        Args:
            run_id: a run begun with `begin_run` and still running.
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
            num_tasks, recorded = self._running(run_id)
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

    def finish_run(self, run_id: str, *, metrics: Mapping[str, float]) -> None:
        """Store the summary metrics (NaN = undefined) and mark the run 'completed'."""
        values = {str(k): float(v) for k, v in metrics.items()}
        with self._tx() as con:
            num_tasks, recorded = self._running(run_id)
            if recorded != num_tasks + 1:
                raise StateError(f"run {run_id!r}: {recorded} of {num_tasks + 1} matrix rows "
                                 "recorded; record every row before finish_run, or call fail_run")
            if bad := sorted(k for k, v in values.items() if math.isinf(v)):
                raise StateError(f"run {run_id!r}: metrics {bad} are infinite; expected finite "
                                 "numbers, or NaN where a metric is undefined")
            con.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                            [(run_id, k, None if math.isnan(v) else v) for k, v in values.items()])
            con.execute("UPDATE runs SET status = 'completed', finished_at = ?, error = NULL"
                        " WHERE run_id = ?", (_now(), run_id))

    def fail_run(self, run_id: str, *, error: str) -> None:
        """Mark a running run 'failed' with `error`; the rows recorded so far are kept."""
        with self._tx() as con:
            self._running(run_id)
            con.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ?"
                        " WHERE run_id = ?", (_now(), error, run_id))

    def is_completed(self, run_id: str) -> bool:
        """Whether `run_id` (an exact id) finished successfully, so a sweep can skip it."""
        with self._errors():
            got = self._con.execute("SELECT status FROM runs WHERE run_id = ?",
                                    (run_id,)).fetchone()
        return got is not None and got[0] == "completed"

    def list_runs(self, *, experiment: str | None = None) -> list[RunSummary]:
        """All runs, or those of one experiment, newest first."""
        with self._errors():
            rows = self._con.execute(_SUMMARY_SQL + " WHERE ? IS NULL OR r.experiment = ?"
                                     " ORDER BY r.started_at DESC, r.rowid DESC",
                                     (experiment, experiment)).fetchall()
        return [RunSummary(*r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """The run whose id is `run_id` or, failing that, the one run whose id starts with it.

        Raises:
            ConfigError: no run matches ("did you mean"), or the prefix matches several.
        """
        with self._errors():
            rid = self._resolve(run_id)
            query = partial(self._all, params=(rid,))
            summary = query(_SUMMARY_SQL + " WHERE r.run_id = ?")[0]
            [(config, versions, git, error, host, pid)] = query(
                "SELECT config_json, versions_json, git_commit, error, host, pid FROM runs"
                " WHERE run_id = ?")
            cells = query('SELECT "row", col, accuracy FROM cells WHERE run_id = ?')
            metrics = query("SELECT name, value FROM metrics WHERE run_id = ? ORDER BY name")
            costs = query("SELECT task, name, value FROM costs WHERE run_id = ? ORDER BY task")
            curves = query("SELECT trained_task, step, eval_task, accuracy FROM curves"
                           " WHERE run_id = ? ORDER BY trained_task, step, eval_task")
            diagnostics = query("SELECT task, name, value FROM diagnostics WHERE run_id = ?"
                                " ORDER BY task, name")
            warnings = query("SELECT task, message FROM warnings WHERE run_id = ?"
                             " ORDER BY task, seq")
            keys = query("SELECT key FROM task_keys WHERE run_id = ? ORDER BY position")
        matrix = [[math.nan] * summary[-2] for _ in range(summary[-1])]
        for r, c, a in cells:
            matrix[r][c] = a
        per_task: dict[int, dict[str, float]] = {}
        for task, name, value in costs:
            per_task.setdefault(task, {})[name] = value
        diag: dict[int, dict[str, float]] = {}
        for task, name, value in diagnostics:
            diag.setdefault(task, {})[name] = math.nan if value is None else value
        return RunRecord(
            **dict(zip([f.name for f in fields(RunSummary)], summary, strict=True)),
            config=json.loads(config), matrix=matrix,
            metrics={k: math.nan if v is None else v for k, v in metrics}, costs=per_task,
            curves=[CurveRow(*p) for p in curves], diagnostics=diag,
            warnings=[TaskWarning(*w) for w in warnings], error=error,
            versions=json.loads(versions), git_commit=git, host=host, pid=pid,
            task_keys=[k for (k,) in keys])

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self._con.execute(sql, params).fetchall()

    def _open(self) -> None:
        with self._errors():
            if self._header() == (0, 0, 0):  # a new, empty file
                with self._tx() as con:  # check again under the lock: another process may race
                    if self._header() == (0, 0, 0):
                        for statement in _SCHEMA:
                            con.execute(statement)
            app_id, version, _ = self._header()
        if app_id != APPLICATION_ID:
            raise StateError(f"{self.path}: a SQLite database that is not a lifelong results "
                             "store; pass another store path, or move this file away")
        if version in _MIGRATIONS:
            version = self._migrate()
        if version != SCHEMA_VERSION:
            fix = ("upgrade lifelong (pip install -U lifelong)" if version > SCHEMA_VERSION
                   else "move this file away to start a new store")
            raise StateError(f"{self.path}: results store schema version {version}, this "
                             f"lifelong reads version {SCHEMA_VERSION}; {fix}, or pass "
                             "another store path")
        with self._errors():
            self._con.execute("PRAGMA foreign_keys = ON")
            # Switching to WAL answers "locked" at once, without the busy handler, while
            # another process creates the file; so this waits by itself.
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            while True:
                try:
                    self._con.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self._mark_interrupted()

    def _migrate(self) -> int:
        """Bring an older store up to `SCHEMA_VERSION`, one version per step, all in one
        transaction (another process may be migrating the same file: the version is read
        again under the lock). Returns the version reached."""
        with self._errors(), self._tx() as con:
            version = self._header()[1]
            while version in _MIGRATIONS:
                for statement in _MIGRATIONS[version]:
                    con.execute(statement)
                version += 1
                con.execute(f"PRAGMA user_version = {version}")
        return version

    def _header(self) -> tuple[int, int, int]:
        """(application_id, user_version, number of schema objects): all 0 for a new file."""
        app_id, version, objects = (int(self._con.execute(sql).fetchone()[0]) for sql in (
            "PRAGMA application_id", "PRAGMA user_version", "SELECT COUNT(*) FROM sqlite_master"))
        return app_id, version, objects

    def _mark_interrupted(self) -> None:
        host = socket.gethostname()
        dead = [(f"interrupted (process {pid} ended without finishing)", rid, pid, host)
                for rid, pid in self._con.execute("SELECT run_id, pid FROM runs WHERE"
                                                  " status = 'running' AND host = ?", (host,))
                if not _alive(pid)]
        if dead:
            with self._tx() as con:  # `pid = ?`: skip a run re-begun meanwhile by a live process
                con.executemany("UPDATE runs SET status = 'failed', error = ? WHERE run_id = ?"
                                " AND status = 'running' AND pid = ? AND host = ?", dead)

    def _running(self, run_id: str) -> tuple[int, int]:
        """(num_tasks, rows recorded) of a run that must exist and be running."""
        got = self._con.execute(f"SELECT status, num_tasks, ({_ROWS_SQL}) FROM runs r"
                                " WHERE run_id = ?", (run_id,)).fetchone()
        if got is None:
            raise StateError(f"run {run_id!r} is not in {self.path}; call begin_run first")
        if got[0] != "running":
            raise StateError(f"run {run_id!r} is {got[0]}, not running; call begin_run to "
                             "record it again")
        return int(got[1]), int(got[2])

    def _resolve(self, key: str) -> str:
        ids: list[str] = [r for (r,) in self._con.execute("SELECT run_id FROM runs")]
        found = sorted(r for r in ids if r.startswith(key))
        if key in ids or len(found) == 1:
            return key if key in ids else found[0]
        if found:
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            raise ConfigError(f"run id prefix '{key}' is ambiguous: it matches "
                              f"{', '.join(found[:10])}{more}; give more characters")
        # Also offer same-length prefixes, so a typo in a short prefix still finds its run.
        hint = suggest(key, {*ids, *(r[: len(key)] for r in ids)})
        raise ConfigError(f"no run '{key}' in {self.path}{hint}"
                          + (" " if hint else "; ") + "`lifelong runs` lists the runs")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block succeeds, rolled back otherwise."""
        with self._errors():
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn sqlite3 errors into a StateError that names the file and a next step."""
        try:
            yield
        except sqlite3.Error as exc:
            if type(exc) is sqlite3.DatabaseError:  # SQLITE_NOTADB or SQLITE_CORRUPT
                msg = "not a SQLite database, or a corrupt one; pass another store path"
            elif "locked" in str(exc):
                msg = (f"locked by another process (waited up to {BUSY_TIMEOUT_S:.0f} s); "
                       "retry, or let fewer workers write at once")
            else:
                msg = f"{exc}; check the file, its folder and their permissions"
            raise StateError(f"{self.path}: {msg}") from None


def _alive(pid: int) -> bool:
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


def installed_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on, as installed."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "numpy", "lifelong"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["lifelong-code"] = code_hash()
    return out


def code_hash() -> str:
    """A hash of the `lifelong` package's source files as they are on disk: it changes with
    any edit of the code, committed or not, installed from git or from a wheel."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]
