"""The results store in one SQLite file: the `Store` connection, its writes and its reads.

Owns opening (checking the file is a store of a version this code reads, migrating an older
one, marking runs left 'running' by a dead process as failed) and every write, each one
transaction, so a killed process leaves whole matrix rows or none. Does not own the tables'
SQL (`schema.py`), turning rows back into values (`records.py`), metrics, run ids, training,
or the plain-text tables of ``lifelong runs`` (`tables.py`).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from lifelong.errors import ConfigError, RunBusyError, StateError
from lifelong.registry import suggest
from lifelong.runs.provenance import installed_versions
from lifelong.store.records import (
    ROWS_SQL,
    SUMMARY_SQL,
    RunRecord,
    RunSummary,
    StoredFigure,
    read_record,
)
from lifelong.store.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    RUN_TABLES,
    SCHEMA,
    SCHEMA_VERSION,
)

DEFAULT_PATH = Path("runs/lifelong.sqlite")
BUSY_TIMEOUT_S = 30.0  # how long parallel sweep workers wait for the write lock


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
        self._depth = 0  # nesting of `_tx` (see `transaction`)
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
        git_commit: str | None = None, task_keys: Sequence[str] = (), label: str | None = None,
    ) -> None:
        """Record a run as 'running' with this process's pid; an old run of that id is replaced.

        Args:
            versions: python/torch/lifelong versions; read from the environment when None.
            task_keys: the stream's task keys in training order (the run's `order`).
            label: how tables name the run (default: the strategy).
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
                raise RunBusyError(f"run {run_id!r} is being written by process {old[1]} on "
                                 f"{host} ({self.path}); wait for it or stop that process")
            for table in RUN_TABLES:
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            con.execute(
                "INSERT INTO runs (run_id, experiment, strategy, stream, seed, config_json,"
                " versions_json, git_commit, status, pid, host, started_at, num_tasks, label)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (run_id, experiment, strategy, stream, int(seed), config_json, versions_json,
                 git_commit, pid, host, _now(), int(num_tasks), label))
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

    def finish_run(self, run_id: str, *, metrics: Mapping[str, float],
                   artifacts: Mapping[str, Any] | None = None) -> None:
        """Store the summary metrics (NaN = undefined) and what the run's recorders kept
        (`artifacts`: JSON values by name), and mark the run 'completed'."""
        values = {str(k): float(v) for k, v in metrics.items()}
        kept = [(run_id, str(k), _json(v, f"run {run_id!r}: artifact {k!r}"))
                for k, v in (artifacts or {}).items()]
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
            con.executemany("INSERT INTO artifacts VALUES (?, ?, ?)", kept)
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
            rows = self._con.execute(SUMMARY_SQL + " WHERE ? IS NULL OR r.experiment = ?"
                                     " ORDER BY r.started_at DESC, r.rowid DESC",
                                     (experiment, experiment)).fetchall()
        return [RunSummary(*r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """The run whose id is `run_id` or, failing that, the one run whose id starts with it.

        Raises:
            ConfigError: no run matches ("did you mean"), or the prefix matches several.
        """
        with self._errors():
            return read_record(self._con, self._resolve(run_id))

    def record_figure(self, experiment: str, path: Path, run_ids: Sequence[str]) -> None:
        """Keep the PNG at `path`, an `experiment`'s figure of the runs `run_ids`, replacing
        the figure of the same experiment and file name (the report embeds them)."""
        png = path.read_bytes()
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO figures VALUES (?, ?, ?, ?, ?)",
                        (experiment, path.name, json.dumps(list(run_ids)), png, _now()))

    def figures(self, experiment: str | None = None) -> list[StoredFigure]:
        """The stored figures, of one experiment or of all, by experiment and name."""
        with self._errors():
            rows = self._con.execute(
                "SELECT experiment, name, run_ids_json, png, created_at FROM figures"
                " WHERE ? IS NULL OR experiment = ? ORDER BY experiment, name",
                (experiment, experiment)).fetchall()
        return [StoredFigure(e, n, json.loads(r), bytes(p), c) for e, n, r, p, c in rows]

    def _open(self) -> None:
        with self._errors():
            if self._header() == (0, 0, 0):  # a new, empty file
                with self._tx() as con:  # check again under the lock: another process may race
                    if self._header() == (0, 0, 0):
                        for statement in SCHEMA:
                            con.execute(statement)
            app_id, version, _ = self._header()
        if app_id != APPLICATION_ID:
            raise StateError(f"{self.path}: a SQLite database that is not a lifelong results "
                             "store; pass another store path, or move this file away")
        if version in MIGRATIONS:
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
            while version in MIGRATIONS:
                for statement in MIGRATIONS[version]:
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
        got = self._con.execute(f"SELECT status, num_tasks, ({ROWS_SQL}) FROM runs r"
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
    def transaction(self) -> Iterator[None]:
        """Group several writes (e.g. `begin_run` and every `record_row` of a run that
        executed elsewhere) into one transaction: all of them are stored, or none."""
        with self._tx():
            yield

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block succeeds, rolled back otherwise. A
        `_tx` inside another joins it (the outer one commits or rolls back)."""
        if self._depth:
            self._depth += 1
            try:
                yield self._con
            finally:
                self._depth -= 1
            return
        with self._errors():
            self._con.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._con
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
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
