"""`train.steps_per_task`: a fixed number of optimizer steps per task (van de Ven & Tolias'
"2000 iterations per task"), in the loop and in a vectorised group, and its checks."""

from __future__ import annotations

import warnings

import pytest

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.callbacks import Callback, EpochEnd, StepEnd
from lifelong.errors import ConfigError
from lifelong.group import Member, fit_group
from lifelong.strategies import build_strategy
from lifelong.train import LifelongWarning


class Steps(Callback):
    """Steps and passes seen per task."""

    def __init__(self) -> None:
        self.steps: dict[int, int] = {}
        self.passes: dict[int, list[int]] = {}

    def on_step_end(self, event: StepEnd) -> None:
        self.steps[event.task_index] = self.steps.get(event.task_index, 0) + 1

    def on_epoch_end(self, event: EpochEnd) -> None:
        self.passes.setdefault(event.task_index, []).append(event.steps)


def test_passes_cut_the_last_one_short() -> None:
    assert TrainConfig(epochs=3, batch_size=32).passes(100) == [4, 4, 4]
    cfg = TrainConfig(steps_per_task=10, batch_size=32, epochs=7)  # epochs unused
    assert cfg.passes(100) == [4, 4, 2]
    assert TrainConfig(steps_per_task=8, batch_size=32).passes(100) == [4, 4]
    assert TrainConfig(steps_per_task=3, batch_size=32).passes(1000) == [3]


@pytest.mark.parametrize("bad", [0, -5, True, 2.5])
def test_a_bad_step_count_is_one_clear_problem(bad: object) -> None:
    problems = TrainConfig(steps_per_task=bad).problems()  # type: ignore[arg-type]
    assert len(problems) == 1 and "train.steps_per_task" in problems[0]


def test_the_loop_takes_exactly_that_many_steps_per_task() -> None:
    stream = build_stream("split", source="digits", num_tasks=3, scenario="class", seed=0)
    sizes = [len(t.train) for t in stream.tasks]
    assert len(set(sizes)) > 1  # tasks of different sizes all get the same steps
    seen = Steps()
    model = build_model("mlp", stream, hidden=[16], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LifelongWarning)
        fit_stream(build_strategy("naive", model), stream,
                   TrainConfig(steps_per_task=25, batch_size=32, lr=0.1, device="cpu"),
                   seed=0, callbacks=[seen])
    assert seen.steps == {0: 25, 1: 25, 2: 25}
    for i, n in enumerate(sizes):
        assert seen.passes[i] == TrainConfig(steps_per_task=25, batch_size=32).passes(n)


def test_a_vectorised_group_takes_the_same_steps() -> None:
    cfg = TrainConfig(steps_per_task=13, batch_size=16, lr=0.1, device="cpu")
    members, seen = [], []
    for seed in (0, 1):
        stream = build_stream("permuted", source="digits", num_tasks=2, seed=seed)
        steps = Steps()
        seen.append(steps)
        members.append(Member(build_strategy("naive", build_model(
            "mlp", stream, hidden=[16], seed=seed)), stream, seed, callbacks=[steps]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LifelongWarning)
        fit_group(members, cfg)
    assert all(s.steps == {0: 13, 1: 13} for s in seen)


def test_fit_stream_refuses_a_bad_step_count() -> None:
    stream = build_stream("permuted", source="digits", num_tasks=1, seed=0)
    model = build_model("mlp", stream, hidden=[8], seed=0)
    with pytest.raises(ConfigError, match="steps_per_task"):
        fit_stream(build_strategy("naive", model), stream, TrainConfig(steps_per_task=0))
