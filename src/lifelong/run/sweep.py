"""Sweeps: one experiment over a grid of options and several seeds, resumable, local or on Ray.

Owns parsing ``--grid key=v1,v2`` and ``--seeds 0-4``, expanding the grid into runs (an option a
strategy does not have is left out of its runs, so ``--grid strategy.name=naive,ewc --grid
strategy.strength=1,10`` runs naive once and EWC twice), running them through an executor with
a progress bar over runs, and the summary: mean ± std of the metrics per grid point, and the
runs that failed. Runs the store holds completed are skipped and runs with a checkpoint resume
from it, so a sweep that was stopped continues where it stopped. Does not own executing a run
(`lifelong.run.execution`), where runs execute (`lifelong.run.executors`) or storing.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev

from lifelong.errors import ConfigError
from lifelong.experiments.base import Outcome
from lifelong.run.executors import Executor
from lifelong.run.planning import Plan, RunSpec, plan
from lifelong.run.runner import Failure, check_out, execute_runs
from lifelong.store import Store

METRICS = ("acc", "bwt", "fwt", "forgetting")


def split_values(text: str) -> list[str]:
    """``a,b,[1,2]`` → ``["a", "b", "[1,2]"]``: commas inside brackets belong to a value."""
    out, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    return [v.strip() for v in [*out, current] if v.strip()]


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["strategy.strength=1,10"]`` → ``[("strategy.strength", ["1", "10"])]``."""
    grid: list[tuple[str, list[str]]] = []
    problems: list[str] = []
    for item in items:
        key, sep, raw = item.partition("=")
        values = split_values(raw)
        if not sep or not key.strip() or not values:
            problems.append(f"--grid {item!r}: expected key=v1,v2,..., e.g. --grid "
                            "strategy.strength=1,10,100")
        elif key.strip() in [k for k, _ in grid]:
            problems.append(f"--grid {key.strip()} is given twice; list all its values once")
        else:
            grid.append((key.strip(), values))
    if problems:
        raise ConfigError(problems)
    return grid


def parse_seeds(text: str) -> list[int]:
    """``0-4`` → 0..4; ``0,2,5``; ``0-2,7``."""
    seeds: list[int] = []
    for part in split_values(text):
        lo, dash, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if dash and lo else [int(part)]
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: expected N, N-M or a comma list of them, "
                              "e.g. --seeds 0-4") from None
    return list(dict.fromkeys(seeds))


@dataclass(frozen=True, slots=True)
class Sweep:
    """The runs of a sweep (unique, each labelled with its grid point) and its experiment."""

    plan: Plan  # the first grid point's plan: the experiment and its options
    runs: tuple[RunSpec, ...]
    grid: tuple[tuple[str, tuple[str, ...]], ...]


def plan_sweep(target: str, grid: Sequence[tuple[str, Sequence[str]]], *,
               sets: Sequence[str] = (), seeds: Sequence[int] | None = None,
               quick: bool = False) -> Sweep:
    """Every point of `grid` as a plan (`lifelong.run.planning.plan`) and their runs, at once.

    Raises:
        ConfigError: every problem of every grid point, each named by its point.
    """
    from lifelong.strategies import STRATEGIES

    keys = [k for k, _ in grid]
    plans: list[tuple[Plan, dict[str, str]]] = []
    problems: list[str] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for values in itertools.product(*(v for _, v in grid)):
        point = dict(zip(keys, values, strict=True))
        name = point.get("strategy.name")
        # An option the chosen strategy lacks does not apply to it.
        if name is not None and name in STRATEGIES:
            accepted = {o.name for o in STRATEGIES.options(name)}
            point = {k: v for k, v in point.items() if not (
                k.startswith("strategy.") and k != "strategy.name"
                and k.split(".", 1)[1] not in accepted)}
        if (frozen := tuple(sorted(point.items()))) in seen:
            continue
        seen.add(frozen)
        try:
            plans.append((plan(target, sets=[*sets, *(f"{k}={v}" for k, v in point.items())],
                               seeds=seeds, quick=quick), point))
        except ConfigError as e:
            where = ", ".join(f"{k}={v}" for k, v in point.items()) or "the base config"
            problems += [f"{where}: {p}" for p in e.problems]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    runs: dict[str, RunSpec] = {}
    for p, point in plans:
        shown = [f"{k.removeprefix('strategy.')}={v}" for k, v in point.items()
                 if k != "strategy.name"]
        for spec in p.runs:
            label = " ".join([spec.label or spec.strategy,
                              *(s for s in shown if s not in (spec.label or "").split())])
            runs.setdefault(spec.run_id, dataclasses.replace(spec, label=label))
    return Sweep(plans[0][0], tuple(runs.values()),
                 tuple((k, tuple(v)) for k, v in grid))


