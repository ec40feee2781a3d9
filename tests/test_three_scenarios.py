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
from lifelong.experiments.three_scenarios import ROWS
from lifelong.run.runner import plan
from lifelong.strategies import STRATEGIES


def quick_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, strategies: str
               ) -> dict[str, Any]:
    """`run three-scenarios --quick --json` for `strategies`, parsed (exit code 0)."""
    code = main(["run", "three-scenarios", "--quick", "--strategies", strategies, "--json",
                 "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_plan_runs_every_row_and_every_registered_strategy_where_it_applies() -> None:
    p = plan("three-scenarios", quick=True)
    expected = set(STRATEGIES.names())
    assert {r.strategy for r in p.runs} == expected and {"naive", "joint", "icarl"} <= expected
    labels = {r.label for r in p.runs}
    assert {row.label for row in ROWS if row.strategy in expected} <= labels
    assert [r.label for r in p.runs[:2]] == ["naive", "naive sgd"]
    pairs = {(n, s) for n in expected for s in SCENARIOS if s in STRATEGIES.get(n).card.scenarios}
    assert {(r.strategy, r.config["stream"]["scenario"]) for r in p.runs} == pairs
    assert ("icarl", "class") in pairs and ("icarl", "task") not in pairs
    assert len(p.runs) == len({r.run_id for r in p.runs})
    assert {r.config["stream"]["source"] for r in p.runs} == {"digits"}


def test_a_row_carries_its_own_optimizer_and_options() -> None:
    p = plan("three-scenarios", sets=["options.scenarios=[task]"],
             strategies=["naive", "ewc", "gem"])
    by = {r.label: r.config for r in p.runs}
    assert set(by) == {"naive", "naive sgd", "ewc", "online ewc", "gem"}
    assert (by["naive"]["train"]["optimizer"], by["naive"]["train"]["lr"]) == ("adam", 0.001)
    assert (by["naive sgd"]["train"]["optimizer"], by["naive sgd"]["train"]["lr"]) == ("sgd", 0.01)
    assert by["gem"]["train"]["optimizer"] == "sgd"
    assert by["naive sgd"]["train"]["batch_size"] == 128 and by["naive sgd"]["train"]["epochs"] == 4
    assert by["online ewc"]["strategy"]["online"] and not by["ewc"]["strategy"]["online"]
    assert by["ewc"]["strategy"]["step"] == "gradient"  # Adam: the paper's gradient step
    assert by["naive"]["stream"]["source"] == "mnist"
    assert by["naive"]["model"]["hidden"] == [400, 400]


def _tuning_file(path: Path, ewc: dict[str, float]) -> Path:
    path.write_text(json.dumps({"rows": {"ewc": {
        s: {"chosen": {"strength": v, "step": "gradient", "online": False}, "scores": []}
        for s, v in ewc.items()}}}))
    return path


def test_tuned_values_apply_per_scenario_and_a_set_option_wins(tmp_path: Path) -> None:
    f = _tuning_file(tmp_path / "t.json", {"task": 7.0, "class": 9.0})
    p = plan("three-scenarios", quick=True, strategies=["ewc"], sets=[f"options.tuned={f}"])
    got = {(r.label, r.config["stream"]["scenario"]): r.config["strategy"]["strength"]
           for r in p.runs}
    online = next(row for row in ROWS if row.label == "online ewc").options["strength"]
    assert got == {("ewc", "task"): 7.0, ("ewc", "class"): 9.0,
                   ("ewc", "domain"): next(r for r in ROWS if r.label == "ewc").options[
                       "strength"],
                   **{("online ewc", s): online for s in SCENARIOS}}
    p = plan("three-scenarios", quick=True, strategies=["ewc"],
             sets=[f"options.tuned={f}", "strategies.ewc.strength=3"])
    assert {r.config["strategy"]["strength"] for r in p.runs} == {3.0}
    with pytest.raises(ConfigError, match="options.tuned"):
        plan("three-scenarios", quick=True, sets=[f"options.tuned={tmp_path / 'no.json'}"])


def test_a_method_for_some_scenarios_fills_its_cells_and_the_others_read_n_a(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = quick_json(capsys, tmp_path, "naive,icarl")
    assert sorted((r["label"], r["scenario"]) for r in doc["runs"]) == sorted(
        [(n, s) for n in ("naive", "naive sgd") for s in SCENARIOS] + [("icarl", "class")])
    icarl = next(line for line in doc["table"].splitlines() if line.startswith("icarl"))
    assert icarl.split()[1:3] == ["—", "—"] and float(icarl.split()[3]) > 0.5


def test_a_strategy_asked_for_a_scenario_it_does_not_support_is_refused_at_plan() -> None:
    with pytest.raises(ConfigError, match=r"'icarl' does not support the domain-incremental "
                       r"scenario \(it supports: class\), which stream 'permuted'"):
        plan("gem-table", quick=True, strategies=["icarl"])
    assert main(["run", "single", "--quick", "--set", "stream.name=split",
                 "--set", "strategy.name=icarl"]) == 2  # split is task-IL by default


def test_default_source_and_overrides_reach_every_scenario() -> None:
    assert {r.config["stream"]["source"] for r in plan("three-scenarios").runs} == {"mnist"}
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
        acc[run["label"], run["scenario"]] = run["acc"]

    assert {lb for lb, _ in acc} == {"naive", "naive sgd", "ewc", "online ewc", "er",
                                        "er 4400"}
    assert len(doc["runs"]) == 18
    table = doc["table"].split("\n\n")[0].splitlines()
    rows = {line[:12].strip(): line for line in table[1:]}
    assert set(rows) == {lb for lb, _ in acc}
    assert f"{acc['er', 'class']:.3f}" in rows["er"]
    refs = {r["label"]: r for r in doc["references"]}
    assert refs["EWC ACC, split MNIST, class-IL"]["published"] == 0.198
    assert refs["EWC ACC, split MNIST, class-IL"]["ours"] == pytest.approx(
        acc["ewc", "class"])
    assert refs["SGD ACC, split MNIST, task-IL"]["ours"] == pytest.approx(
        acc["naive sgd", "task"])
    assert refs["GEM ACC, split MNIST, task-IL"]["ours"] is None  # gem did not run
    # the gap to each published number, and where the tuned values came from
    gap = next(line for line in doc["table"].splitlines() if line.startswith("ewc (EWC)")
               and " class " in line)
    assert gap.endswith(" pass") or " miss  why: " in gap  # a miss says why, or that it is unknown
    assert "tuned values: " in doc["table"] and "three_scenarios.json" in doc["table"]
    assert "validation split" in doc["protocol_note"]
    assert any(Path(f).name == "three_scenarios.png" and Path(f).stat().st_size > 0
               for f in doc["figures"])
    # The shape: in class-IL naive and a regularizer stay near chance (1/5 of the classes
    # learned last), replay is far above them.
    assert acc["naive", "class"] < 0.3 and acc["ewc", "class"] < 0.3
    assert acc["er", "class"] > acc["naive", "class"] + 0.15
    assert acc["ewc", "task"] > acc["ewc", "class"] + 0.5


def test_a_row_with_a_bad_option_or_train_setting_is_refused_at_plan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lifelong.experiments.base import Row
    from lifelong.experiments.three_scenarios import ThreeScenarios

    monkeypatch.setattr(ThreeScenarios, "rows", lambda self, *a: [
        Row("bad", {"strenght": 1.0}, {"optimizer": "rmsprop"})])
    with pytest.raises(ConfigError) as e:
        plan("three-scenarios", quick=True, strategies=["ewc"])
    text = str(e.value)
    assert "row 'bad'" in text and "strenght" in text and "rmsprop" in text
