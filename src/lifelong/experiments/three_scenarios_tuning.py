"""`three-scenarios-tuning`: choose each method's values for `three-scenarios` as Hsu et al.
tuned theirs (2018, "Re-evaluating continual learning scenarios"): per method and per scenario,
a grid, scored on a validation split of the training data, never on the test set.

Owns the grids (`GRID`, keyed by the row labels of `three_scenarios.ROWS`), the choice (the
highest validation ACC, mean over seeds; a tie goes to the first value in grid order) and the
data file it writes atomically: the chosen option set of every row and scenario, with the grid,
every value's validation score, the protocol and the command. By default the file is the one
`three-scenarios` ships and reads (``options.write=package``); ``options.write=PATH`` writes
elsewhere, ``out`` into the run's output folder (what `--quick` does, so a quick try never
replaces the shipped choice). Does not own the protocol (`three_scenarios.protocol_defaults`).

Every stream holds out 10% of each task's training images (`stream.validation`, drawn from the
task's key) and scores on them (`stream.evaluate_on=validation`); the test images are never
read. The grids hold, for each penalty, the values the authors' scripts chose in the three
scenarios (GT-RIPL/Continual-Learning-Benchmark, `scripts/split_MNIST_incremental_*.sh`,
`--reg_coef`), doubled for our strength/2 convention, plus one below where they coincide, and
one more beyond the edge a first tuning chose (at task-IL); LwF is not in their scripts and
gets its distillation weight around our default.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from lifelong.errors import ConfigError
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Row
from lifelong.experiments.three_scenarios import (
    ROWS,
    RowSpec,
    protocol_defaults,
    quick_overrides,
    scenario_problems,
    shipped_path,
    split_streams,
)
from lifelong.io import atomic_write_json
from lifelong.metrics import summary

COMMAND = "lifelong run three-scenarios-tuning --threads 1"
# Row label → option → values (ours = 2 x their reg_coef: task / domain / class choices).
GRID: dict[str, dict[str, list[Any]]] = {
    "l2": {"strength": [0.002, 0.02, 1.0, 200.0]},  # their 0.01 / 0.5 / 100
    "ewc": {"strength": [20.0, 200.0, 1200.0, 6000.0]},  # their 100 / 100 / 600
    "online ewc": {"strength": [200.0, 800.0, 1400.0, 6000.0]},  # their 400 / 700 / 100
    "si": {"strength": [100.0, 600.0, 1200.0, 6000.0]},  # their 300 / 3000 / 600
    "mas": {"strength": [2.0, 200.0, 20000.0]},  # their 1 / 10000 / 1
    "lwf": {"strength": [0.5, 1.0, 2.0, 4.0]},  # not in their scripts
}
QUICK_GRID: dict[str, dict[str, list[Any]]] = {
    "l2": {"strength": [0.02, 200.0]}, "ewc": {"strength": [20.0, 1200.0]}}
GRIDS = {"hsu": GRID, "quick": QUICK_GRID}  # options.grid names one, or is a grid itself


def grid_of(option: Any) -> dict[str, dict[str, list[Any]]]:
    """`options.grid` as a grid: a preset's name (`GRIDS`) or ``{row: {option: [values]}}``."""
    grid: dict[str, dict[str, list[Any]]] = (
        GRIDS[option] if isinstance(option, str) and option in GRIDS else option)
    return grid


def _spec(label: str) -> RowSpec:
    return next(r for r in ROWS if r.label == label)


def _points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The grid's option sets in grid order (the first option varies slowest)."""
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def _point_label(row: str, point: dict[str, Any]) -> str:
    return " ".join([row, *(f"{k}={v}" for k, v in point.items())])


