"""The results store's tables, its version, and the migrations from older versions.

Owns the SQL that creates a store and takes an older one to `SCHEMA_VERSION`. Does not own
reading or writing rows (`lifelong.store.sqlite`).
"""

from __future__ import annotations

SCHEMA_VERSION = 4  # PRAGMA user_version; bump it, with a migration, when the tables change
APPLICATION_ID = 0x4C4C5354  # PRAGMA application_id ("LLST"): tells our files from others

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
# Version 4: how tables name a run (its label), what its recorders kept (artifacts, JSON),
# and the figures each experiment drew (PNG bytes, so the report is whole without the files).
_TABLES_V4 = (
    f"""CREATE TABLE artifacts ({_FK}, name TEXT NOT NULL, value_json TEXT NOT NULL,
        PRIMARY KEY (run_id, name)) WITHOUT ROWID""",
    """CREATE TABLE figures (experiment TEXT NOT NULL, name TEXT NOT NULL,
        run_ids_json TEXT NOT NULL, png BLOB NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (experiment, name))""",
)
# Statements that take a store from version N (the key) to N + 1, run in one transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _TABLES_V2, 2: _TABLES_V3, 3: ("ALTER TABLE runs ADD COLUMN label TEXT", *_TABLES_V4)}
SCHEMA = (
    """CREATE TABLE runs (run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL,
        strategy TEXT NOT NULL, stream TEXT NOT NULL, seed INTEGER NOT NULL,
        config_json TEXT NOT NULL, versions_json TEXT NOT NULL, git_commit TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')), error TEXT,
        pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
        num_tasks INTEGER NOT NULL CHECK (num_tasks > 0), label TEXT)""",
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
    *_TABLES_V4,
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# Tables holding a run's rows, children first (deleted in this order when a run is replaced).
RUN_TABLES = ("artifacts", "task_keys", "warnings", "diagnostics", "curves", "costs",
              "metrics", "cells", "runs")
