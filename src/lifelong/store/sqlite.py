"""The results store in one SQLite file: the `Store` connection, its transactions and reads.

Owns opening (checking the file is a store of a version this code reads, migrating an older
one, marking runs left 'running' by a dead process as failed), transactions and the queries.
Does not own the writes (`writes.py`: the events a store is fed, each one transaction), the
tables' SQL (`schema.py`), turning rows back into values (`records.py`), metrics, run ids,
training, or the plain-text tables of ``lifelong runs`` (`lifelong.report.tables`).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from lifelong.errors import ConfigError, StateError
from lifelong.registry import suggest
from lifelong.store.records import (
    SUMMARY_SQL,
    RunRecord,
    RunSummary,
    StoredFigure,
    read_record,
)
from lifelong.store.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
)
from lifelong.store.writes import Writes, process_alive

DEFAULT_PATH = Path("runs/lifelong.sqlite")
BUSY_TIMEOUT_S = 30.0  # how long parallel sweep workers wait for the write lock


class Store(Writes):
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
                if not process_alive(pid)]
        if dead:
            with self._tx() as con:  # `pid = ?`: skip a run re-begun meanwhile by a live process
                con.executemany("UPDATE runs SET status = 'failed', error = ? WHERE run_id = ?"
                                " AND status = 'running' AND pid = ? AND host = ?", dead)

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
        """Group several writes (e.g. `begin` and every `record` of a run that
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
