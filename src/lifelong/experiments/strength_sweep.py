"""`strength-sweep`: how each method's default is chosen — ACC, BWT and learning accuracy
against the penalty `strength` of L2, EWC, SI and MAS and GEM's `memory_strength`, on a
validation stream, with naive fine-tuning as the reference line.

Owns the sweep's defaults, its grid (option ``grid``: strategy → {option: [values]}, one run
per combination of values through `Experiment.strategy_variants`), the table (one line per
strategy and value, mean ± sample std over seeds, the best ACC marked), the statement of the
value chosen per strategy, and the figure (one panel per strategy: ACC and, dashed, BWT against
the value). Does not own the methods or their defaults: each strategy file states its own (and
should say when it was chosen here).

Why this stream: defaults chosen on a benchmark's own tasks would flatter us on that benchmark.
So the validation stream is permuted `mnist-10k` with 5 tasks of 1000 training examples (all
2000 test images), trained as GEM trains (MLP 2x100, plain SGD lr 0.1, batch 10, one pass), at
seed 100. Not seed 0: a permuted task's pixels and examples are drawn from the root seed and the
task's key (``permuted/mnist-10k/3``), so at seeds 0-2 these 5 tasks would be exactly the first
5 tasks of `gem-table` (which runs seeds 0, 1, 2), model initialisation included. At seed 100
every permutation and training subset differs. What remains shared is the pool of 2000 test
images (mnist-10k has no third split); a stricter check would test on held-out training images.

Divergence: a penalty stiffer than plain SGD can follow (lr · curvature > 2, see
`strategies/_penalty.py`) makes the loss NaN (`DivergenceError`). Here that is a result, not a
failure of the experiment (`continues_after_divergence`): the value is shown as diverged, left
out of the choice and marked on the figure; `lifelong run --json` lists it under "diverged" with
its error; the store keeps the run, failed, and a re-run trains it again (a failed run is never
reused). Any other option can be swept the same way, alone or with the strength (one run per
combination), e.g. ``--set 'options.grid.ewc.online=[false, true]'``.

How the library's defaults were chosen with it (the README's "Defaults" section has the
tables and the commands): this sweep at seeds 100-102 on three validation streams — permuted
as here in two training regimes (as here: one pass, batch 10, lr 0.1; and with ``--set
train.batch_size=128 --set train.lr=0.01 --set train.momentum=0.9 --set
stream.train_per_task=null``), and split Fashion-MNIST, task-incremental (5 tasks of 2000
examples, MLP 2x400, 4 epochs at batch 32) — taking per method, among the values that beat
naive on every stream, the one whose ACC gain over naive, averaged over the streams, is
largest. (The worst-case rule used before, the largest smallest gain, is decided by the
stream where every value's gain is within the seeds' spread, and picks values too weak to
act on split streams.) Permuted and split streams pull the importances' sizes far apart, so
one absolute strength cannot serve both; EWC, SI and MAS therefore normalise each task's
importance by its mean (``normalize``, see `strategies/_penalty.py`) and the grid below is of
relative strengths. The table's own "best" mark is the highest ACC of this one run; the rule
above is applied by hand across the three.

`--quick`: the embedded 8x8 digits, 3 tasks, three values per strategy: seconds of training.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, stdev
from typing import TYPE_CHECKING, Any

from lifelong.config import short
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome
from lifelong.metrics import acc, bwt, learning_accuracy
from lifelong.plots import new_figure, save

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_GRID: dict[str, dict[str, list[Any]]] = {
    "l2": {"strength": [0.001, 0.01, 0.1, 1.0]},
    # Relative strengths (each task's importance divided by its mean), at each method's
    # default step ('auto': proximal with plain SGD).
    "ewc": {"strength": [0.0003, 0.001, 0.003, 0.01, 0.03]},
    "si": {"strength": [0.001, 0.003, 0.01, 0.03, 0.1]},
    "mas": {"strength": [0.001, 0.003, 0.01, 0.03, 0.1]},
    "gem": {"memory_strength": [0.0, 0.5, 1.0]},
}
# Each entry replaces the default grid's options it names.
QUICK_GRID: dict[str, dict[str, list[Any]]] = {
    "l2": {"strength": [0.01, 1.0, 100.0]},
    "ewc": {"strength": [0.001, 0.1, 10.0]},
    "si": {"strength": [0.001, 0.1, 10.0]},
    "mas": {"strength": [0.001, 0.1, 10.0]},
    "gem": {"memory_strength": [0.0, 0.5, 1.0]},
}
VALIDATION_SEED = 100  # not 0-2: those seeds give the benchmarks' own tasks (see above)
METRICS = (("ACC", acc), ("BWT", bwt), ("LA", learning_accuracy))
EXAMPLE = "e.g. --set 'options.grid.ewc.strength=[1, 10, 100]'"


def _values(given: Any) -> list[Any]:
    """The values of one swept option: a list as given, a single value as a list of one."""
    return list(given) if isinstance(given, (list, tuple)) else [given]


@EXPERIMENTS.register("strength-sweep")
class StrengthSweep(Experiment):
    name = "strength-sweep"
    summary = ("choose method defaults: ACC/BWT against each penalty strength and GEM's "
               "memory_strength on a validation stream (permuted mnist-10k, 5 tasks); re-run "
               "it on yours with --set stream.source=...")
    strategies = ("naive", *DEFAULT_GRID)
    baselines = ("naive",)
    continues_after_divergence = True
    options = {"grid": DEFAULT_GRID}
    protocol_note = (
        "References: none — this is our own measurement, made to choose each method's default "
        "on a validation stream that is neither benchmark protocol (by default permuted "
        "mnist-10k, 5 tasks x 1000, seed 100, whose tasks differ from gem-table's and "
        "ewc-permuted's; MLP 2x100, plain SGD lr 0.1, batch 10, one pass; the line above names "
        "the stream this run used). Re-run it on your own stream and "
        "training to choose yours: lifelong run strength-sweep --set stream.source=fashion-"
        "mnist --set train.lr=0.05 --set 'options.grid.ewc.strength=[0.001, 0.01, 0.1]' "
        "--strategies ewc --seed 100,101,102")

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"name": "permuted", "source": "mnist-10k", "num_tasks": 5,
                       "train_per_task": 1000, "test_per_task": None},
            "model": {"name": "mlp", "hidden": [100, 100]},
            "strategies": {},
            "train": {"epochs": 1, "batch_size": 10, "optimizer": "sgd", "lr": 0.1},
            "options": {"grid": DEFAULT_GRID},
            "seed": VALIDATION_SEED,
        }

    def quick(self) -> dict[str, Any]:
        return {"stream": {"source": "digits", "num_tasks": 3},
                "strategies": {"gem": {"memory_size": 64}}, "options": {"grid": QUICK_GRID}}

    def check_options(self, options: dict[str, Any]) -> list[str]:
        from torch import nn

        from lifelong.errors import ConfigError
        from lifelong.strategies import STRATEGIES, build_strategy

        grid = options.get("grid")
        if not isinstance(grid, dict):
            return [f"options.grid={grid!r} must map strategy -> {{option: [values]}}; {EXAMPLE}"]
        problems = []
        for name, swept in grid.items():
            where = f"options.grid.{name}"
            if name not in STRATEGIES:
                problems.append(f"options.grid: {STRATEGIES.unknown(str(name))}")
            elif not isinstance(swept, dict) or not swept:
                problems.append(f"{where}={swept!r} must map option -> [values]; {EXAMPLE}")
            else:
                for key, given in swept.items():
                    if not _values(given):
                        problems.append(f"{where}.{key} is empty: give at least one value")
                    for value in _values(given):  # names, types and ranges, as for any option
                        found = STRATEGIES.check(name, {key: value}, where)
                        if not found:
                            try:
                                build_strategy(name, nn.Linear(1, 1), **{key: value})
                            except ConfigError as e:
                                found = e.problems
                        problems += [f"{where}: {p}" for p in found]
        return list(dict.fromkeys(problems))

    def strategy_variants(self, name: str, options: dict[str, Any],
                          experiment_options: dict[str, Any]) -> list[dict[str, Any]]:
        swept = {k: _values(v) for k, v in experiment_options["grid"].get(name, {}).items()}
        return [{**options, **dict(zip(swept, combo, strict=True))}
                for combo in itertools.product(*swept.values())] if swept else [dict(options)]

    # ------------------------------------------------------------------------- results
    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        grid: dict[str, dict[str, Any]] = options["grid"]
        # strategy -> point (the swept options' values) -> runs, one per seed, in run order
        points: dict[str, dict[tuple[Any, ...], list[Outcome]]] = {}
        for o in outcomes:
            keys = list(grid.get(o.strategy, {})) if o.strategy not in self.baselines else []
            point = tuple(o.config["strategy"][k] for k in keys)
            points.setdefault(o.strategy, {}).setdefault(point, []).append(o)
        seeds = len({o.seed for o in outcomes})
        stats = {s: {pt: _stats(runs) for pt, runs in by.items()} for s, by in points.items()}
        best = {s: pt for s, by in stats.items() if s in grid and s not in self.baselines
                if (pt := _best(by)) is not None}

        def label(s: str, pt: tuple[Any, ...]) -> str:
            # As the runs are labelled: by the options whose values differ in this sweep.
            keys = list(grid.get(s, {})) if pt else []
            return " ".join([s, *(f"{k}={short(v)}" for i, (k, v) in enumerate(zip(
                keys, pt, strict=True)) if len({p[i] for p in stats[s]}) > 1)])

        width = max(len(label(s, pt)) for s, by in stats.items() for pt in by)
        pm = " ± std" if seeds > 1 else ""
        lines = [f"{'strategy':{width}s} " + " ".join(f"{m + pm:>15s}" for m, _ in METRICS)]
        for s, by in stats.items():
            for pt, st in by.items():
                if not st:
                    runs = points[s][pt]
                    n = sum(o.error is not None for o in runs)
                    cells = f"{'diverged':>15s}" + (f" in {n} of {len(runs)} seeds"
                                                     if n < len(runs) else "")
                else:
                    cells = " ".join(f"{mu:+15.3f}" if seeds == 1 else f"{mu:+8.3f} ± {sd:.3f}"
                                     for mu, sd in st.values())
                mark = "  <- best ACC" if best.get(s) == pt else ""
                lines.append(f"{label(s, pt):{width}s} {cells}{mark}")
        lines.append("LA = accuracy on each task right after learning it (plasticity); "
                     "a value diverged where its loss became NaN in any seed")
        first = next((o for o in outcomes if o.error is None), outcomes[0])
        tasks = (len(first.result.matrix[0]) if first.result.matrix  # a split stream's count
                 else first.config["stream"].get("num_tasks", "?"))  # is not in its config
        where = (f"{first.result.stream}, {tasks} tasks,"
                 f" seed{'s' if seeds > 1 else ''} "
                 f"{', '.join(str(s) for s in sorted({o.seed for o in outcomes}))}")
        lines.append(f"chosen by the highest ACC on this validation stream ({where}), "
                     "not on the benchmark protocols:")
        for s in stats:
            if s in best:
                chosen = ", ".join(f"{k} = {short(v)}"
                                   for k, v in zip(grid[s], best[s], strict=True))
                lines.append(f"  {s}: {chosen} (ACC {stats[s][best[s]]['ACC'][0]:.3f})")
            elif s in grid and s not in self.baselines:
                lines.append(f"  {s}: every value diverged; none chosen")
        swept = [s for s in stats if s in grid and s not in self.baselines]
        if not swept:
            return "\n".join(lines), []
        cols = min(len(swept), 3)  # rows of three panels stay readable
        fig, axes = new_figure(cols, width=4.2, height=3.6, nrows=math.ceil(len(swept) / cols))
        for ax in axes[len(swept):]:
            ax.set_visible(False)
        reference = next(((b, st["ACC"][0]) for b in self.baselines if b in stats
                          for st in stats[b].values() if st), None)
        for ax, s in zip(axes, swept, strict=False):
            _panel(ax, s, list(grid[s]), stats[s], best.get(s), reference)
        fig.suptitle(f"{where}: ACC (solid) and BWT (dashed) against each swept value",
                     fontsize=9)
        return "\n".join(lines), [save(fig, out_dir / "strength_sweep.png")]


def _stats(runs: Sequence[Outcome]) -> dict[str, tuple[float, float]]:
    """Metric -> (mean, sample std) over seeds; empty where any seed diverged."""
    if any(o.error is not None for o in runs):
        return {}
    out = {}
    for m, fn in METRICS:
        values = [fn(o.result.matrix) for o in runs]
        out[m] = (fmean(values), stdev(values) if len(values) > 1 else 0.0)
    return out


def _best(stats: dict[tuple[Any, ...], dict[str, tuple[float, float]]]
          ) -> tuple[Any, ...] | None:
    """The point with the highest mean ACC among those that never diverged (the first of a
    tie, in grid order); None if every one diverged."""
    done = [pt for pt, st in stats.items() if st]
    return max(done, key=lambda pt: stats[pt]["ACC"][0]) if done else None


def _panel(ax: Axes, strategy: str, keys: list[str],
           stats: dict[tuple[Any, ...], dict[str, tuple[float, float]]],
           best: tuple[Any, ...] | None, reference: tuple[str, float] | None) -> None:
    """ACC and BWT against the first swept option; one pair of lines per combination of the
    others (if any); diverged values as red crosses on the zero line; the choice starred."""
    xs = list(dict.fromkeys(pt[0] for pt in stats))
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)

    def pos(x: Any) -> float:
        return float(x) if numeric else float(xs.index(x))

    series: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for pt in stats:
        series.setdefault(pt[1:], []).append(pt)
    for k, (rest, pts) in enumerate(series.items()):
        name = ", ".join(f"{key}={short(v)}" for key, v in zip(keys[1:], rest, strict=True))
        ok = sorted((pt for pt in pts if stats[pt]), key=lambda pt: pos(pt[0]))
        for m, style in (("ACC", "-"), ("BWT", "--")):
            ax.errorbar([pos(pt[0]) for pt in ok], [stats[pt][m][0] for pt in ok],
                        yerr=[stats[pt][m][1] for pt in ok], color=f"C{k}", linestyle=style,
                        marker="o" if m == "ACC" else "s", markersize=4, capsize=2,
                        label=f"{m} {name}".strip())
        bad = [pos(pt[0]) for pt in pts if not stats[pt]]
        if bad:
            ax.scatter(bad, [0.0] * len(bad), marker="x", color="red", s=60, zorder=3,
                       label="diverged" if k == 0 else None)
    if best is not None:
        ax.scatter([pos(best[0])], [stats[best]["ACC"][0]], marker="*", s=180, color="gold",
                   edgecolor="black", zorder=4, label="chosen")
    if reference is not None:  # naive's ACC: what a penalty must beat
        ax.axhline(reference[1], color="grey", linestyle=":", label=f"{reference[0]} ACC")
    ax.axhline(0.0, color="black", linewidth=0.6)
    if not numeric:
        ax.set_xticks(range(len(xs)), [short(x) for x in xs])
    elif all(x > 0 for x in xs):
        ax.set_xscale("log")
    else:
        # 0 (e.g. GEM's exact projection) has no place on a log axis: linear near 0, log beyond
        # the smallest positive value where the grid spans decades, linear otherwise.
        positive = [float(x) for x in xs if x > 0]
        if positive and max(positive) / min(positive) >= 100:
            ax.set_xscale("symlog", linthresh=min(positive))
    ax.set_xlabel(keys[0])
    ax.set_ylabel("ACC / BWT")
    lowest = min([0.0, *(st["BWT"][0] for st in stats.values() if st and
                         math.isfinite(st["BWT"][0]))])
    ax.set_ylim(lowest - 0.05, 1.02)
    ax.set_title(strategy)
    ax.legend(fontsize=7)
