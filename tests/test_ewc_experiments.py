"""The `ewc-permuted` and `ewc-surface` experiments through the CLI contract, and the story each
must tell (on the embedded 8×8 digits and the synthetic plane: no download)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from lifelong.cli import main


def run_json(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", *args, "--quick", "--json", "--no-progress",
                     "--store", str(tmp_path / "runs.sqlite"), "--out", str(tmp_path / "runs")])
    assert code == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


def check_contract(doc: dict[str, Any], tasks: int) -> dict[str, list[list[float]]]:
    for run in doc["runs"]:
        R = run["matrix"]
        assert len(R) == tasks + 1 and all(len(row) == tasks for row in R)
        assert all(0.0 <= v <= 1.0 for row in R for v in row)
        assert {"acc", "bwt", "fwt", "forgetting"} <= set(run)
    assert doc["figures"] and all(Path(f).is_file() for f in doc["figures"])
    return {run["strategy"]: run["matrix"] for run in doc["runs"]}


def test_ewc_permuted_shows_forgetting_intransigence_and_ewc(tmp_path: Path) -> None:
    doc = run_json(tmp_path, "ewc-permuted", "--set", "train.epochs=4")
    R = check_contract(doc, 3)
    assert set(R) == {"naive", "l2", "ewc", "joint"}
    assert any(f.endswith("ewc_permuted_curves.png") for f in doc["figures"])
    naive, l2, ewc = R["naive"], R["l2"], R["ewc"]
    assert naive[1][0] - naive[3][0] > 0.3  # SGD forgets A
    assert l2[3][0] > naive[3][0] + 0.2 and ewc[3][0] > naive[3][0] + 0.1  # both keep A
    assert min(ewc[2][1], ewc[3][2]) > 0.75  # EWC learns B and C
    assert max(l2[2][1], l2[3][2]) < 0.6  # L2 does not
    # The table reports intransigence per task; L2's mean is clearly the largest.
    means = {line.split()[0]: float(line.split()[-1]) for line in doc["table"].splitlines()
             if line.split() and line.split()[0] in R}
    assert means["l2"] > max(means["naive"], means["ewc"]) + 0.2
    gap = [line for line in doc["table"].splitlines() if line.startswith("A-gap")]
    assert len(gap) == 1 and f"{ewc[3][0] - naive[3][0]:+.3f} over 1 seed" in gap[0]
    for name in ("naive", "l2", "ewc"):  # the printed mean is Chaudhry's I from the matrices
        by_hand = sum(R["joint"][k + 1][k] - R[name][k + 1][k] for k in range(3)) / 3
        assert means[name] == pytest.approx(by_hand, abs=6e-4)


def test_ewc_surface_moves_along_the_direction_task_one_ignores(tmp_path: Path) -> None:
    doc = run_json(tmp_path, "ewc-surface")
    R = check_contract(doc, 2)
    assert any(f.endswith("ewc_surface.png") for f in doc["figures"])
    naive, l2, ewc = R["naive"], R["l2"], R["ewc"]
    assert naive[1][0] > 0.75 and naive[2][0] < 0.5  # SGD leaves task 1's valley
    assert l2[2][0] > 0.75 and l2[2][1] < 0.5  # L2 never reaches task 2's
    assert ewc[2][0] > 0.75 and ewc[2][1] > 0.75  # EWC ends up in both
    rows = {line.split()[0]: line.split() for line in doc["table"].splitlines()
            if line.split() and line.split()[0] in R}
    along, across = float(rows["ewc"][-2]), float(rows["ewc"][-1])
    assert along > 10 * across  # EWC moved along the Fisher ellipse's long axis
