"""What the results store gives back: one line per run (`RunSummary`), everything about one
run (`RunRecord`) and an experiment's stored figures (`StoredFigure`), and the SQL that reads
them.

Owns turning rows back into these values. Does not own the connection or writing
(`lifelong.store.sqlite`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple

SUMMARY_METRICS = ("acc", "bwt", "fwt", "forgetting")
Status = Literal["running", "completed", "failed"]
ROWS_SQL = 'SELECT COUNT(DISTINCT "row") FROM cells c WHERE c.run_id = r.run_id'
SUMMARY_SQL = (
    "SELECT r.run_id, r.experiment, r.strategy, r.stream, r.seed, r.status, r.started_at,"
    " r.finished_at, " + ", ".join(
        f"(SELECT value FROM metrics m WHERE m.run_id = r.run_id AND m.name = '{name}')"
        for name in SUMMARY_METRICS) + f", r.num_tasks, ({ROWS_SQL}),"
    " COALESCE(r.label, r.strategy) FROM runs r"
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
    label: str  # how tables name the run: the strategy, plus options that tell variants apart


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
    artifacts: dict[str, Any]  # what the run's recorders kept (JSON values), by recorder key


@dataclass(frozen=True, slots=True)
class StoredFigure:
    """A figure an experiment drew, as PNG bytes, with the runs it shows (the latest one of
    each experiment and file name is kept)."""

    experiment: str
    name: str
    run_ids: list[str]
    png: bytes
    created_at: str


def read_record(con: sqlite3.Connection, rid: str) -> RunRecord:
    """Everything stored about run `rid` (an exact id that exists)."""

    def query(sql: str) -> list[Any]:
        return con.execute(sql, (rid,)).fetchall()

    summary = query(SUMMARY_SQL + " WHERE r.run_id = ?")[0]
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
    warnings = query("SELECT task, message FROM warnings WHERE run_id = ? ORDER BY task, seq")
    keys = query("SELECT key FROM task_keys WHERE run_id = ? ORDER BY position")
    artifacts = query("SELECT name, value_json FROM artifacts WHERE run_id = ? ORDER BY name")
    names = [f.name for f in fields(RunSummary)]
    head = dict(zip(names, summary, strict=True))
    matrix = [[math.nan] * head["num_tasks"] for _ in range(head["rows_recorded"])]
    for r, c, a in cells:
        matrix[r][c] = a
    per_task: dict[int, dict[str, float]] = {}
    for task, name, value in costs:
        per_task.setdefault(task, {})[name] = value
    diag: dict[int, dict[str, float]] = {}
    for task, name, value in diagnostics:
        diag.setdefault(task, {})[name] = math.nan if value is None else value
    return RunRecord(
        **head, config=json.loads(config), matrix=matrix,
        metrics={k: math.nan if v is None else v for k, v in metrics}, costs=per_task,
        curves=[CurveRow(*p) for p in curves], diagnostics=diag,
        warnings=[TaskWarning(*w) for w in warnings], error=error,
        versions=json.loads(versions), git_commit=git, host=host, pid=pid,
        task_keys=[k for (k,) in keys], artifacts={n: json.loads(v) for n, v in artifacts})


