"""`train.keep_optimizer`: one optimizer, and its state, across the tasks (Hsu et al.'s and van
de Ven & Tolias' code), restored exactly on resume, and never part of a run's identity when
off."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.config import run_id
from lifelong.errors import ConfigError
from lifelong.group import Member, fit_group
from lifelong.run.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lifelong.strategies import build_strategy
from lifelong.train import LifelongWarning, Progress

ADAM = dict(optimizer="adam", lr=0.003, batch_size=64, epochs=2, device="cpu")


def stream():  # type: ignore[no-untyped-def]
    return build_stream("split", source="digits", num_tasks=3, scenario="task", seed=0)


def strategy(name: str = "naive"):  # type: ignore[no-untyped-def]
    s = stream()
    return build_strategy(name, build_model("mlp", s, hidden=[32], seed=0)), s


def fit(name: str, **train: Any) -> tuple[Any, Any]:
    s, st = strategy(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LifelongWarning)
        result = fit_stream(s, st, TrainConfig(**{**ADAM, **train}), seed=0)
    return result, s


def test_a_kept_adam_carries_its_moments_into_the_next_task() -> None:
    fresh, _ = fit("naive")
    kept, _ = fit("naive", keep_optimizer=True)
    assert fresh.matrix[1] == kept.matrix[1]  # the first task trains the same
    assert fresh.matrix[2:] != kept.matrix[2:]  # then the kept moments change the steps


def test_sgd_without_momentum_has_no_state_so_keeping_it_changes_nothing() -> None:
    fresh, _ = fit("naive", optimizer="sgd", lr=0.1)
    kept, _ = fit("naive", optimizer="sgd", lr=0.1, keep_optimizer=True)
    assert fresh.matrix == kept.matrix


KEPT = TrainConfig(**ADAM, keep_optimizer=True)


def whole_and_first_checkpoint(name: str, tmp_path: Path) -> tuple[Any, Any, Checkpoint]:
    """The uninterrupted run (result, strategy) and its checkpoint after task 1, read back
    through the file (a weights_only load)."""
    saved: list[Path] = []
    s, st = strategy(name)

    def save(progress: Progress) -> None:
        if not saved:
            assert progress.optimizer is not None and progress.optimizer["state"]
            saved.append(save_checkpoint(tmp_path / "r.pt",
                                         Checkpoint("r", progress, s.state_dict(), {})))

    whole = fit_stream(s, st, KEPT, seed=0, checkpoint=save)
    ckpt = load_checkpoint(saved[0], "r")
    assert ckpt is not None and ckpt.tasks_done == 1
    return whole, s, ckpt


def resumed_from(name: str, ckpt: Checkpoint, progress: Progress) -> tuple[Any, Any]:
    again, st = strategy(name)
    again.load_state_dict(ckpt.strategy)
    return fit_stream(again, st, KEPT, seed=0, resume=progress), again


@pytest.mark.parametrize("name", ["naive", "ewc"])
@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")
def test_resume_restores_the_kept_optimizer_bit_for_bit(name: str, tmp_path: Path) -> None:
    whole, s, ckpt = whole_and_first_checkpoint(name, tmp_path)
    resumed, again = resumed_from(name, ckpt, ckpt.progress)
    assert resumed.matrix == whole.matrix
    weights = [{k: v for k, v in m.state_dict().items() if isinstance(v, torch.Tensor)}
               for m in (again.model, s.model)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")
def test_without_the_kept_state_a_resume_would_differ(tmp_path: Path) -> None:
    """The test above can fail: a resume that drops the saved moments trains differently."""
    whole, _, ckpt = whole_and_first_checkpoint("naive", tmp_path)
    p = ckpt.progress
    blind, _ = resumed_from("naive", ckpt, Progress(p.row0, p.ends, p.step))
    assert blind.matrix != whole.matrix


def test_off_it_leaves_run_ids_as_they_were_on_it_makes_a_new_run() -> None:
    config = {"stream": {"name": "split"}, "train": {"lr": 0.1}}
    off = {**config, "train": {"lr": 0.1, "keep_optimizer": False}}
    on = {**config, "train": {"lr": 0.1, "keep_optimizer": True}}
    assert run_id(off, 0) == run_id(config, 0) != run_id(on, 0)


def test_a_bad_value_is_one_clear_problem_and_a_group_refuses_it() -> None:
    (problem,) = TrainConfig(keep_optimizer="yes").problems()  # type: ignore[arg-type]
    assert "train.keep_optimizer" in problem
    members = []
    for seed in (0, 1):
        st = stream()
        members.append(Member(build_strategy("naive", build_model("mlp", st, hidden=[8],
                                                                  seed=seed)), st, seed))
    with pytest.raises(ConfigError, match="keep_optimizer"):
        fit_group(members, TrainConfig(**ADAM, keep_optimizer=True))
