"""The `strength-sweep` experiment: one labelled run per (strategy, value) through
`Experiment.strategy_variants`, diverged values recorded without stopping the sweep, grids
checked before any run, stored runs reused, and the choice = the highest ACC."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from lifelong.cli import main
from lifelong.config import short
from lifelong.errors import ConfigError
from lifelong.experiments.strength_sweep import DEFAULT_GRID, QUICK_GRID
from lifelong.run.runner import plan

SMALL = ["--set", "stream.train_per_task=100", "--set", "stream.test_per_task=100"]


def run_json(capsys: pytest.CaptureFixture[str], tmp: Path, *args: str) -> dict[str, Any]:
    rc = main(["run", "strength-sweep", "--quick", *SMALL, *args, "--json", "--store",
               str(tmp / "s.sqlite"), "--out", str(tmp), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    doc: dict[str, Any] = json.loads(out)  # exactly one JSON object on stdout
    return doc


def labels(grid: dict[str, dict[str, list[Any]]]) -> set[str]:
    """One label per combination of values; a label names the options that vary."""
    out = {"naive"}
    for s, opts in grid.items():
        keys = list(opts)
        for combo in itertools.product(*opts.values()):
            out.add(" ".join([s, *(f"{k}={short(v)}" for k, v in zip(keys, combo, strict=True)
                                   if len(opts[k]) > 1)]))
    return out


def test_plan_makes_one_labelled_run_per_value() -> None:
    p = plan("strength-sweep")
    assert {r.label for r in p.runs} == labels(DEFAULT_GRID)
    assert len(p.runs) == len(labels(DEFAULT_GRID)) == len({r.run_id for r in p.runs})
    ewc = {r.label: r.config["strategy"]["strength"] for r in p.runs if r.strategy == "ewc"}
    assert ewc["ewc strength=0.003"] == 0.003
    cfg = p.runs[0].config
    assert cfg["stream"]["source"] == "mnist-10k" and cfg["stream"]["num_tasks"] == 5
    assert cfg["train"]["batch_size"] == 10 and cfg["train"]["epochs"] == 1
    assert p.runs[0].seed not in (0, 1, 2)  # the benchmarks' seeds give the benchmarks' tasks
    # --strategies restricts what is swept; naive stays as the reference line. Several options
    # of one strategy make a grid; a repeated value is one run.
    p = plan("strength-sweep", quick=True, strategies=["ewc"],
             sets=["options.grid.ewc.strength=[1, 1.0, 10]",
                   "options.grid.ewc.online=[false, true]"])
    assert [r.label for r in p.runs] == [
        "naive", "ewc strength=1 online=false", "ewc strength=1 online=true",
        "ewc strength=10 online=false", "ewc strength=10 online=true"]
    # Experiments without variants keep one run per strategy, labelled by its name.
    assert all(r.label == r.strategy for r in plan("gem-table", quick=True).runs)


@pytest.mark.parametrize(("setting", "expected"), [
    ("options.grid.ewcc.strength=[1]", "unknown strategy 'ewcc' — did you mean 'ewc'?"),
    ("options.grid.ewc.strenght=[1]", "has no option 'strenght' — did you mean 'strength'?"),
    ("options.grid.ewc.strength=[1, big]", "strength='big' must be a number"),
    ("options.grid.si.strength=[-1]", "options.grid.si: strategy 'si': strength=-1 must be"),
    ("options.grid.ewc=100", "options.grid.ewc=100 must map option -> [values]"),
    ("options.grid=[1, 2]", "options.grid=[1, 2] must map strategy"),
])
def test_a_bad_grid_is_one_error_before_any_run(setting: str, expected: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="grid|strength") as e:
        plan("strength-sweep", quick=True, sets=[setting])
    assert any(expected in p for p in e.value.problems), e.value.problems
    rc = main(["run", "strength-sweep", "--quick", "--set", setting, "--json", "--store",
               str(tmp_path / "s.sqlite"), "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "s.sqlite").exists()  # nothing ran


def test_quick_sweep_reports_every_value_chooses_the_best_and_reuses_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, tmp_path)
    done = {r["label"]: r for r in doc["runs"]}
    assert set(done) | {d["label"] for d in doc["diverged"]} == labels(QUICK_GRID)
    table = doc["table"].splitlines()
    for label in labels(QUICK_GRID):  # one line per (strategy, value), and naive's
        assert sum(line.startswith(label + " ") for line in table) == 1, label
    figure = next(Path(f) for f in doc["figures"] if f.endswith("strength_sweep.png"))
    assert figure.stat().st_size > 0
    for strategy, opts in QUICK_GRID.items():
        key = next(iter(opts))  # the swept option; the others (the step) have one value
        scored = {lb: r["acc"] for lb, r in done.items() if lb.startswith(strategy + " ")}
        if not scored:
            continue
        best = max(scored, key=lambda lb: scored[lb])  # the first of a tie, in grid order
        assert [line.split("  ")[0] for line in table if "<- best ACC" in line
                and line.startswith(strategy + " ")] == [best]
        value = best.split("=")[1]
        assert any(line.startswith(f"  {strategy}: {key} = {value}")
                   and line.endswith(f"(ACC {scored[best]:.3f})") for line in table), table
    assert "not on the benchmark protocols" in doc["table"]

    again = run_json(capsys, tmp_path)
    assert all(r["reused"] for r in again["runs"])
    assert {r["run_id"] for r in again["runs"]} == {r["run_id"] for r in doc["runs"]}
    assert again["table"] == doc["table"]


def test_a_diverging_value_is_reported_and_the_sweep_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The papers' gradient step on a penalty this stiff overshoots at lr 0.1: NaN at task 2.
    doc = run_json(capsys, tmp_path, "--strategies", "l2",
                   "--set", "options.grid.l2.strength=[0.01, 1e8]")
    assert [r["label"] for r in doc["runs"]] == ["naive", "l2 strength=0.01"]
    (bad,) = doc["diverged"]
    assert bad["label"] == "l2 strength=1e+08" and bad["status"] == "diverged"
    assert "loss became" in bad["error"]
    line = next(ln for ln in doc["table"].splitlines() if ln.startswith("l2 strength=1e+08"))
    assert "diverged" in line and "best" not in line
    assert "  l2: strength = 0.01" in doc["table"]
    assert any(f.endswith("strength_sweep.png") for f in doc["figures"])
    assert main(["runs", "--store", str(tmp_path / "s.sqlite"), "--json"]) == 0
    stored = {r["run_id"]: r["status"] for r in json.loads(capsys.readouterr().out)["runs"]}
    assert stored[bad["run_id"]] == "failed"

    # Elsewhere a divergence still stops the experiment with the one clear error.
    rc = main(["run", "single", "--quick", "--set", "stream.train_per_task=100",
               "--set", "strategy.name=l2", "--set", "strategy.strength=1e8",
               "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path), "--no-progress"])
    assert rc == 2 and "loss became" in capsys.readouterr().err
