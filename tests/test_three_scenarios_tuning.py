"""`three-scenarios-tuning`: the per-method, per-scenario choice on a validation split that
`three-scenarios` ships and reads. The quick grid's choice is what gets written and applied;
tuning never reads a test image; the shipped file is what its own scores choose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lifelong.cli import main
from lifelong.errors import ConfigError
from lifelong.experiments.three_scenarios import ROWS, shipped_path
from lifelong.experiments.three_scenarios_tuning import GRID, ThreeScenariosTuning, _points
from lifelong.run.runner import plan


def _check_choice(rows: dict[str, Any], grid: dict[str, Any]) -> None:
    """Each chosen option set is its row's options with the best-scoring grid point (the
    first of equals), and every grid point was scored."""
    base = {r.label: r.options for r in ROWS}
    for label, by in rows.items():
        for entry in by.values():
            scores = entry["scores"]
            assert [s["options"] for s in scores] == _points(grid[label])
            best = max(scores, key=lambda s: s["validation_acc"])
            assert entry["chosen"] == {**base[label], **best["options"]}


def test_quick_tuning_reads_no_test_image_and_three_scenarios_applies_its_choice(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        digits_without_test: None) -> None:
    target = tmp_path / "tuned.json"
    assert main(["run", "three-scenarios-tuning", "--quick", "--json", "--no-progress",
                 "--set", f"options.write={target}", "--store", str(tmp_path / "s.sqlite"),
                 "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["scenario"] for r in doc["runs"]} == {"task", "domain", "class"}
    assert {r["label"] for r in doc["runs"]} == {
        "l2 strength=0.02", "l2 strength=200.0", "ewc strength=20.0", "ewc strength=1200.0"}
    data = json.loads(target.read_text())
    assert data["protocol"]["stream"]["evaluate_on"] == "validation"
    assert data["protocol"]["stream"]["validation"] == 0.1
    _check_choice(data["rows"], data["grid"])
    # the scores are the runs' ACC on the validation split
    acc = {(r["label"], r["scenario"]): r["acc"] for r in doc["runs"]}
    for s in data["rows"]["l2"]["task"]["scores"]:
        assert s["validation_acc"] == acc[f"l2 strength={s['options']['strength']}", "task"]
    # three-scenarios runs each row at the value chosen for its scenario
    p = plan("three-scenarios", quick=True, strategies=["l2", "ewc"],
             sets=[f"options.tuned={target}"])
    for run in p.runs:
        chosen = data["rows"].get(run.label, {}).get(run.config["stream"]["scenario"])
        if chosen is not None:
            assert {k: run.config["strategy"][k] for k in chosen["chosen"]} == chosen["chosen"]
    assert {r.label for r in p.runs} >= {"l2", "ewc"}


def test_the_shipped_values_are_what_their_scores_choose_on_the_default_grid() -> None:
    data = json.loads(shipped_path().read_text())
    # every row tuned on the default grid (a row or scenario not yet tuned is absent: then
    # three-scenarios runs it at its options in ROWS)
    assert data["grid"] and all(g == GRID[row] for row, g in data["grid"].items())
    assert set(data["rows"]) <= set(data["grid"])
    _check_choice(data["rows"], data["grid"])
    tuning = plan("three-scenarios-tuning")
    assert data["protocol"]["stream"] == {
        k: v for k, v in tuning.runs[0].config["stream"].items() if k != "scenario"}
    assert data["protocol"]["train"] == tuning.runs[0].config["train"]
    assert data["protocol"]["model"] == tuning.runs[0].config["model"]
    assert data["protocol"]["stream"]["source"] == "mnist"


def test_tuning_refuses_to_score_on_the_test_set() -> None:
    with pytest.raises(ConfigError, match="validation split only"):
        plan("three-scenarios-tuning", quick=True, sets=["stream.evaluate_on=test"])
    with pytest.raises(ConfigError, match="options.grid"):
        plan("three-scenarios-tuning", quick=True, sets=["options.grid={nope: {a: [1]}}"])
    assert ThreeScenariosTuning.strategies == ("l2", "ewc", "si", "mas", "lwf")