@dataclass(frozen=True, slots=True)
class SweepResult:
    outcomes: tuple[Outcome, ...]
    failures: tuple[Failure, ...]
    reused: int


def run_sweep(sweep: Sweep, *, store_path: str | Path, out_dir: str | Path,
              executor: Executor, progress: bool | None = None, rerun: bool = False,
              keep_checkpoints: bool = False, imports: Sequence[str] = (),
              loggers: Sequence[tuple[str, str | None]] = (),
              vectorize: bool = True) -> SweepResult:
    """Execute the sweep's runs (skipping what the store holds, resuming from checkpoints),
    going on past runs that diverge or fail; they are recorded failed with their error."""
    from tqdm import tqdm

    out = Path(out_dir)
    check_out(out)
    reused = 0
    with Store(store_path) as store, tqdm(total=len(sweep.runs), unit="run", desc="sweep",
                                          disable=None if progress is None else not progress,
                                          dynamic_ncols=True) as bar:
        def tick(run_id: str, was_stored: bool) -> None:
            nonlocal reused
            reused += was_stored
            bar.update(1)

        outcomes, failures = execute_runs(
            sweep.plan.experiment, sweep.runs, store=store, out=out, executor=executor,
            progress=False, rerun=rerun, resume=True, keep_checkpoints=keep_checkpoints,
            tolerate=True, imports=imports, loggers=loggers, vectorize=vectorize,
            on_result=tick)
    return SweepResult(tuple(outcomes), tuple(failures), reused)


def summarize(result: SweepResult) -> list[dict[str, object]]:
    """Per grid point (label and stream): seeds, and mean ± std of each metric over them
    (std is NaN for one seed); diverged runs are counted, not averaged."""
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in result.outcomes:
        groups.setdefault((o.label, str(o.config["stream"]["name"])), []).append(o)
    rows: list[dict[str, object]] = []
    for (label, stream), runs in groups.items():
        ok = [o for o in runs if o.error is None]
        row: dict[str, object] = {"label": label, "stream": stream, "seeds": len(ok),
                                  "diverged": len(runs) - len(ok)}
        for m in METRICS:
            values = [o.result.metrics[m] for o in ok if not math.isnan(o.result.metrics[m])]
            row[m] = fmean(values) if values else math.nan
            row[f"{m}_std"] = stdev(values) if len(values) > 1 else math.nan
        rows.append(row)
    return rows


def format_summary(rows: Sequence[dict[str, object]], failures: Sequence[Failure]) -> str:
    def cell(mean: object, std: object) -> str:
        m, s = float(str(mean)), float(str(std))
        if math.isnan(m):
            return f"{'-':>15s}"
        return f"{m:7.3f} ± {s:5.3f}" if not math.isnan(s) else f"{m:7.3f}        "

    width = max([len(str(r["label"])) for r in rows] + [10])
    lines = [f"{'run':{width}s} {'stream':10s} {'seeds':>5s} "
             + " ".join(f"{m:>15s}" for m in METRICS)]
    for r in rows:
        note = f"  ({r['diverged']} diverged)" if r["diverged"] else ""
        lines.append(f"{str(r['label']):{width}s} {str(r['stream']):10s} {r['seeds']:>5} "
                     + " ".join(cell(r[m], r[f"{m}_std"]) for m in METRICS) + note)
    if failures:
        lines.append(f"\n{len(failures)} run(s) failed:")
        lines += [f"  {f.run_id[:12]} {f.label} seed {f.seed}: {f.error}" for f in failures]
    return "\n".join(lines)
