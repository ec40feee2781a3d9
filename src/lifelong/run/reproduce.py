"""Reproducing the papers: every experiment that declares published numbers, at its paper's
protocol, into one store, scored (``lifelong reproduce``).

Owns choosing the experiments (`reproducible`), running them (`reproduce`) and what it returns
(`Reproduction`). Does not own the score (`lifelong.report.scores`) or running one plan
(`lifelong.run.runner`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifelong.experiments.base import Experiment
from lifelong.report.scores import ScoreRow, score_rows


def reproducible(names: Sequence[str] | None = None) -> list[Experiment]:
    """The registered experiments that declare references (or those named, checked)."""
    from lifelong.errors import ConfigError
    from lifelong.experiments import EXPERIMENTS, get_experiment

    if names:
        chosen = [get_experiment(n) for n in names]
        if empty := [e.name for e in chosen if not e.references]:
            raise ConfigError(f"reproduce: {', '.join(empty)} declare{'s' * (len(empty) == 1)}"
                              " no published numbers to reproduce; choose among "
                              f"{', '.join(e.name for e in reproducible())}")
        return chosen
    return [e for e in (EXPERIMENTS.get(n)() for n in EXPERIMENTS.names()) if e.references]


@dataclass(frozen=True, slots=True)
class Reproduction:
    """What `reproduce` returns: the rows, and each experiment's runs and figures."""

    rows: tuple[ScoreRow, ...]
    experiments: tuple[dict[str, Any], ...]


def reproduce(names: Sequence[str] | None = None, *, quick: bool = False,
              store_path: str | Path, out_dir: str | Path, progress: bool | None = None,
              rerun: bool = False, imports: Sequence[str] = (), vectorize: bool = True,
              on_experiment: Callable[[str], None] | None = None) -> Reproduction:
    """Run every experiment with references at its paper protocol into one store and score it.

    Each experiment runs at its defaults plus `Experiment.reproduce_sets`, over
    `Experiment.reproduce_seeds` (the first seed alone with `quick`). Runs the store holds
    completed by the same code are reused and runs stopped mid-stream continue from their
    checkpoints, so a stopped reproduction picks up where it stopped. Every plan is made
    (and every problem reported) before anything trains.
    """
    from lifelong.run.planning import plan
    from lifelong.run.runner import execute

    experiments = reproducible(names)
    plans = []
    for e in experiments:
        seeds = e.reproduce_seeds
        if quick and seeds:
            seeds = seeds[:1]
        plans.append(plan(e.name, sets=list(e.reproduce_sets), seeds=seeds, quick=quick))
    rows: list[ScoreRow] = []
    done: list[dict[str, Any]] = []
    for p in plans:
        if on_experiment:
            on_experiment(p.experiment.name)
        res = execute(p, store_path=store_path, out_dir=out_dir, progress=progress,
                      rerun=rerun, resume=True, imports=imports, vectorize=vectorize)
        rows += score_rows(p.experiment, res.outcomes)
        done.append({"experiment": p.experiment.name, "runs": len(res.outcomes),
                     "reused": sum(o.reused for o in res.outcomes),
                     "resumed": sum(o.resumed_tasks > 0 for o in res.outcomes),
                     "figures": [str(f) for f in res.figures],
                     "protocol_note": res.protocol_note})
    return Reproduction(tuple(rows), tuple(done))
