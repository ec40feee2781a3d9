"""The `three-scenarios` experiment: every registered method in each of the three scenarios,
the table beside Hsu et al.'s numbers, the figure, and the shape (class-IL: regularizers at
chance, replay far above)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifelong.cli import main
from lifelong.data.task import SCENARIOS
from lifelong.errors import ConfigError
from lifelong.runner import plan
from lifelong.strategies import STRATEGIES, register_all


def quick_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, strategies: str
               ) -> dict[str, Any]:
    """`run three-scenarios --quick --json` for `strategies`, parsed (exit code 0)."""
    code = main(["run", "three-scenarios", "--quick", "--strategies", strategies, "--json",
                 "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_plan_runs_every_registered_strategy_in_each_scenario_it_supports() -> None:
    register_all()
    p = plan("three-scenarios", quick=True)
    expected = set(STRATEGIES.names())
    assert {r.strategy for r in p.runs} == expected and {"naive", "joint", "icarl"} <= expected
    assert [r.strategy for r in p.runs[:2]] == ["naive", "joint"]
    pairs = {(n, s) for n in expected for s in SCENARIOS if s in STRATEGIES.get(n).supports}
    assert {(r.strategy, r.config["stream"]["scenario"]) for r in p.runs} == pairs
    assert ("icarl", "class") in pairs and ("icarl", "task") not in pairs
    assert len(p.runs) == len(pairs) == len({r.run_id for r in p.runs})
    assert {r.config["stream"]["source"] for r in p.runs} == {"digits"}


def test_a_method_for_some_scenarios_fills_its_cells_and_the_others_read_n_a(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = quick_json(capsys, tmp_path, "naive,icarl")
    assert sorted((r["strategy"], r["scenario"]) for r in doc["runs"]) == sorted(
        [("naive", s) for s in SCENARIOS] + [("icarl", "class")])
    icarl = next(line for line in doc["table"].splitlines() if line.startswith("icarl"))
    assert icarl.split()[1:3] == ["—", "—"] and float(icarl.split()[3]) > 0.5


def test_a_strategy_asked_for_a_scenario_it_does_not_support_is_refused_at_plan() -> None:
    with pytest.raises(ConfigError, match=r"'icarl' does not support the domain-incremental "
                       r"scenario \(it supports: class\), which stream 'permuted'"):
        plan("gem-table", quick=True, strategies=["icarl"])
    assert main(["run", "single", "--quick", "--set", "stream.name=split",
                 "--set", "strategy.name=icarl"]) == 2  # split is task-IL by default


def test_default_source_and_overrides_reach_every_scenario() -> None:
    assert {r.config["stream"]["source"] for r in plan("three-scenarios").runs} == {"mnist-10k"}
    p = plan("three-scenarios", sets=["stream.source=fashion-mnist"], strategies=["naive"])
    assert {(r.config["stream"]["source"], r.config["stream"]["num_tasks"])
            for r in p.runs} == {("fashion-mnist", 5)}
    p = plan("three-scenarios", quick=True, sets=["options.scenarios=[class]"])
    assert {r.config["stream"]["scenario"] for r in p.runs} == {"class"}
    with pytest.raises(ConfigError, match="options.scenarios"):
        plan("three-scenarios", sets=["options.scenarios=[clas]"])


def test_quick_run_end_to_end_has_the_table_references_figure_and_shape(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = quick_json(capsys, tmp_path, "naive,ewc,er")
    acc: dict[tuple[str, str], float] = {}
    for run in doc["runs"]:  # every run says its scenario, and config.yaml agrees
        cfg = yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text())
        assert run["scenario"] == cfg["stream"]["scenario"]
        acc[run["strategy"], run["scenario"]] = run["acc"]
    assert set(acc) == {(n, s) for n in ("naive", "ewc", "er") for s in SCENARIOS}
    assert len(doc["runs"]) == 9
    rows = {line.split()[0]: line for line in doc["table"].splitlines()[1:]}
    assert set(rows) == {"naive", "ewc", "er"}
    assert f"{acc['er', 'class']:.3f}" in rows["er"]
    refs = {r["label"]: r for r in doc["references"]}
    assert refs["EWC ACC, split MNIST, class-IL"]["published"] == 0.198
    assert refs["EWC ACC, split MNIST, class-IL"]["ours"] == pytest.approx(acc["ewc", "class"])
    assert refs["GEM ACC, split MNIST, task-IL"]["ours"] is None  # gem did not run
    assert "mnist-10k" in doc["protocol_note"]
    assert any(Path(f).name == "three_scenarios.png" and Path(f).stat().st_size > 0
               for f in doc["figures"])
    # The shape: in class-IL naive and a regularizer stay near chance (1/5 of the classes
    # learned last), replay is far above them.
    assert acc["naive", "class"] < 0.3 and acc["ewc", "class"] < 0.3
    assert acc["er", "class"] > acc["naive", "class"] + 0.15
    assert acc["ewc", "task"] > acc["ewc", "class"] + 0.5
