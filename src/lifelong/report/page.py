"""The HTML report of a results store: one self-contained page, written atomically.

Owns reading the store for the report, grouping completed runs into comparisons (same label,
same stream config, over seeds), their statistics and mean accuracy-matrix heatmaps, the
published-vs-ours tables and the page's text. Does not own the page's layout (`template`),
the metrics (`lifelong.metrics`), drawing (`lifelong.plots`) or the store (`lifelong.store`).

Heatmaps are drawn per comparison, never per run, so a store of hundreds of runs stays quick.
"""

from __future__ import annotations

import base64
import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import numpy as np

from lifelong.config import canonical, short
from lifelong.errors import ConfigError
from lifelong.experiments.base import Experiment, Outcome
from lifelong.io import atomic_write_text
from lifelong.metrics import summary
from lifelong.report.scores import ScoreRow, score_rows, tally
from lifelong.run.runner import result_of
from lifelong.store import RunRecord, Store, StoredFigure

COMPARISON_HEADER = ("label", "stream", "seeds", "ACC", "BWT", "FWT", "forgetting",
                     "train s (total)", "peak memory MB", "parameters")
METRICS = ("acc", "bwt", "fwt", "forgetting")


@dataclass(frozen=True, slots=True)
class Comparison:
    """The completed runs of one experiment that share a label and a stream config."""

    label: str
    stream: str  # the stream's name plus the options that tell it from the experiment's others
    seeds: int
    seed_list: str
    cells: tuple[str, ...]  # the formatted columns after "seeds" in `COMPARISON_HEADER`
    heatmap: str  # data: URI of the mean matrix's PNG
    alt: str


@dataclass(frozen=True, slots=True)
class ReferenceRow:
    """One scored reference (`lifelong.report.scores.ScoreRow`), formatted for the page."""

    experiment: str
    label: str
    published: str
    ours: str
    gap: str
    verdict: str
    source: str

    @classmethod
    def of(cls, row: ScoreRow) -> ReferenceRow:
        ours = "-" if row.ours is None else f"{row.ours:.3f}" + (
            f" ± {row.std:.3f}" if row.std is not None else "")
        source = ("baseline measured here or re-run, not published: " if row.kind == "baseline"
                  else "") + row.source
        return cls(row.experiment, row.label, f"{row.published:g}", ours,
                   "-" if row.gap is None else f"{row.gap:+.1f}",
                   {"pass": "pass", "miss": "miss", "not run": "-"}[row.verdict], source)


@dataclass(frozen=True, slots=True)
class Unfinished:
    run_id: str
    label: str
    seed: int
    status: str
    stream: str
    rows: str
    error: str


@dataclass(frozen=True, slots=True)
class Figure:
    src: str
    alt: str
    caption: str


@dataclass(frozen=True, slots=True)
class Section:
    """Everything the page shows about one experiment."""

    name: str
    anchor: str
    run_count: int
    summary: str
    comparisons: tuple[Comparison, ...]
    stream_configs: tuple[str, ...]
    registered: bool
    protocol_note: str
    references: tuple[ReferenceRow, ...]
    ours_problem: str
    figures: tuple[Figure, ...]
    unfinished: tuple[Unfinished, ...]
    scores: tuple[ScoreRow, ...] = ()


def write_report(store_path: str | Path, out: str | Path) -> Path:
    """Write the HTML report of the store at `store_path` to `out` and return `out`'s path.

    The page is rendered completely in memory, then written atomically, so a failure leaves an
    existing report untouched.

    Raises:
        StateError: there is no store at `store_path`, or it cannot be read.
    """
    with Store(store_path, create=False) as store:
        records = [store.get_run(s.run_id) for s in reversed(store.list_runs())]  # oldest first
        figures = store.figures()
    names = sorted({r.experiment for r in records})
    experiments, problem = _registry(names)
    with tempfile.TemporaryDirectory(prefix="lifelong-report-") as tmp:
        sections = [_section(name, i, [r for r in records if r.experiment == name],
                             [f for f in figures if f.experiment == name],
                             experiments.get(name), Path(store_path), Path(tmp))
                    for i, name in enumerate(names)]
    scores = [row for section in sections for row in section.scores]
    statuses = {s: sum(r.status == s for r in records) for s in ("completed", "failed", "running")}
    count = f"{len(records)}" + (" (" + ", ".join(f"{n} {s}" for s, n in statuses.items() if n)
                                 + ")" if records else "")
    from lifelong import __version__

    html = _render(store=str(Path(store_path).resolve()), run_count=count, version=__version__,
                   generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   experiments=sections, registry_problem=problem,
                   score=tuple(ReferenceRow.of(r) for r in scores),
                   score_tally=tally(scores) if scores else "",
                   comparison_header=COMPARISON_HEADER)
    return atomic_write_text(out, html)


def _render(**context: Any) -> str:
    """The page from `template.TEMPLATE`, every value autoescaped."""
    import jinja2

    from lifelong.report.template import TEMPLATE

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(**context)


def _registry(names: Iterable[str]) -> tuple[dict[str, Experiment], str]:
    """The registered experiments among `names`, and why the registry could not load (or "")."""
    from lifelong.experiments import EXPERIMENTS

    try:
        EXPERIMENTS.names()  # the first lookup discovers them, installed plugins included
    except ConfigError as exc:  # a broken plugin: report what loaded, and say what did not
        problem = str(exc)
    else:
        problem = ""
    return {n: EXPERIMENTS.get(n)() for n in names if n in EXPERIMENTS}, problem


