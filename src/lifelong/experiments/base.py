"""The experiment base: defaults, `--quick`, the strategies compared, published numbers and the
report (tables and figures).

Owns `Experiment`, `Reference` and `Outcome`. An experiment only describes what to run and how
to present it; `lifelong.run.runner` does the running, storing and printing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, ClassVar, Literal

from lifelong.callbacks import Callback
from lifelong.strategies.base import Strategy
from lifelong.train import RunResult


@dataclass(frozen=True, slots=True)
class Reference:
    """A published (or reference) number our result is compared with.

    Attributes:
        label: what is measured, e.g. ``"GEM ACC, MNIST permutations"``.
        value: the number.
        source: paper, table or figure, and protocol.
        ours: a key into our results that matches it (see `Experiment.ours`), or None.
        unit: ``"fraction"`` (an accuracy in [0, 1]) or ``"percent"`` (e.g. a test error
            in %): how a difference becomes points.
        tolerance: how many points ours may lie from `value` and still count as reproduced.
        kind: ``"published"`` (a paper's number, or its authors' released output) or
            ``"baseline"`` (a number measured by this project or a third party's re-run,
            never printed as published).
    """

    label: str
    value: float
    source: str
    ours: str | None = None
    unit: Literal["fraction", "percent"] = "fraction"
    tolerance: float = 2.0
    kind: Literal["published", "baseline"] = "published"

    def points(self, ours: float) -> float:
        """ours − value, in points (percentage points for a fraction)."""
        return (ours - self.value) * (100.0 if self.unit == "fraction" else 1.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished run of an experiment.

    `error` is set only where the run diverged in an experiment that goes on after divergence
    (`Experiment.continues_after_divergence`); then `result` is empty (no matrix, no metrics).
    """

    run_id: str
    strategy: str
    label: str  # how the strategy is named in tables (may carry options)
    seed: int
    config: dict[str, Any]
    result: RunResult
    run_dir: Path
    reused: bool = False  # taken from the store, not trained in this call
    error: str | None = None  # the DivergenceError's message, for a diverged run
    resumed_tasks: int = 0  # tasks taken from the run's checkpoint (a resumed run)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of an experiment's table: a strategy run with its own options and, where the
    row needs it, its own training settings (e.g. Hsu et al.'s "SGD" row is naive training
    with another optimizer; a tuned value per scenario).

    Attributes:
        label: how tables and `Experiment.ours` name the row, e.g. ``"naive sgd"``.
        options: the strategy's options (checked like ``strategies.NAME``).
        train: overrides of the ``train`` section for this row only.
    """

    label: str
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


def mean_acc(outcomes: Sequence[Outcome], key: Callable[[Outcome], str]) -> dict[str, float]:
    """ACC averaged over the runs that share a key (e.g. ``"dgr/split"`` over seeds), keyed
    ``key + "/acc"``: what `Experiment.ours` usually returns."""
    from lifelong.metrics import summary

    acc: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        acc[f"{key(o)}/acc"].append(summary(o.result.matrix)["acc"])
    return {k: fmean(v) for k, v in acc.items()}


class Experiment:
    """Base of registered experiments.

    Subclasses set `name`, `summary`, `strategies` (compared by default; empty means the
    config's ``strategy.name``), `references`, `protocol_note`, and override `defaults`,
    `quick`, `report` and, if they have their own options, `options` and `check_options`.
    """

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""
    strategies: ClassVar[tuple[str, ...]] = ()
    references: ClassVar[tuple[Reference, ...]] = ()
    protocol_note: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    # Whether a run already completed in the store may stand in for training it again. False
    # where `callbacks` record something the store does not keep (e.g. parameter paths).
    reuses_runs: ClassVar[bool] = True
    # Strategies that run even where `--strategies` or `--set strategy.name=` picks others:
    # the report's reference lines (e.g. `naive` under a sweep, `joint` as an upper bound).
    baselines: ClassVar[tuple[str, ...]] = ()
    # Whether a run whose loss becomes NaN is recorded (`Outcome.error`) and the experiment
    # goes on. False: the one `DivergenceError` stops it, which is the clear answer when a
    # protocol's fixed settings diverge; a sweep expects some of its values to.
    continues_after_divergence: ClassVar[bool] = False
    # `lifelong reproduce`: the seeds its score is measured over (None: the experiment's own,
    # e.g. one that picks the best of its runs), the `--set`s that select the paper's protocol
    # when it is not the default, and whether ours ± std is taken over seeds (False where a
    # number is a selection across seeds, like a best-of-N).
    reproduce_seeds: ClassVar[tuple[int, ...] | None] = (0, 1, 2)
    reproduce_sets: ClassVar[tuple[str, ...]] = ()
    spread_over_seeds: ClassVar[bool] = True

    def defaults(self) -> dict[str, Any]:
        """The full default config (sections stream, model, strategy(ies), train, seed)."""
        raise NotImplementedError

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream configs (name and options) every strategy runs on: by default the one
        ``stream`` section. An experiment that compares streams (e.g. `gem-table`: permuted
        and rotated) returns one per stream, each built from the ``stream`` section, so that
        ``--set stream.KEY=VALUE`` reaches every one."""
        return [dict(config.get("stream", {}))]

    def check_options(self, options: dict[str, Any]) -> list[str]:
        """Problems with the values of the experiment's own options (their names are checked
        by `lifelong.run.planning.plan`), as messages that name the option; empty if fine."""
        return []

    def strategy_variants(self, name: str, options: dict[str, Any],
                          experiment_options: dict[str, Any]) -> list[dict[str, Any]]:
        """The option sets strategy `name` runs with, one run each: by default the one set
        `options` (from ``strategies.NAME`` and ``strategy``). A sweep returns one per value
        (e.g. ``strength`` 1, 10, 100), each built on `options`; `plan` checks every one and
        labels each run by the options on which they differ."""
        return [dict(options)]

    def rows(self, name: str, stream: dict[str, Any], options: dict[str, Any],
             experiment_options: dict[str, Any]) -> list[Row] | None:
        """The rows strategy `name` fills on the stream config `stream`, one run each, given
        its configured `options`: None (the default) runs `strategy_variants`. An experiment
        whose rows differ per stream or in training settings returns them here; `plan`
        checks each row's options and training settings as it checks the config's."""
        return None

    def runs_on(self, strategy: str, stream: dict[str, Any]) -> bool:
        """Whether `strategy` runs on the stream config `stream` (with its builder's defaults,
        so ``stream["scenario"]`` is set). Default: every chosen strategy runs everywhere, and
        one that does not support a stream's scenario is a config error (`plan` names the
        scenarios it supports). An experiment that compares scenarios (`three-scenarios`)
        returns False where a method does not apply, so it runs where it can."""
        return True

    def quick(self) -> dict[str, Any]:
        """Overrides applied by `--quick` (must run in well under a minute on 2 cores)."""
        return {}

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        """Our numbers keyed like `Reference.ours`, to print beside the published ones."""
        return {}

    def callbacks(self, run_id: str, strategy: Strategy) -> list[Callback]:
        """Extra observers for one run (e.g. to record parameter trajectories); they may read
        `strategy.model` but must not change it."""
        return []

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        """A text table and the figures (written atomically under `out_dir`)."""
        return "", []
