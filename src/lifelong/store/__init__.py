"""SQLite results store.

One SQLite file (default ``runs/lifelong.sqlite``) holds each run's metadata, its accuracy
matrix R cell by cell, summary metrics, per-task costs, diagnostics, warnings, learning curves
and what its recorders kept, plus the figures each experiment drew. `sqlite.py` opens and
queries it, `writes.py` writes it, `records.py` turns rows back into values, `schema.py`
holds its tables and migrations.
"""

from lifelong.store.records import (
    SUMMARY_METRICS,
    CurveRow,
    RunRecord,
    RunSummary,
    Status,
    StoredFigure,
    TaskWarning,
)
from lifelong.store.schema import APPLICATION_ID, SCHEMA_VERSION
from lifelong.store.sqlite import BUSY_TIMEOUT_S, DEFAULT_PATH, Store
from lifelong.store.writes import NewRun

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "DEFAULT_PATH", "SCHEMA_VERSION",
           "SUMMARY_METRICS", "CurveRow", "NewRun", "RunRecord", "RunSummary", "Status", "Store",
           "StoredFigure", "TaskWarning"]
