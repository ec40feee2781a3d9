"""SQLite results store.

Owns the on-disk record of runs: one SQLite file (default ``runs/lifelong.sqlite``) holding each
run's metadata, its accuracy matrix R cell by cell, summary metrics, per-task costs and
within-task learning curves; marking runs whose process died as failed; and the plain-text
tables printed by ``lifelong runs`` and ``lifelong show``. Every write is one transaction, so a
killed process leaves whole matrix rows or none. Does not own computing metrics (`metrics.py`),
deriving run ids (`config.py`), training, or plots.
"""

from __future__ import annotations

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
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple

from lifelong.errors import ConfigError, StateError
from lifelong.registry import suggest

DEFAULT_PATH = Path("runs/lifelong.sqlite")
SCHEMA_VERSION = 1  # PRAGMA user_version; bump with a migration when the tables change
APPLICATION_ID = 0x4C4C5354  # PRAGMA application_id ("LLST"): tells our files from others
BUSY_TIMEOUT_S = 30.0  # parallel sweep workers wait this long for the write lock
SUMMARY_METRICS = ("acc", "bwt", "fwt", "forgetting")
Status = Literal["running", "completed", "failed"]

_SCHEMA = (
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, strategy TEXT NOT NULL,
        stream TEXT NOT NULL, seed INTEGER NOT NULL, config_json TEXT NOT NULL,
        versions_json TEXT NOT NULL, git_commit TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
        error TEXT, pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL,
        finished_at TEXT, num_tasks INTEGER NOT NULL CHECK (num_tasks > 0))""",
    "CREATE INDEX runs_by_start ON runs (started_at)",
    """CREATE TABLE cells (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        "row" INTEGER NOT NULL, col INTEGER NOT NULL, accuracy REAL NOT NULL,
        PRIMARY KEY (run_id, "row", col)) WITHOUT ROWID""",
    # value is NULL for an undefined metric, e.g. BWT of a one-task stream (NaN in Python).
    """CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, name)) WITHOUT ROWID""",
    """CREATE TABLE costs (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        task INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
        PRIMARY KEY (run_id, task, name)) WITHOUT ROWID""",
    """CREATE TABLE curves (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        trained_task INTEGER NOT NULL, step INTEGER NOT NULL, eval_task INTEGER NOT NULL,
        accuracy REAL NOT NULL,
        PRIMARY KEY (run_id, trained_task, step, eval_task)) WITHOUT ROWID""",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_CHILD_TABLES = ("curves", "costs", "metrics", "cells")
_SUMMARY_SQL = (
    "SELECT r.run_id, r.experiment, r.strategy, r.stream, r.seed, r.status, r.started_at,"
    " r.finished_at, "
    + ", ".join(
        f"(SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = '{name}')"
        for name in SUMMARY_METRICS
    )
    + ', r.num_tasks, (SELECT COUNT(DISTINCT "row") FROM cells c WHERE c.run_id = r.run_id)'
    " FROM runs r"
)


class CurvePoint(NamedTuple):
    """Accuracy on `eval_task` after `step` optimiser steps of training on `trained_task`."""

    trained_task: int
    step: int
    eval_task: int
    accuracy: float


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of ``lifelong runs``. Metrics are None until the run completes (or if undefined)."""

    run_id: str
    experiment: str
    strategy: str
    stream: str
    seed: int
    status: Status
    started_at: str
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
    `costs[t]` maps cost names to values for task t; undefined metrics are NaN.
    """

    config: dict[str, Any]
    matrix: list[list[float]]
    metrics: dict[str, float]
    costs: dict[int, dict[str, float]]
    curves: list[CurvePoint]
    error: str | None
    versions: dict[str, str]
    git_commit: str | None
    host: str
    pid: int


class Store:
    """The results store in one SQLite file (WAL mode, so readers never block the writer).

    Args:
        path: the database file; its folder is created. Opening checks that the file is a
            lifelong store of a schema this version understands, and marks runs left
            'running' by a dead process on this host as failed.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors():
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
            # lock up front and waits on it instead of failing when upgrading a read lock.
            self._con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._open()
        except BaseException:
            self._con.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (committed rows are already on disk)."""
        self._con.close()

    # ----------------------------------------------------------------------------- writes
    def begin_run(
        self, run_id: str, *, experiment: str, strategy: str, stream: str, seed: int,
        config: dict[str, Any], num_tasks: int, versions: dict[str, str] | None = None,
        git_commit: str | None = None,
    ) -> None:
        """Record a new run as 'running'; a run with the same id is replaced entirely."""
        if not run_id or num_tasks < 1:
            raise StateError(f"run {run_id!r}: needs a non-empty id and num_tasks >= 1, got "
                             f"num_tasks={num_tasks}")
        config_json = _json(config, f"run {run_id!r}: config")
        versions_json = _json(_versions() if versions is None else versions, "versions")
        host, pid = socket.gethostname(), os.getpid()
        with self._tx() as con:
            old = con.execute("SELECT status, pid, host FROM runs WHERE run_id = ?",
                              (run_id,)).fetchone()
            if old and old[0] == "running" and old[2] == host and old[1] != pid and _alive(old[1]):
                raise StateError(f"run {run_id!r} is being written by process {old[1]} on "
                                 f"{host} ({self.path}); wait for it or stop that process")
            for table in (*_CHILD_TABLES, "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            con.execute(
                "INSERT INTO runs (run_id, experiment, strategy, stream, seed, config_json,"
                " versions_json, git_commit, status, pid, host, started_at, num_tasks)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, experiment, strategy, stream, int(seed), config_json, versions_json,
                 git_commit, pid, host, _now(), int(num_tasks)),
            )

    def record_row(
        self, run_id: str, *, row: int, accuracies: Sequence[float],
        costs: Mapping[str, float] | None = None,
        curve: Sequence[tuple[int, int, float]] | None = None,
    ) -> None:
        """Record row `row` of the accuracy matrix, with that task's costs and curve points.

        Args:
            run_id: a run begun with `begin_run` and still running.
            row: 0 for the untrained model, i after training task i; rows come in order.
            accuracies: accuracy on each task, finite and in [0, 1].
            costs: costs of training task ``row - 1`` (train_seconds, eval_seconds,
                peak_memory_bytes, parameters, ...); only for row > 0.
            curve: (step, eval_task, accuracy) points measured while training task ``row - 1``.

        Raises:
            StateError: the run is unknown or not running, or a value is out of range;
                nothing is written then.
        """
        where = f"run {run_id!r}, row {row}"
        accs = [float(a) for a in accuracies]
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
            if row == 0 and (costs or curve):
                problems.append("costs and curves belong to a trained task (row >= 1)")
            cost_items = [(k, float(v)) for k, v in (costs or {}).items()]
            problems += [f"cost {k!r} is {v}, expected a finite number"
                         for k, v in cost_items if not math.isfinite(v)]
            points = [(int(s), int(t), float(a)) for s, t, a in (curve or ())]
            problems += [f"curve point (step={s}, eval_task={t}, accuracy={a}) needs step >= 0, "
                         f"eval_task in 0..{num_tasks - 1}, accuracy in [0, 1]"
                         for s, t, a in points
                         if s < 0 or not 0 <= t < num_tasks or not 0.0 <= a <= 1.0]
            if problems:
                raise StateError(f"{where}: " + "; ".join(problems))
            con.executemany('INSERT INTO cells (run_id, "row", col, accuracy) VALUES (?, ?, ?, ?)',
                            [(run_id, row, j, a) for j, a in enumerate(accs)])
            con.executemany("INSERT INTO costs VALUES (?, ?, ?, ?)",
                            [(run_id, row - 1, k, v) for k, v in cost_items])
            try:
                con.executemany("INSERT INTO curves VALUES (?, ?, ?, ?, ?)",
                                [(run_id, row - 1, s, t, a) for s, t, a in points])
            except sqlite3.IntegrityError:
                raise StateError(f"{where}: a (step, eval_task) pair repeats in the curve; "
                                 "give each point once") from None

    def finish_run(self, run_id: str, *, metrics: Mapping[str, float]) -> None:
        """Store the summary metrics (NaN = undefined) and mark the run 'completed'."""
        values = {k: float(v) for k, v in metrics.items()}
        with self._tx() as con:
            num_tasks, recorded = self._running(run_id)
            if recorded != num_tasks + 1:
                raise StateError(f"run {run_id!r}: {recorded} of {num_tasks + 1} matrix rows "
                                 "recorded; record every row before finish_run, or call fail_run")
            bad = [k for k, v in values.items() if math.isinf(v)]
            if bad:
                raise StateError(f"run {run_id!r}: metrics {bad} are infinite; expected finite "
                                 "numbers (or NaN where a metric is undefined)")
            con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                            [(run_id, k, None if math.isnan(v) else v) for k, v in values.items()])
            con.execute("UPDATE runs SET status = 'completed', finished_at = ?, error = NULL"
                        " WHERE run_id = ?", (_now(), run_id))

    def fail_run(self, run_id: str, *, error: str) -> None:
        """Mark a running run 'failed' with `error`; the rows recorded so far are kept."""
        with self._tx() as con:
            self._running(run_id)
            con.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ?"
                        " WHERE run_id = ?", (_now(), error, run_id))

    # ------------------------------------------------------------------------------ reads
    def is_completed(self, run_id: str) -> bool:
        """Whether `run_id` (an exact id) finished successfully, so a sweep can skip it."""
        with self._errors():
            got = self._con.execute("SELECT status FROM runs WHERE run_id = ?",
                                    (run_id,)).fetchone()
        return got is not None and got[0] == "completed"

    def list_runs(self, *, experiment: str | None = None) -> list[RunSummary]:
        """All runs (or those of one experiment), newest first."""
        with self._errors():
            rows = self._con.execute(
                _SUMMARY_SQL + " WHERE ? IS NULL OR r.experiment = ?"
                " ORDER BY r.started_at DESC, r.rowid DESC", (experiment, experiment),
            ).fetchall()
        return [RunSummary(*r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """The run whose id is `run_id` or, failing that, starts with it.

        Raises:
            ConfigError: no run matches ("did you mean"), or the prefix matches several.
        """
        con = self._con
        with self._errors():
            rid = self._resolve(run_id)
            summary = con.execute(_SUMMARY_SQL + " WHERE r.run_id = ?", (rid,)).fetchone()
            config, versions, git, error, host, pid = con.execute(
                "SELECT config_json, versions_json, git_commit, error, host, pid FROM runs"
                " WHERE run_id = ?", (rid,)).fetchone()
            cells = con.execute('SELECT "row", col, accuracy FROM cells WHERE run_id = ?',
                                (rid,)).fetchall()
            metrics = con.execute("SELECT name, value FROM metrics WHERE run_id = ?"
                                  " ORDER BY name", (rid,)).fetchall()
            costs = con.execute("SELECT task, name, value FROM costs WHERE run_id = ?"
                                " ORDER BY task, name", (rid,)).fetchall()
            curves = con.execute("SELECT trained_task, step, eval_task, accuracy FROM curves"
                                 " WHERE run_id = ? ORDER BY trained_task, step, eval_task",
                                 (rid,)).fetchall()
        num_tasks, rows = summary[-2], 1 + max((r for r, _, _ in cells), default=-1)
        matrix = [[math.nan] * num_tasks for _ in range(rows)]
        for r, c, a in cells:
            matrix[r][c] = a
        per_task: dict[int, dict[str, float]] = {}
        for task, name, value in costs:
            per_task.setdefault(task, {})[name] = value
        return RunRecord(
            **dict(zip([f.name for f in fields(RunSummary)], summary, strict=True)),
            config=json.loads(config), matrix=matrix,
            metrics={k: math.nan if v is None else v for k, v in metrics}, costs=per_task,
            curves=[CurvePoint(*p) for p in curves], error=error,
            versions=json.loads(versions), git_commit=git, host=host, pid=pid,
        )

    # ---------------------------------------------------------------------------- helpers
    def _open(self) -> None:
        with self._errors():
            if self._header() == (0, 0, 0):
                with self._tx() as con:  # re-check under the lock: another process may race us
                    if self._header() == (0, 0, 0):
                        for statement in _SCHEMA:
                            con.execute(statement)
            app_id, version, _ = self._header()
        if app_id != APPLICATION_ID:
            raise StateError(f"{self.path}: a SQLite database that is not a lifelong results "
                             "store; pass another store path, or move this file away")
        if version != SCHEMA_VERSION:
            newer = version > SCHEMA_VERSION
            raise StateError(
                f"{self.path}: results store schema version {version}, this lifelong reads "
                f"version {SCHEMA_VERSION}; " + ("upgrade lifelong (pip install -U lifelong)"
                if newer else "move this file away to start a new store")
                + " or pass another store path")
        with self._errors():
            self._con.execute("PRAGMA foreign_keys = ON")
            # Switching to WAL answers "locked" at once, without the busy handler, while
            # another process creates the file; so wait here ourselves.
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

    def _header(self) -> tuple[int, int, int]:
        """(application_id, user_version, number of schema objects); all 0 for a new file."""
        con = self._con
        return (con.execute("PRAGMA application_id").fetchone()[0],
                con.execute("PRAGMA user_version").fetchone()[0],
                con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0])

    def _mark_interrupted(self) -> None:
        host = socket.gethostname()
        running = self._con.execute("SELECT run_id, pid FROM runs WHERE status = 'running'"
                                    " AND host = ?", (host,)).fetchall()
        dead = [(rid, pid) for rid, pid in running if not _alive(pid)]
        if dead:
            with self._tx() as con:  # `pid = ?`: skip a run re-begun meanwhile by a live process
                con.executemany(
                    "UPDATE runs SET status = 'failed', error = ? WHERE run_id = ?"
                    " AND status = 'running' AND pid = ? AND host = ?",
                    [(f"interrupted (process {pid} ended without finishing)", rid, pid, host)
                     for rid, pid in dead])

    def _running(self, run_id: str) -> tuple[int, int]:
        """(num_tasks, rows recorded) of a run that must exist and be running."""
        got = self._con.execute(
            'SELECT status, num_tasks, (SELECT COUNT(DISTINCT "row") FROM cells c'
            " WHERE c.run_id = r.run_id) FROM runs r WHERE run_id = ?", (run_id,)).fetchone()
        if got is None:
            raise StateError(f"run {run_id!r} is not in {self.path}; call begin_run first")
        if got[0] != "running":
            raise StateError(f"run {run_id!r} is {got[0]}, not running; call begin_run to "
                             "record it again")
        return int(got[1]), int(got[2])

    def _resolve(self, key: str) -> str:
        con = self._con
        if con.execute("SELECT 1 FROM runs WHERE run_id = ?", (key,)).fetchone():
            return key
        found: list[str] = [r for (r,) in con.execute("SELECT run_id FROM runs WHERE substr(run_id, 1, ?)"
                                           " = ? ORDER BY run_id", (len(key), key))]
        if len(found) == 1:
            return found[0]
        if found:
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            raise ConfigError(f"run id prefix '{key}' is ambiguous: it matches "
                              f"{', '.join(found[:10])}{more}; give more characters")
        ids = [r for (r,) in con.execute("SELECT run_id FROM runs")]
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
            if type(exc) is sqlite3.DatabaseError:  # SQLITE_NOTADB / SQLITE_CORRUPT
                msg = "not a SQLite database, or a corrupt one; pass another store path"
            elif "locked" in str(exc):
                msg = (f"locked by another process (waited up to {BUSY_TIMEOUT_S:.0f} s); "
                       "retry, or let fewer workers write at once")
            else:
                msg = f"{exc}; check the file, its folder and their permissions"
            raise StateError(f"{self.path}: {msg}") from None


def _alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    if sys.platform == "win32":  # os.kill would terminate it there; assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
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


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "lifelong"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# ---------------------------------------------------------------------------- formatting
def _num(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "-"
    if digits == 0 or value.is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[str]], align: str) -> str:
    """Columns padded to a common width; `align` has one 'l' or 'r' per column."""
    lines = [*([list(header)] if header else []), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(align))]
    return "\n".join(
        "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                  for c, w, a in zip(line, widths, align, strict=True)).rstrip()
        for line in lines)


def format_runs_table(runs: Sequence[RunSummary]) -> str:
    """The aligned table printed by ``lifelong runs`` (one line per run)."""
    if not runs:
        return "no runs recorded"
    header = ("run", "experiment", "strategy", "stream", "seed", "status", "tasks",
              "acc", "bwt", "fwt", "forgetting", "started (UTC)")
    rows = [(r.run_id, r.experiment, r.strategy, r.stream, str(r.seed), r.status,
             f"{max(r.rows_recorded - 1, 0)}/{r.num_tasks}", _num(r.acc), _num(r.bwt),
             _num(r.fwt), _num(r.forgetting), r.started_at[:19].replace("T", " "))
            for r in runs]
    return _table(header, rows, "llllrlrrrrrl")


def format_run(record: RunRecord) -> str:
    """The report printed by ``lifelong show RUN_ID``: metadata, matrix, metrics and costs."""
    r = record
    info = [("run", r.run_id), ("experiment", r.experiment), ("strategy", r.strategy),
            ("stream", r.stream), ("seed", str(r.seed)), ("status", r.status),
            ("started", r.started_at), ("finished", r.finished_at or "-"),
            ("host", f"{r.host} (pid {r.pid})"), ("git", r.git_commit or "-"),
            ("versions", ", ".join(f"{k} {v}" for k, v in sorted(r.versions.items()))),
            ("config", json.dumps(r.config, sort_keys=True))]
    if r.error:
        info.append(("error", r.error))
    parts = [_table(None, info, "ll")]
    tasks = [f"task {j + 1}" for j in range(r.num_tasks)]
    labels = ["init", *(f"after {i}" for i in range(1, len(r.matrix)))]
    parts.append(f"accuracy (row: after training task i; column: tested task; "
                 f"{len(r.matrix)} of {r.num_tasks + 1} rows)\n"
                 + _table(("", *tasks), [(lab, *map(_num, row))
                                         for lab, row in zip(labels, r.matrix, strict=True)],
                          "l" + "r" * r.num_tasks))
    if r.metrics:
        parts.append("metrics\n" + _table(None, [(k, _num(v)) for k, v in r.metrics.items()], "lr"))
    if r.costs:
        names = sorted({n for c in r.costs.values() for n in c})
        rows = [(f"task {t + 1}", *(_num(c.get(n), 0 if n.endswith(("bytes", "parameters"))
                                         else 3) for n in names))
                for t, c in sorted(r.costs.items())]
        parts.append("costs\n" + _table(("", *names), rows, "l" + "r" * len(names)))
    if r.curves:
        parts.append(f"learning curves: {len(r.curves)} points over "
                     f"{len({p.trained_task for p in r.curves})} tasks")
    return "\n\n".join(parts)
