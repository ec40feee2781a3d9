"""The reproduction score: every published number an experiment declares, beside ours.

Owns `ScoreRow` (one reference: published, ours ± std over seeds, the gap in points, pass or
miss, and its source), `score_rows` (an experiment's rows from its finished runs, the one
computation the command line and the HTML report share), `format_scores` and `tally`. Does
not own running the experiments (`lifelong.run.reproduce`), their protocols or references
(`lifelong.experiments`), or the page (`lifelong.report.page`).

A row passes when ours lies within the reference's `tolerance` of the published value (2
points by default: percentage points of an accuracy, or of an error given in %). A reference
of kind ``"baseline"`` is a number measured here or by a third party, not a paper's: it is
scored the same way (a check that our runs still match it) but never counted among the
published numbers reproduced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import stdev
from typing import Literal

from lifelong.experiments.base import Experiment, Outcome

Verdict = Literal["pass", "miss", "not run"]


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One reference of one experiment, scored.

    Attributes:
        experiment: the experiment's name.
        label: what is measured.
        published: the reference's value.
        ours: our mean over the runs, or None where nothing was run for it.
        std: the sample std of ours over seeds, or None (one seed, or not a per-seed number).
        seeds: how many seeds ours is taken over.
        gap: ours − published in points (×100 for a fraction), or None.
        verdict: ``"pass"`` within the tolerance, ``"miss"`` outside it, ``"not run"``.
        kind: ``"published"`` or ``"baseline"`` (see `lifelong.experiments.base.Reference`).
        source: where the number was read.
        tolerance: the pass band, in points.
    """

    experiment: str
    label: str
    published: float
    ours: float | None
    std: float | None
    seeds: int
    gap: float | None
    verdict: Verdict
    kind: str
    source: str
    tolerance: float


def score_rows(experiment: Experiment, outcomes: Sequence[Outcome]) -> list[ScoreRow]:
    """The experiment's references scored against `outcomes` (its finished runs).

    Ours is `Experiment.ours` over all the runs; its std is the sample std of
    `Experiment.ours` computed on each seed's runs alone, where the experiment's numbers are
    per seed (`Experiment.spread_over_seeds`) and at least two seeds ran.
    """
    done = [o for o in outcomes if o.error is None]
    ours = experiment.ours(done) if done else {}
    by_seed: dict[int, list[Outcome]] = defaultdict(list)
    for o in done:
        by_seed[o.seed].append(o)
    per_seed: dict[str, list[float]] = defaultdict(list)
    if experiment.spread_over_seeds and len(by_seed) > 1:
        for runs in by_seed.values():
            for key, value in experiment.ours(runs).items():
                per_seed[key].append(value)
    rows = []
    for ref in experiment.references:
        mine = ours.get(ref.ours) if ref.ours else None
        spread = per_seed.get(ref.ours or "", [])
        std = stdev(spread) if len(spread) > 1 else None
        if mine is None or mine != mine:  # not run here, or NaN
            rows.append(ScoreRow(experiment.name, ref.label, ref.value, None, None, 0, None,
                                 "not run", ref.kind, ref.source, ref.tolerance))
            continue
        gap = ref.points(mine)
        verdict: Verdict = "pass" if abs(gap) <= ref.tolerance + 1e-9 else "miss"
        rows.append(ScoreRow(experiment.name, ref.label, ref.value, mine, std,
                             len(spread) or len(by_seed), gap, verdict, ref.kind,
                             ref.source, ref.tolerance))
    return rows


def format_scores(rows: Sequence[ScoreRow], *, width: int = 48) -> str:
    """The score as a text table, then a one-line tally of the published rows."""
    head = (f"{'experiment':18s} {'row':{width}s} {'published':>9s} {'ours ± std':>15s} "
            f"{'gap':>6s} {'':5s} source")
    lines = [head]
    for r in rows:
        ours = "-" if r.ours is None else (f"{r.ours:.3f}" + (f" ± {r.std:.3f}"
                                                              if r.std is not None else ""))
        gap = "-" if r.gap is None else f"{r.gap:+.1f}"
        mark = {"pass": "pass", "miss": "MISS", "not run": "-"}[r.verdict]
        source = ("baseline measured here or re-run, not published: " if r.kind == "baseline"
                  else "") + r.source
        label = r.label if len(r.label) <= width else r.label[:width - 1] + "…"
        lines.append(f"{r.experiment:18s} {label:{width}s} {r.published:9.3f} {ours:>15s} "
                     f"{gap:>6s} {mark:5s} {source}")
    lines.append(tally(rows))
    return "\n".join(lines)


def tally(rows: Sequence[ScoreRow]) -> str:
    """How many published rows pass, miss and were not run (baselines apart)."""
    pub = [r for r in rows if r.kind == "published"]
    count = {v: sum(r.verdict == v for r in pub) for v in ("pass", "miss", "not run")}
    base = [r for r in rows if r.kind == "baseline"]
    return (f"published numbers: {count['pass']} of {len(pub)} within their tolerance, "
            f"{count['miss']} missed, {count['not run']} not run"
            + (f"; {sum(r.verdict == 'pass' for r in base)} of {len(base)} baselines "
               "matched" if base else ""))