def choose(outcomes: Sequence[Outcome], grid: dict[str, dict[str, list[Any]]]
           ) -> dict[str, dict[str, dict[str, Any]]]:
    """For each gridded row and scenario: every grid point's validation ACC (mean over
    seeds) and the chosen option set (the row's options with the best point; ties go to the
    earliest point), as written to the data file."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for o in outcomes:
        acc[(o.label, o.config["stream"]["scenario"])].append(summary(o.result.matrix)["acc"])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row, row_grid in grid.items():
        for scenario in dict.fromkeys(s for (_, s) in acc):
            scores: list[dict[str, Any]] = [{"options": p, "validation_acc": fmean(acc[key])}
                      for p in _points(row_grid)
                      if (key := (_point_label(row, p), scenario)) in acc]
            if not scores:
                continue
            best = max(scores, key=lambda s: s["validation_acc"])  # max keeps the first
            spec = _spec(row)
            out.setdefault(row, {})[scenario] = {
                "strategy": spec.strategy, "train": dict(spec.train),
                "chosen": {**spec.options, **best["options"]}, "scores": scores}
    return out


@EXPERIMENTS.register("three-scenarios-tuning")
class ThreeScenariosTuning(Experiment):
    name = "three-scenarios-tuning"
    summary = ("choose three-scenarios' per-method, per-scenario values on a validation split "
               "of the training data (never the test set), as Hsu et al. 2018 tuned theirs; "
               "writes the data file three-scenarios reads")
    options = {"scenarios": ["task", "domain", "class"], "grid": "hsu", "write": "package"}
    protocol_note = ("scores are validation ACC (10% of each task's training images held out "
                     "by the task's key); the test images are not read")

    # Those of the default grid; a smaller grid (`--quick`) leaves the others without rows.
    strategies = tuple(dict.fromkeys(r.strategy for r in ROWS if r.label in GRID))

    def defaults(self) -> dict[str, Any]:
        config = protocol_defaults()
        config["stream"] = {**config["stream"], "validation": 0.1,
                            "evaluate_on": "validation"}
        return {**config, "options": dict(self.options)}

    def quick(self) -> dict[str, Any]:
        return {**quick_overrides(), "options": {"grid": "quick", "write": "out"}}

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        stream = config.get("stream", {})
        if stream.get("evaluate_on") != "validation" or not stream.get("validation"):
            raise ConfigError("three-scenarios-tuning scores on a validation split only: "
                              "stream.validation must be > 0 and stream.evaluate_on="
                              f"validation (got {stream.get('validation')!r}, "
                              f"{stream.get('evaluate_on')!r})")
        return split_streams(config, config.get("options", {}).get(
            "scenarios", self.options["scenarios"]))

    def check_options(self, options: dict[str, Any]) -> list[str]:
        problems = scenario_problems(options.get("scenarios"))
        grid = grid_of(options.get("grid"))
        labels = {r.label for r in ROWS}
        if not isinstance(grid, dict) or not grid or any(
                r not in labels or not isinstance(g, dict) or not g
                or any(not isinstance(v, list) or not v for v in g.values())
                for r, g in grid.items()):
            problems.append(f"options.grid={grid!r} must name a grid ({', '.join(GRIDS)}) or "
                            f"map rows of three-scenarios ({', '.join(sorted(labels))}) to "
                            "{option: [values]}")
        if not isinstance(options.get("write"), str) or not options["write"]:
            problems.append("options.write must be 'package' (the shipped file), 'out' (the "
                            "output folder) or a path")
        return problems

    def rows(self, name: str, stream: dict[str, Any], options: dict[str, Any],
             experiment_options: dict[str, Any]) -> list[Row]:
        """One row per grid point of each gridded row of `name`: its options, the user's,
        then the point (the grid wins: it is what is tuned)."""
        grid = grid_of(experiment_options["grid"])
        return [Row(_point_label(label, p), {**_spec(label).options, **options, **p},
                    dict(_spec(label).train))
                for label, row_grid in grid.items() if _spec(label).strategy == name
                for p in _points(row_grid)]

    def runs_on(self, strategy: str, stream: dict[str, Any]) -> bool:
        from lifelong.strategies import STRATEGIES

        return stream.get("scenario") in STRATEGIES.get(strategy).card.scenarios

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        chosen = choose(outcomes, grid_of(options["grid"]))
        first = outcomes[0].config if outcomes else {}
        data = {
            "about": "three-scenarios' per-method, per-scenario values, chosen by validation "
                     "ACC (the test set was not read); written by three-scenarios-tuning",
            "command": COMMAND,
            "protocol": {"stream": {k: v for k, v in first.get("stream", {}).items()
                                    if k != "scenario"},
                         **{k: first.get(k) for k in ("model", "train")}},
            "seeds": sorted({o.seed for o in outcomes}),
            "grid": grid_of(options["grid"]),
            "rows": chosen,
        }
        write = str(options.get("write", "package"))
        target = (shipped_path() if write == "package"
                  else out_dir / "three_scenarios.json" if write == "out" else Path(write))
        atomic_write_json(target, data)
        lines = [f"{'row':12s} {'scenario':8s} {'grid point':28s} {'validation ACC':>14s}"]
        for row, by in chosen.items():
            for scenario, entry in by.items():
                for s in entry["scores"]:
                    point = " ".join(f"{k}={v}" for k, v in s["options"].items())
                    mark = " <- chosen" if all(entry["chosen"].get(k) == v
                                               for k, v in s["options"].items()) else ""
                    lines.append(f"{row:12s} {scenario:8s} {point:28s} "
                                 f"{s['validation_acc']:14.4f}{mark}")
        lines.append(f"written: {target}")
        return "\n".join(lines), []
