"""Expert Gate: routing on real digits well above chance without task labels, relatedness by
its formula choosing the expert a new one starts from, old experts untouched."""

from __future__ import annotations

import pytest
import torch

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.models.experts import Experts
from lifelong.strategies import build_strategy
from tests.conftest import shared_data_or_skip


@pytest.fixture(scope="module")
def trained() -> tuple[object, object, object]:
    shared_data_or_skip("mnist-t10k")
    s = build_stream("split", source="mnist-10k", num_tasks=5, train_per_task=600,
                     test_per_task=300, scenario="class", seed=3)
    eg = build_strategy("expert-gate", build_model("mlp", s, hidden=[100], seed=3))
    result = fit_stream(eg, s, TrainConfig(epochs=3, batch_size=32, lr=0.1, device="cpu"),
                        seed=3)
    return s, eg, result


def test_routes_to_the_right_expert_well_above_chance(trained: tuple) -> None:
    s, eg, result = trained
    routing = [float((eg.route(t.test.x) == t.label).float().mean()) for t in s.tasks]
    assert sum(routing) / len(routing) > 0.6, routing  # chance: 1 in 5
    assert min(routing) > 0.4, routing
    naive = build_strategy("naive", build_model("mlp", s, hidden=[100], seed=3))
    base = fit_stream(naive, s, TrainConfig(epochs=3, batch_size=32, lr=0.1, device="cpu"),
                      seed=3)
    assert result.metrics["acc"] > base.metrics["acc"] + 0.4  # class-IL, no task labels


def test_relatedness_follows_its_formula_and_picks_the_source(trained: tuple) -> None:
    s, eg, _ = trained
    net = eg.model
    assert isinstance(net, Experts) and net.num_experts == 5
    for a in range(1, 5):
        x = s.tasks[a].train.x
        with torch.no_grad():
            own = float(net.gates[a].error(x).mean())
            theirs = [float(net.gates[k].error(x).mean()) for k in range(a)]
        expected = [1 - (er - own) / own for er in theirs]
        assert eg.state.relatedness[a] == pytest.approx(expected, rel=1e-5)
        assert net.sources[a] == max(range(a), key=lambda k: expected[k])
    assert net.sources[0] == -1


def test_predict_routes_without_a_label_and_old_experts_stay_unchanged(trained: tuple) -> None:
    s, eg, _ = trained
    x = s.tasks[0].test.x[:50]
    assert torch.equal(eg.predict(x, None), eg.model.routed(x))  # no label: the gate routes
    label = torch.full((50,), 4, dtype=torch.int64)  # a label given: that task's expert
    assert torch.equal(eg.predict(x, label), eg.model.experts[4](x, 4))
    first = [p.detach().clone() for p in eg.model.experts[0].parameters()]
    task = s.tasks[0]
    eg.before_task(s.tasks[4])  # task 5 again: its own expert trains, not the first
    assert eg.model.active == 4
    assert {id(p) for p in eg.trainable_parameters()} == {
        id(p) for p in eg.model.experts[4].parameters()}
    assert all(torch.equal(a, b) for a, b in zip(first, eg.model.experts[0].parameters(),
                                                 strict=True))
    assert task.label == 0
