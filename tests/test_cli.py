"""The CLI contract: run/list/runs/show, --json shape, config errors with suggestions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lifelong.cli import main

SINGLE = ["run", "single", "--set", "stream.name=permuted", "--set", "stream.source=digits",
          "--set", "stream.num_tasks=3", "--set", "strategy.name=naive", "--quick",
          "--no-progress"]


def lifelong(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def where(tmp_path: Path) -> list[str]:
    return ["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "out")]


def test_run_single_json_contract(capsys, where, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = lifelong(capsys, *SINGLE, "--json", *where)
    assert code == 0
    doc = json.loads(out)  # exactly one JSON object
    assert doc["experiment"] == "single" and len(doc["runs"]) == 1
    run = doc["runs"][0]
    for key in ("run_id", "strategy", "stream", "seed", "matrix", "acc", "bwt", "fwt",
                "forgetting", "train_seconds", "eval_seconds"):
        assert key in run
    assert len(run["matrix"]) == 4 and all(len(r) == 3 for r in run["matrix"])
    assert run["warnings"] == [] and run["diagnostics"] == [{}, {}, {}]  # it learns: no warning
    assert run["acc"] == pytest.approx(sum(run["matrix"][-1]) / 3)
    run_dir = tmp_path / "out" / run["run_id"]
    assert (run_dir / "config.yaml").exists() and (run_dir / "matrix.json").exists()
    assert json.loads((run_dir / "matrix.json").read_text())["matrix"] == run["matrix"]
    assert all(Path(f).exists() for f in doc["figures"])

    code, out, _ = lifelong(capsys, "runs", "--store", where[1], "--json")
    assert code == 0 and json.loads(out)["runs"][0]["run_id"] == run["run_id"]
    code, out, _ = lifelong(capsys, "show", run["run_id"][:6], "--store", where[1])
    assert code == 0 and "after 3" in out


def test_same_config_and_seed_give_the_same_run_id(capsys, where) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for seed in ("0", "0", "1"):
        _, out, _ = lifelong(capsys, *SINGLE, "--json", "--seed", seed, *where)
        ids.append(json.loads(out)["runs"][0]["run_id"])
    assert ids[0] == ids[1] != ids[2]


def test_misspelt_key_gets_a_suggestion_and_exit_code_2(capsys, where) -> None:  # type: ignore[no-untyped-def]
    code, out, err = lifelong(capsys, *SINGLE, "--set", "train.epcohs=1", *where)
    assert code == 2 and out == ""
    assert "did you mean 'epochs'" in err and "Traceback" not in err


def test_every_problem_is_reported_at_once(capsys, where) -> None:  # type: ignore[no-untyped-def]
    code, _, err = lifelong(capsys, "run", "single", "--set", "stream.name=permuted",
                            "--set", "stream.num_task=3", "--set", "strategy.name=naiv",
                            "--set", "model.hiden=[10]", "--set", "trian.lr=1",
                            "--set", "stream.source=fashon-mnist", *where)
    assert code == 2
    for piece in ("did you mean 'num_tasks'", "did you mean 'naive'", "did you mean 'hidden'",
                  "did you mean 'train'", "did you mean 'fashion-mnist'"):
        assert piece in err


def test_unknown_experiment_is_suggested(capsys, where) -> None:  # type: ignore[no-untyped-def]
    code, _, err = lifelong(capsys, "run", "forgeting", *where)
    assert code == 2 and "did you mean 'forgetting'" in err


def test_yaml_config_file_and_strategies_flag(capsys, where, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("experiment: single\nstream: {name: split, source: digits, num_tasks: 2}\n"
                   "train: {epochs: 1}\n")
    code, out, err = lifelong(capsys, "run", str(cfg), "--strategies", "naive,joint", "--json",
                              "--no-progress", *where)
    assert code == 0, err
    doc = json.loads(out)
    assert [r["strategy"] for r in doc["runs"]] == ["naive", "joint"]
    assert all(r["stream"] == "split/digits" for r in doc["runs"])


def test_bad_yaml_is_one_clear_error(capsys, where, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("stream: [unclosed\n")
    code, _, err = lifelong(capsys, "run", str(cfg), *where)
    assert code == 2 and "not valid YAML" in err


def test_list_shows_every_registry(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = lifelong(capsys, "list", "--json")
    doc = json.loads(out)
    assert code == 0
    assert {"forgetting", "single"} <= set(doc["experiments"])
    assert {"permuted", "rotated", "split", "noisy"} <= set(doc["streams"])
    assert {"naive", "joint"} <= set(doc["strategies"])
    assert doc["streams"]["noisy"]["options"]["level"] == 0.5


def test_console_script_prints_no_traceback_for_user_errors(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("lifelong")
    from lifelong.store import Store

    Store(tmp_path / "s.sqlite").close()  # an empty store
    p = subprocess.run([str(exe), "show", "nope", "--store", str(tmp_path / "s.sqlite")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "nope" in p.stderr


def test_corrupt_data_file_is_one_clear_error(capsys, where, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip

    bad = tmp_path / "mnist-t10k"
    bad.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (bad / name).write_bytes(gzip.compress(b"\x00\x00\x00\x00garbage"))
    code, out, err = lifelong(capsys, "run", "forgetting", "--quick", "--set",
                              f"stream.data_dir={bad}", *where)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "t10k-" in err and "not the official file" in err  # the archive's checksum
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # unzipped copies:
        (bad / f"{name}.gz").unlink()  # no archive to hash, so the IDX reader catches them
        (bad / name).write_bytes(b"\x00\x00\x00\x00garbage")
    code, out, err = lifelong(capsys, "run", "forgetting", "--quick", "--set",
                              f"stream.data_dir={bad}", *where)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "t10k-" in err and "magic" in err.lower()


def test_bad_option_values_of_later_strategies_are_reported_before_any_run(capsys, where) -> None:  # type: ignore[no-untyped-def]
    code, out, err = lifelong(capsys, "run", "gem-table", "--quick",
                              "--set", "strategies.gem.memory_strength=-1",
                              "--set", "strategies.er.memory_size=0", *where)
    assert code == 2 and out == ""
    assert "memory_strength=-1" in err and "memory_size=0" in err
    code, out, _ = lifelong(capsys, "runs", "--store", where[1])
    assert "no runs" in out  # nothing ran before the problems were found


def test_a_run_at_chance_is_warned_and_the_warning_is_recorded(capsys, where, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lifelong.train import LifelongWarning

    with pytest.warns(LifelongWarning, match="at chance"):  # lr=100: dead ReLUs, finite loss
        code, out, err = lifelong(capsys, *SINGLE, "--set", "train.lr=100", "--json", *where)
    assert code == 0, err
    run = json.loads(out)["runs"][0]
    assert [w["task"] for w in run["warnings"]] == [0, 1, 2]
    first = run["warnings"][0]["message"]
    assert "task 1/3 (permuted/digits/0)" in first and "at chance (0.1" in first
    assert "train.lr too high (100.0)" in first and "--set train.lr=" in first
    matrix = json.loads((tmp_path / "out" / run["run_id"] / "matrix.json").read_text())
    assert matrix["warnings"] == run["warnings"]
    code, out, _ = lifelong(capsys, "show", run["run_id"], "--store", where[1], "--json")
    assert code == 0 and json.loads(out)["warnings"] == run["warnings"]


@pytest.fixture()
def reporting(monkeypatch):  # type: ignore[no-untyped-def]
    """A strategy `reporting` (registered for this test only) whose `task_report` gives a value
    and a warning per task."""
    from lifelong.strategies import STRATEGIES
    from lifelong.strategies.base import TaskReport
    from lifelong.strategies.naive import Naive

    class Reporting(Naive):
        name = "reporting"

        def task_report(self) -> TaskReport:
            return TaskReport({"capped_fraction": 0.125}, ("stiffness capped",))

    monkeypatch.setitem(STRATEGIES._items, "reporting", Reporting)


def test_a_strategy_report_reaches_store_show_and_both_outputs(capsys, where, reporting) -> None:  # type: ignore[no-untyped-def]
    from lifelong.train import LifelongWarning

    args = [a if a != "strategy.name=naive" else "strategy.name=reporting" for a in SINGLE]
    with pytest.warns(LifelongWarning, match="stiffness capped"):
        code, out, err = lifelong(capsys, *args, "--json", *where)
    assert code == 0, err
    run = json.loads(out)["runs"][0]
    assert run["diagnostics"] == [{"capped_fraction": 0.125}] * 3
    assert run["warnings"] == [{"task": t, "message": "stiffness capped"} for t in range(3)]
    code, out, _ = lifelong(capsys, "show", run["run_id"], "--store", where[1], "--json")
    shown = json.loads(out)
    assert shown["diagnostics"] == {str(t): {"capped_fraction": 0.125} for t in range(3)}
    assert shown["warnings"] == run["warnings"]
    code, out, _ = lifelong(capsys, "show", run["run_id"], "--store", where[1])
    assert "capped_fraction" in out and "task 3: stiffness capped" in out
    # Reused from the store: the warnings are rebuilt and printed under the matrix.
    code, out, err = lifelong(capsys, *args, *where)
    assert code == 0 and "were reused" in err
    assert "acc=" in out and "warning: task 3: stiffness capped" in out


def test_the_stiffness_cap_reports_its_fraction_with_the_run(capsys, where) -> None:  # type: ignore[no-untyped-def]
    # The real thing, end to end: EWC with the cap on and a strength plain SGD cannot follow.
    from lifelong.train import LifelongWarning

    args = [a if a != "strategy.name=naive" else "strategy.name=ewc" for a in SINGLE]
    with pytest.warns(LifelongWarning, match="stiffness_cap held"):
        code, out, err = lifelong(capsys, *args, "--set", "strategy.stiffness_cap=true",
                                  "--set", "strategy.step=gradient", "--set",
                                  "strategy.strength=1e5", "--json", *where)
    assert code == 0, err
    run = json.loads(out)["runs"][0]
    fractions = [d.get("capped_fraction") for d in run["diagnostics"]]
    assert fractions[0] is None  # nothing to cap while the first task is learned
    assert all(0.0 < f <= 1.0 for f in fractions[1:]), fractions
    assert [w["task"] for w in run["warnings"] if "stiffness_cap held" in w["message"]] == \
        list(range(1, len(fractions)))


@pytest.fixture()
def threads():  # type: ignore[no-untyped-def]
    """Restore the process's intra-op thread count after a test that sets it."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_are_applied_recorded_and_do_not_block_reuse(capsys, where, threads) -> None:  # type: ignore[no-untyped-def]
    import torch

    torch.set_num_threads(2)
    code, out, err = lifelong(capsys, *SINGLE, "--threads", "1", "--json", *where)
    assert code == 0, err
    assert torch.get_num_threads() == 1
    run = json.loads(out)["runs"][0]
    code, out, _ = lifelong(capsys, "show", run["run_id"], "--store", where[1], "--json")
    assert json.loads(out)["versions"]["torch_threads"] == "1"
    code, out, err = lifelong(capsys, *SINGLE, "--threads", "2", "--json", *where)
    again = json.loads(out)["runs"][0]
    assert code == 0 and torch.get_num_threads() == 2
    assert again["run_id"] == run["run_id"] and again["reused"] and "were reused" in err


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_thread_count_is_one_error_with_exit_code_2(capsys, where, value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        main([*SINGLE, "--threads", value, *where])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"--threads {value!r}: expected a whole number >= 0" in err
    from lifelong.cli import parser

    assert parser().parse_args(["run", "single", "--threads", "0"]).threads == 0  # torch's own


def test_a_scenario_the_strategy_does_not_support_is_one_error_with_exit_code_2(  # type: ignore[no-untyped-def]
        capsys, where, monkeypatch) -> None:
    from lifelong.strategies import STRATEGIES
    from lifelong.strategies.base import Card
    from lifelong.strategies.naive import Naive

    class TaskOnly(Naive):  # registered for this test only
        name = "task-only"
        card = Card(scenarios=frozenset({"task"}))

    monkeypatch.setitem(STRATEGIES._items, "task-only", TaskOnly)
    args = [a if a != "strategy.name=naive" else "strategy.name=task-only" for a in SINGLE]
    code, out, err = lifelong(capsys, *args, "--set", "stream.scenario=class", *where)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("lifelong: error:") == 1
    assert ("strategy 'task-only' does not support the class-incremental scenario "
            "(it supports: task)") in err


def test_version_prints_the_packages_one_version(capsys) -> None:  # type: ignore[no-untyped-def]
    import lifelong

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"lifelong {lifelong.__version__}"
