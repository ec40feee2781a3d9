"""Metrics against matrices computed by hand."""

from __future__ import annotations

import pytest

from lifelong.metrics import acc, bwt, forgetting, fwt, intransigence, learning_accuracy, summary

# Rows: init, after task 1, after task 2, after task 3.
R = [
    [0.10, 0.20, 0.30],
    [0.90, 0.25, 0.35],
    [0.60, 0.80, 0.40],
    [0.70, 0.50, 0.95],
]


def test_acc_is_mean_of_last_row() -> None:
    assert acc(R) == pytest.approx((0.70 + 0.50 + 0.95) / 3)


def test_bwt_by_hand() -> None:
    # task 1: 0.70 - 0.90 = -0.20; task 2: 0.50 - 0.80 = -0.30
    assert bwt(R) == pytest.approx(-0.25)


def test_fwt_against_untrained_row() -> None:
    # task 2 before training on it: R[1][1] - R[0][1] = 0.05; task 3: R[2][2] - R[0][2] = 0.10
    assert fwt(R) == pytest.approx(0.075)


def test_forgetting_is_best_earlier_minus_last() -> None:
    # task 1: max(0.90, 0.60) - 0.70 = 0.20; task 2: max(0.80) - 0.50 = 0.30
    assert forgetting(R) == pytest.approx(0.25)


def test_forgetting_differs_from_first_minus_last_when_accuracy_rises_later() -> None:
    rising = [[0.1, 0.1, 0.1], [0.5, 0.1, 0.1], [0.9, 0.6, 0.1], [0.8, 0.6, 0.7]]
    # best earlier on task 1 is 0.9 (after task 2), not 0.5 (after task 1)
    assert forgetting(rising) == pytest.approx(((0.9 - 0.8) + (0.6 - 0.6)) / 2)
    assert bwt(rising) == pytest.approx(((0.8 - 0.5) + (0.6 - 0.6)) / 2)


def test_intransigence_by_hand() -> None:
    joint = [[0.1, 0.2, 0.3], [0.95, 0.3, 0.3], [0.9, 0.9, 0.4], [0.9, 0.9, 0.97]]
    assert intransigence(R, joint) == pytest.approx([0.05, 0.10, 0.02])


def test_learning_accuracy_is_the_mean_just_learned_accuracy() -> None:
    # R[1][0] = 0.90, R[2][1] = 0.80, R[3][2] = 0.95
    assert learning_accuracy(R) == pytest.approx((0.90 + 0.80 + 0.95) / 3)


def test_transfer_and_forgetting_are_undefined_for_a_single_task() -> None:
    import math

    s = summary([[0.1], [0.9]])
    assert s["acc"] == pytest.approx(0.9)
    assert all(math.isnan(s[k]) for k in ("bwt", "fwt", "forgetting"))


def test_a_one_task_run_prints_dashes_and_strict_json(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from lifelong.cli import main

    args = ["run", "single", "--quick", "--no-progress", "--set", "strategy.name=naive",
            "--set", "stream.num_tasks=1", "--store", str(tmp_path / "s.sqlite"),
            "--out", str(tmp_path / "o")]
    assert main([*args, "--json"]) == 0
    run = json.loads(capsys.readouterr().out, parse_constant=lambda c: 1 / 0)["runs"][0]
    assert run["bwt"] is None and run["fwt"] is None and run["forgetting"] is None
    assert main([*args, "--rerun"]) == 0
    assert "bwt=-  fwt=-  forgetting=-" in capsys.readouterr().out


def test_bad_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(T\+1, T\)"):
        acc([[0.1, 0.2], [0.3, 0.4]])