def _section(name: str, index: int, records: Sequence[RunRecord],
             figures: Sequence[StoredFigure], experiment: Experiment | None,
             store_path: Path, tmp: Path) -> Section:
    done = [r for r in records if r.status == "completed" and len(r.matrix) == r.num_tasks + 1]
    done_ids = {r.run_id for r in done}
    groups: dict[tuple[str, str, int], list[RunRecord]] = {}
    for r in done:  # num_tasks in the key: a mean matrix needs one shape
        groups.setdefault((r.label, canonical(r.config.get("stream", {})), r.num_tasks),
                          []).append(r)
    keys = sorted(groups, key=lambda k: (k[1], k[0]))
    streams = _stream_names({k[1]: groups[k][0] for k in keys})
    comparisons = tuple(_comparison(groups[k], streams[k[1]], tmp / f"{index}-{i}.png")
                        for i, k in enumerate(keys))
    scores: list[ScoreRow] = []
    ours_problem = ""
    if experiment is not None:
        outcomes = [Outcome(r.run_id, r.strategy, r.label, r.seed, r.config, result_of(r),
                            store_path.parent / r.run_id, reused=True) for r in done]
        try:  # the same score `lifelong reproduce` prints
            scores = score_rows(experiment, outcomes)
        except Exception as exc:  # noqa: BLE001 — partial data must not break the whole page
            ours_problem = f"{type(exc).__name__}: {exc}"
            scores = score_rows(experiment, [])
    references = tuple(ReferenceRow.of(r) for r in scores)
    unfinished = tuple(
        Unfinished(r.run_id, r.label, r.seed, r.status, r.stream,
                   f"{max(r.rows_recorded - 1, 0)}/{r.num_tasks}",
                   r.error or ("completed without a matrix" if r.status == "completed" else "-"))
        for r in records if r.run_id not in done_ids)
    return Section(
        name=name, anchor=f"experiment-{index}", run_count=len(records),
        summary=experiment.summary if experiment is not None else "",
        comparisons=comparisons, stream_configs=tuple(dict.fromkeys(k[1] for k in keys)),
        registered=experiment is not None,
        protocol_note=experiment.protocol_note if experiment is not None else "",
        references=references, ours_problem=ours_problem,
        figures=tuple(_figure(f) for f in figures), unfinished=unfinished,
        scores=tuple(s for s in scores if s.verdict != "not run"))


def _comparison(runs: Sequence[RunRecord], stream: str, png: Path) -> Comparison:
    """Statistics over seeds and the mean-matrix heatmap of one group of completed runs."""
    from lifelong.plots import matrix_heatmap

    stats = [summary(r.matrix) for r in runs]
    mean_matrix = np.mean(np.asarray([r.matrix for r in runs], dtype=np.float64), axis=0)
    label, n = runs[0].label, len(runs)
    # Matplotlib reads text between two '$' as maths; a label is plain text.
    title = f"{label} on {stream}: mean R over {n} seed(s)".replace("$", r"\$")
    matrix_heatmap(mean_matrix.tolist(), title, png)
    last = [r.costs.get(r.num_tasks - 1, {}) for r in runs]
    cells = (*(_mean_std([s[m] for s in stats]) for m in METRICS),
             _num(_mean(_total(r, "train_seconds") for r in runs), 2),
             _num(_mean(_peak(r) for r in runs), 1),
             _num(_mean(c.get("parameters") for c in last), 0))
    seeds = sorted(r.seed for r in runs)
    return Comparison(label=label, stream=stream, seeds=n,
                      seed_list=", ".join(map(str, seeds)), cells=cells,
                      heatmap=_data_uri(png.read_bytes()),
                      alt=f"accuracy matrix heatmap of {label} on {stream}, mean over {n} "
                          f"seed(s) ({', '.join(map(str, seeds))})")


def _stream_names(configs: dict[str, RunRecord]) -> dict[str, str]:
    """Each stream config's display name: the run's stream name plus the options on which the
    experiment's stream configs differ (none when it has one stream)."""
    parsed = {k: r.config.get("stream", {}) for k, r in configs.items()}
    keys = sorted({key for cfg in parsed.values() for key in cfg})
    differ = [key for key in keys if key != "name"
              and len({canonical(cfg.get(key)) for cfg in parsed.values()}) > 1]
    return {k: " ".join([configs[k].stream, *(f"{key}={short(parsed[k].get(key))}"
                                              for key in differ)])
            for k in parsed}


def _figure(f: StoredFigure) -> Figure:
    n = len(f.run_ids)
    return Figure(src=_data_uri(f.png), alt=f"figure {f.name} of experiment {f.experiment}",
                  caption=f"{f.name}: {n} run(s), drawn {f.created_at}")


def _total(record: RunRecord, cost: str) -> float | None:
    values = [record.costs.get(t, {}).get(cost) for t in range(record.num_tasks)]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _peak(record: RunRecord) -> float | None:
    values = [c["peak_memory_bytes"] for c in record.costs.values() if "peak_memory_bytes" in c]
    return max(values) / 2**20 if values else None


def _mean(values: Iterable[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return fmean(finite) if finite else None


def _mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (sample std) of the finite values; the mean alone for one; '-' for none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    if len(finite) == 1:
        return f"{finite[0]:.3f}"
    return f"{fmean(finite):.3f} ± {stdev(finite):.3f}"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
