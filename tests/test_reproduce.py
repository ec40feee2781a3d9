"""`lifelong reproduce`: the score rows (published, ours ± std, gap, pass/miss, source) by hand,
the command on `--quick`, and a stopped reproduction that resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from lifelong.cli import main
from lifelong.experiments.base import Experiment, Outcome, Reference
from lifelong.report.scores import format_scores, score_rows
from lifelong.train import RunResult
from tests.conftest import sigkill_at_first_checkpoint


class _Toy(Experiment):
    name = "toy"
    references = (
        Reference("a", 0.50, "paper A", "a"),
        Reference("b", 0.90, "paper B", "b", tolerance=5.0),
        Reference("c", 0.30, "measured here", "c", kind="baseline"),
        Reference("never run", 0.70, "paper D", "d"),
        Reference("error %", 13.9, "paper F", "e", unit="percent"),
        Reference("not ours", 0.10, "paper E", None),
    )

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        seeds = [o.seed for o in outcomes]
        mean = sum(seeds) / len(seeds)
        return {"a": 0.50 + 0.01 * mean, "b": 0.80 + 0.01 * mean, "c": 0.30, "e": 15.4}


def _outcome(seed: int) -> Outcome:
    result = RunResult(strategy="naive", stream="s", seed=seed, matrix=((0.0,), (1.0,)))
    return Outcome(f"r{seed}", "naive", "naive", seed, {}, result, Path("."))


def test_score_rows_match_a_hand_computation() -> None:
    rows = {r.label: r for r in score_rows(_Toy(), [_outcome(0), _outcome(2)])}
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert a.ours == pytest.approx(0.51) and a.gap == pytest.approx(1.0)
    # per seed: 0.50 and 0.52, sample std 0.01414
    assert a.std == pytest.approx(0.0141421, rel=1e-4) and a.seeds == 2
    assert a.verdict == "pass" and a.kind == "published"
    assert b.gap == pytest.approx(-9.0) and b.verdict == "miss"  # outside its own 0.05
    assert c.verdict == "pass" and c.kind == "baseline"
    assert rows["never run"].verdict == "not run" and rows["never run"].ours is None
    # a percentage is already in points: 15.4 − 13.9 = +1.5, within 2
    assert rows["error %"].gap == pytest.approx(1.5) and rows["error %"].verdict == "pass"
    assert rows["not ours"].verdict == "not run"
    table = format_scores(list(rows.values()))
    assert "MISS" in table and "baseline measured here" in table
    assert "published numbers: 2 of 5 within their tolerance, 1 missed, 2 not run" in table


def test_one_seed_has_no_std_and_a_selection_across_seeds_none_either() -> None:
    (a, *_), = [score_rows(_Toy(), [_outcome(1)])]
    assert a.std is None and a.seeds == 1

    class _Best(_Toy):
        spread_over_seeds = False

    (b, *_), = [score_rows(_Best(), [_outcome(0), _outcome(2)])]
    assert b.std is None and b.ours == pytest.approx(0.51)


def test_reproduce_quick_prints_every_row(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    args = ["reproduce", "--quick", "--experiments", "forgetting", "--json", "--no-progress",
            "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"] and doc["quick"] is True
    for row in doc["rows"]:
        assert {"experiment", "label", "published", "ours", "std", "gap", "verdict",
                "source", "kind"} <= row.keys()
        assert row["ours"] is not None and row["gap"] is not None
        assert row["verdict"] in ("pass", "miss") and row["source"]
    assert main(args) == 0  # again: everything is taken from the store
    again = json.loads(capsys.readouterr().out)
    assert again["experiments"][0]["reused"] == again["experiments"][0]["runs"] > 0
    assert again["rows"] == doc["rows"]


def test_reproduce_refuses_an_experiment_without_references(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["reproduce", "--experiments", "single", "--store",
                 str(tmp_path / "s.sqlite")]) == 2
    assert "declares no published numbers" in capsys.readouterr().err


def test_a_killed_reproduction_resumes(tmp_path: Path) -> None:
    """SIGKILL after the first checkpoint; the next call continues that run from it."""
    store, folder = tmp_path / "s.sqlite", tmp_path / "checkpoints"
    cmd = [sys.executable, "-m", "lifelong.cli", "reproduce", "--quick", "--experiments",
           "forgetting", "--no-progress", "--store", str(store), "--out", str(tmp_path / "o")]
    sigkill_at_first_checkpoint(cmd, folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env,
                         check=True).stdout
    doc = json.loads(out)
    (exp,) = doc["experiments"]
    assert exp["resumed"] + exp["reused"] >= 1, exp  # the killed work was not redone
    assert all(r["ours"] is not None for r in doc["rows"])
