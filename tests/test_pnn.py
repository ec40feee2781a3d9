"""PNN's guards: a column with later columns is never trained again, and evaluating a task
that has no column yet changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import Stream
from lifelong.errors import ConfigError
from lifelong.evaluate import accuracy
from lifelong.models.columns import Columns
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Strategy

CFG = TrainConfig(epochs=1, lr=0.1, device="cpu")
# A budget of ten examples may well leave a column near chance: not what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:.*learned nothing")


def equal(a: Any, b: Any) -> bool:
    """Two state_dicts with the same keys and bit-identical tensors."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture(scope="module")
def stream() -> Stream:
    s: Stream = build_stream("split", source="digits", num_tasks=3, scenario="task", seed=0,
                             train_per_task=120)
    return s


def pnn(stream: Stream) -> Strategy:
    return build_strategy("pnn", build_model("mlp", stream, hidden=[16], seed=0))


def part(s: Stream, tasks: slice) -> Stream:
    return Stream(s.name, s.scenario, s.tasks[tasks], s.num_classes, s.num_outputs,
                  s.input_shape)


def test_training_a_column_that_has_later_columns_is_refused(stream: Stream) -> None:
    strategy = pnn(stream)
    fit_stream(strategy, part(stream, slice(0, 2)), CFG, seed=0)
    assert isinstance(strategy.model, Columns) and strategy.model.num_columns == 2
    before = strategy.state_dict()
    x, t = stream.tasks[1].test.x, stream.tasks[1].test.t
    later = strategy.predict(x, t).detach()
    with pytest.raises(ConfigError) as e:
        fit_stream(strategy, part(stream, slice(0, 1)), CFG, seed=0)  # task 0 returns
    text = str(e.value)
    assert "label 0" in text and "columns 1..1" in text and "lateral" in text
    assert "fresh PNN" in text
    assert equal(strategy.state_dict(), before)  # refused before anything trained
    assert torch.equal(strategy.predict(x, t), later)


def test_the_newest_column_may_train_again(stream: Stream) -> None:
    strategy = pnn(stream)
    fit_stream(strategy, part(stream, slice(0, 2)), CFG, seed=0)
    fit_stream(strategy, part(stream, slice(1, 2)), CFG, seed=0)  # task 1: the newest column
    assert isinstance(strategy.model, Columns) and strategy.model.num_columns == 2


def test_task_affinity_with_pnn_is_refused_not_silently_wrong(stream: Stream) -> None:
    from lifelong.curriculum import task_affinity

    held = build_stream("split", source="digits", num_tasks=2, scenario="task", seed=0,
                        train_per_task=120, validation=0.2)
    with pytest.raises(ConfigError, match="already has column 0"):
        task_affinity(held, lambda seed: pnn(held), CFG, budget=10, budget_epochs=1)


def test_evaluating_an_unseen_task_leaves_the_state_unchanged(stream: Stream) -> None:
    strategy = pnn(stream)
    fit_stream(strategy, part(stream, slice(0, 1)), CFG, seed=0)
    before = strategy.state_dict()
    for task in stream.tasks[1:]:  # no column yet: answered by the newest, nothing added
        accuracy(strategy, task.test, task_labels=True)
    assert isinstance(strategy.model, Columns) and strategy.model.num_columns == 1
    assert equal(strategy.state_dict(), before)
