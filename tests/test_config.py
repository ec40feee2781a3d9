"""Planning a run from config layers: value types, canonical run ids, defaults that follow the
chosen stream or model, and the CLI's answers to bad paths — all before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong.cli import main
from lifelong.config import parse_sets
from lifelong.errors import ConfigError
from lifelong.run.runner import plan

NAIVE = ["strategy.name=naive"]


def problems_of(*sets: str, target: str = "single") -> str:
    with pytest.raises(ConfigError) as e:
        plan(target, sets=[*NAIVE, *sets], quick=True)
    return str(e.value)


def test_wrong_types_are_named_with_what_is_expected_all_at_once() -> None:
    text = problems_of("train.momentum=abc", "model.hidden=100", "model.dropout=x",
                       "stream.num_tasks=2.5")
    assert "train.momentum='abc' must be a number" in text
    assert "hidden=100 must be a list of integers" in text
    assert "dropout='x' must be a number" in text
    assert "num_tasks=2.5 must be an integer" in text


def test_type_and_range_problems_of_one_stream_or_strategy_come_together() -> None:
    text = problems_of("stream.name=noisy", "stream.level=abc", "stream.num_tasks=0",
                       "strategy.name=ewc", "strategy.strength=x", "strategy.decay=5")
    assert "level='abc' must be a number" in text and "num_tasks=0" in text
    assert "strength='x' must be a number" in text and "decay=5" in text


def test_stream_option_types_are_checked_per_builder() -> None:
    assert "level='abc' must be a number" in problems_of("stream.name=noisy", "stream.level=abc")
    assert "angles='x' must be a list of numbers or null" in problems_of(
        "stream.name=rotated", "stream.angles=x")


def test_ints_where_floats_are_declared_give_one_run_id() -> None:
    a = plan("single", sets=[*NAIVE, "train.lr=1", "model.dropout=0"]).runs[0]
    b = plan("single", sets=[*NAIVE, "train.lr=1.0", "model.dropout=0.0"]).runs[0]
    assert a.config["train"]["lr"] == 1.0 and isinstance(a.config["train"]["lr"], float)
    assert a.run_id == b.run_id


def test_where_the_data_lies_is_not_part_of_a_runs_identity(tmp_path: Path) -> None:
    a = plan("single", sets=NAIVE).runs[0]
    b = plan("single", sets=[*NAIVE, f"stream.data_dir={tmp_path}"]).runs[0]
    assert b.config["stream"]["data_dir"] == str(tmp_path)  # still recorded
    assert a.run_id == b.run_id


def test_repeated_seeds_run_once() -> None:
    p = plan("single", sets=NAIVE, seeds=[0, 1, 0])
    assert [r.seed for r in p.runs] == [0, 1]


def test_exponent_notation_is_a_number() -> None:
    assert parse_sets(["train.lr=1e-3", "x=[2E-2, 3]", "y=abc"]) == [
        (["train", "lr"], 0.001), (["x"], [0.02, 3]), (["y"], "abc")]
    assert plan("single", sets=[*NAIVE, "train.lr=1e-3"]).runs[0].config["train"]["lr"] == 0.001


def test_choosing_another_model_or_stream_drops_the_defaults_of_the_old_one() -> None:
    p = plan("single", sets=[*NAIVE, "model.name=cnn", "stream.name=planar",
                             "stream.num_tasks=2"], quick=True)
    cfg = p.runs[0].config
    assert cfg["model"]["name"] == "cnn" and cfg["model"]["channels"] == [32, 64]
    assert cfg["stream"]["name"] == "planar" and "source" not in cfg["stream"]
    kept = plan("single", sets=[*NAIVE, "model.hidden=[7]"]).runs[0].config["model"]
    assert kept == {"name": "mlp", "hidden": [7], "dropout": 0.0, "growing": False}


def test_angles_and_num_tasks_must_agree() -> None:
    assert "3 angles given but num_tasks=5" in problems_of(
        "stream.name=rotated", "stream.angles=[0, 45, 90]", "stream.num_tasks=5")
    ok = plan("single", sets=[*NAIVE, "stream.name=rotated", "stream.angles=[0, 45, 90]"])
    assert ok.runs[0].config["stream"]["angles"] == [0.0, 45.0, 90.0]
    assert "angles=[] gives no task" in problems_of("stream.name=planar", "stream.angles=[]")
    assert "repeat an angle" in problems_of("stream.name=rotated", "stream.angles=[0, 30, 0]")


def test_range_problems_of_a_stream_are_found_without_loading_data(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import lifelong.data.builders._common as common

    def no_loading(*args: object) -> None:
        raise AssertionError("data was loaded while checking options")

    monkeypatch.setattr(common, "load_source", no_loading)
    text = problems_of("stream.source=mnist-10k", "stream.num_tasks=0", "train.epochs=0")
    assert "num_tasks=0" in text and "train.epochs=0" in text
    plan("single", sets=[*NAIVE, "stream.source=mnist-10k"])  # fine options: no load either


@pytest.mark.parametrize("stream", ["rotated", "planar"])
def test_zero_tasks_is_refused_with_or_without_angles(stream: str) -> None:
    assert "num_tasks=0 must be an integer >= 1" in problems_of(f"stream.name={stream}",
                                                                 "stream.num_tasks=0")


def test_a_plan_with_nothing_to_run_is_refused() -> None:
    assert "nothing to run" in problems_of("options.streams=[]", target="gem-table")


# ------------------------------------------------------------------------- CLI and paths
def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_out_that_is_a_file_is_refused_before_anything_is_stored(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "file"
    out.write_text("")
    store = tmp_path / "s.sqlite"
    code, stdout, err = run(capsys, "run", "single", "--quick", "--no-progress", "--set",
                            "strategy.name=naive", "--store", str(store), "--out", str(out))
    assert code == 2 and stdout == "" and "is a file" in err and "Traceback" not in err
    assert not store.exists()


def test_reading_commands_create_no_store(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "typo" / "s.sqlite"
    code, out, _ = run(capsys, "runs", "--store", str(missing))
    assert code == 0 and "no runs" in out
    code, _, err = run(capsys, "show", "abc", "--store", str(missing))
    assert code == 2 and "no results store here" in err
    assert not missing.parent.exists()


def test_unwritable_store_and_unreadable_config_are_clear_errors(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "blocker"
    blocker.write_text("")  # a file where the store's folder should be
    code, _, err = run(capsys, "run", "single", "--quick", "--set", "strategy.name=naive",
                       "--store", str(blocker / "s.sqlite"), "--out", str(tmp_path / "o"))
    assert code == 2 and "cannot create the store's folder" in err
    folder = tmp_path / "conf.yaml"
    folder.mkdir()
    code, _, err = run(capsys, "run", str(folder))
    assert code == 2 and "cannot be read" in err and "Traceback" not in err


def test_a_run_whose_files_cannot_be_written_is_not_completed(capsys, tmp_path,  # type: ignore[no-untyped-def]
                                                              monkeypatch) -> None:
    import lifelong.run.files as run_files
    from lifelong.store import Store

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_files, "atomic_write_text", refuse)
    store = tmp_path / "s.sqlite"
    code, _, err = run(capsys, "run", "single", "--quick", "--no-progress", "--set",
                       "strategy.name=naive", "--store", str(store), "--out", str(tmp_path / "o"))
    assert code == 2 and "No space left" in err
    with Store(store) as s:
        (summary,) = s.list_runs()
        assert summary.status == "failed"
        assert len(s.get_run(summary.run_id).matrix) == 4  # the rows trained are kept


# ------------------------------------------------------------------- reusing stored runs
def test_completed_runs_are_reused_unless_rerun_or_the_code_changed(capsys, tmp_path,  # type: ignore[no-untyped-def]
                                                                    monkeypatch) -> None:
    import json

    import lifelong.run.execution as execution
    import lifelong.run.provenance as provenance

    # One run at a time (--no-vectorize), so every training is one counted fit_stream.
    args = ["run", "single", "--quick", "--no-progress", "--json", "--no-vectorize", "--set",
            "strategy.name=naive", "--seed", "0,1", "--store", str(tmp_path / "s.sqlite"),
            "--out", str(tmp_path / "o")]
    code, out, _ = run(capsys, *args)
    first = json.loads(out)["runs"]
    assert code == 0 and [r["reused"] for r in first] == [False, False]

    real_fit = execution.fit_stream
    trained: list[int] = []

    def counting_fit(*a, **k):  # type: ignore[no-untyped-def]
        trained.append(k["seed"])
        return real_fit(*a, **k)

    monkeypatch.setattr(execution, "fit_stream", counting_fit)
    code, out, err = run(capsys, *args[:-6], "--seed", "0,1,2", *args[-4:])
    again = json.loads(out)["runs"]
    assert code == 0 and trained == [2]  # only the new seed trained
    assert [r["reused"] for r in again] == [True, True, False]
    assert [r["matrix"] for r in again[:2]] == [r["matrix"] for r in first]
    assert "2 of 3 runs were already complete" in err
    assert (tmp_path / "o" / first[0]["run_id"] / "matrix.json").exists()

    code, out, _ = run(capsys, *args, "--rerun")
    assert code == 0 and trained == [2, 0, 1]
    real_versions = provenance.installed_versions
    monkeypatch.setattr(provenance, "installed_versions",
                        lambda: {**real_versions(), "lifelong-code": "edited"})
    code, out, _ = run(capsys, *args)
    assert trained == [2, 0, 1, 0, 1]  # stored by other code: trained again
    code, out, _ = run(capsys, *args)
    assert trained == [2, 0, 1, 0, 1]  # ... and that code's runs are then reused


def test_the_code_hash_follows_every_source_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import lifelong.run.provenance as provenance

    fake = tmp_path / "lifelong"  # the package; provenance lives in its `run` package
    (fake / "sub").mkdir(parents=True)
    (fake / "run").mkdir()
    (fake / "run" / "provenance.py").write_text("x = 1\n")
    (fake / "sub" / "m.py").write_text("y = 2\n")
    monkeypatch.setattr(provenance, "__file__", str(fake / "run" / "provenance.py"))
    before = provenance.code_hash()
    assert provenance.code_hash() == before  # stable
    (fake / "sub" / "m.py").write_text("y = 3\n")
    assert provenance.code_hash() != before  # any edit, committed or not


def test_an_experiment_drawn_from_recorded_paths_reuses_its_stored_runs(capsys, tmp_path  # type: ignore[no-untyped-def]
                                                                          ) -> None:
    # ewc-surface draws parameter paths a recorder kept during training: they are stored
    # with the run (artifacts), so a second call reuses the runs and draws the same table.
    import json

    args = ["run", "ewc-surface", "--quick", "--no-progress", "--json", "--store",
            str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")]
    code, out, _ = run(capsys, *args)
    first = json.loads(out)
    code2, out2, _ = run(capsys, *args)
    again = json.loads(out2)
    assert code == code2 == 0 and all(r["reused"] for r in again["runs"])
    assert again["table"] == first["table"] and "ewc" in first["table"]
