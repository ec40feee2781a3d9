"""Plain-text tables for the terminal: stored runs, one run's report, an accuracy matrix.

Owns formatting only (aligned columns, numbers); reads nothing. Used by `lifelong runs`,
`lifelong show` and `lifelong run`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence

from lifelong.metrics import summary
from lifelong.store import RunRecord, RunSummary


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "-"
    if digits == 0 or float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[str]], align: str) -> str:
    """Columns padded to a common width; `align` has one 'l' or 'r' per column."""
    lines = [*([header] if header else []), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(align))]
    return "\n".join("  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                               for c, w, a in zip(line, widths, align, strict=True)).rstrip()
                     for line in lines)


def format_runs_table(runs: Sequence[RunSummary]) -> str:
    """The aligned table printed by ``lifelong runs``, one line per run."""
    if not runs:
        return "no runs recorded"
    header = ("run", "experiment", "strategy (label)", "stream", "seed", "status", "tasks",
              "acc", "bwt", "fwt", "forgetting", "started (UTC)")
    rows = [(r.run_id, r.experiment, r.label, r.stream, str(r.seed), r.status,
             f"{max(r.rows_recorded - 1, 0)}/{r.num_tasks}", _num(r.acc), _num(r.bwt),
             _num(r.fwt), _num(r.forgetting), r.started_at[:19].replace("T", " "))
            for r in runs]
    return _table(header, rows, "llllrlrrrrrl")


def format_run(record: RunRecord) -> str:
    """The report printed by ``lifelong show RUN_ID``: metadata, matrix, metrics, costs,
    diagnostics and warnings."""
    r = record
    info = [("run", r.run_id), ("experiment", r.experiment), ("strategy", r.strategy),
            ("stream", r.stream), ("seed", str(r.seed)), ("status", r.status),
            ("started", r.started_at), ("finished", r.finished_at or "-"),
            ("host", f"{r.host} (pid {r.pid})"), ("git", r.git_commit or "-"),
            ("versions", ", ".join(f"{k} {v}" for k, v in sorted(r.versions.items()))),
            ("config", json.dumps(r.config, sort_keys=True))]
    if r.error:
        info.append(("error", r.error))
    labels = ["init", *(f"after {i}" for i in range(1, len(r.matrix)))]
    parts = [_table(None, info, "ll"),
             f"accuracy (row: after training task i; column: tested task; {len(r.matrix)} of "
             f"{r.num_tasks + 1} rows)\n" + _table(
                 ("", *(f"task {j + 1}" for j in range(r.num_tasks))),
                 [(lab, *map(_num, row)) for lab, row in zip(labels, r.matrix, strict=True)],
                 "l" + "r" * r.num_tasks)]
    if r.metrics:
        parts.append("metrics\n" + _table(None, [(k, _num(v)) for k, v in r.metrics.items()], "lr"))
    if r.costs:
        parts.append("costs\n" + _per_task(r.costs, lambda n: 0 if n.endswith(
            ("bytes", "parameters")) else 3))
    if r.diagnostics:
        parts.append("diagnostics (reported by the strategy)\n"
                     + _per_task(r.diagnostics, lambda n: 4))
    if r.warnings:
        parts.append("warnings\n" + "\n".join(f"task {w.task + 1}: {w.message}"
                                                for w in r.warnings))
    if r.curves:
        parts.append(f"learning curves: {len(r.curves)} points over "
                     f"{len({p.trained_task for p in r.curves})} tasks")
    return "\n\n".join(parts)


def _per_task(values: Mapping[int, Mapping[str, float]], digits: Callable[[str], int]) -> str:
    """One line per task, one column per name (a name missing for a task shows as -)."""
    names = sorted({n for c in values.values() for n in c})
    rows = [(f"task {t + 1}", *(_num(c.get(n), digits(n)) for n in names))
            for t, c in sorted(values.items())]
    return _table(("", *names), rows, "l" + "r" * len(names))


def format_warnings(warnings: Sequence[Sequence[str]]) -> str:
    """Each task's warnings (`RunResult.warnings`), one line each; empty if there are none."""
    return "\n".join(f"warning: task {t + 1}: {m}" for t, messages in enumerate(warnings)
                     for m in messages)


def format_matrix(matrix: Sequence[Sequence[float]]) -> str:
    """R with rows init, after 1..T, and its metrics on one line."""
    T = len(matrix[0])
    labels = ["init", *(f"after {i}" for i in range(1, len(matrix)))]
    table = _table(("R", *(f"task {j + 1}" for j in range(T))),
                   [(lab, *(f"{v:.3f}" for v in row))
                    for lab, row in zip(labels, matrix, strict=True)], "l" + "r" * T)
    return table + "\n" + "  ".join(f"{k}={'-' if math.isnan(v) else f'{v:+.3f}'}"
                                    for k, v in summary(matrix).items())
