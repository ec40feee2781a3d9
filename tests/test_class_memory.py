"""The class-budget exemplar memory: herding by hand, the shrinking per-class quota, seeded
random selection and saved state."""

from __future__ import annotations

import io

import pytest
import torch
from torch import Tensor

from lifelong import build_model, build_stream
from lifelong.data.task import TensorData
from lifelong.memory import ClassMemory, herding
from lifelong.strategies.base import Strategy
from tests.test_memory import gen


def data(labels: list[int], task: int = 0) -> TensorData:
    """x holds each example's position (so exemplars can be told apart) and its label."""
    n = len(labels)
    y = torch.tensor(labels, dtype=torch.int64)
    return TensorData(torch.stack([torch.arange(n, dtype=torch.float32), y.float()], 1), y,
                      torch.full((n,), task))


def test_herding_picks_what_the_hand_computation_picks() -> None:
    # Unit vectors A=(1,0), B=(0,1), C=(0.6,0.8), D=(0.6,-0.8); mean μ=(0.55, 0.25).
    # k=1: ‖μ-A‖²=.265 ‖μ-B‖²=.865 ‖μ-C‖²=.305 ‖μ-D‖²=1.105          → A
    # k=2: ‖μ-(A+B)/2‖²=.065 ‖μ-(A+C)/2‖²=.085 ‖μ-(A+D)/2‖²=.485      → B
    # k=3: ‖μ-(A+B+C)/3‖²=.1228 ‖μ-(A+B+D)/3‖²=.0339                 → D, then C.
    # Nearest-to-mean alone would give A, C, B, D. Lengths are scaled to show that the
    # features are L2-normalised first.
    unit = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, -0.8]])
    features = unit * torch.tensor([[3.0], [0.5], [2.0], [1.0]])
    assert herding(features, 4).tolist() == [0, 1, 3, 2]
    assert herding(features, 2).tolist() == [0, 1]  # a prefix of the longer list
    assert herding(features, 9).tolist() == [0, 1, 3, 2]  # at most every example once


def test_the_herded_mean_is_closer_to_the_class_mean_than_random_subsets() -> None:
    features = torch.randn(300, 16, generator=gen(0)) + 0.5
    phi = torch.nn.functional.normalize(features, dim=1)
    mu = phi.mean(0)

    def gap(idx: Tensor) -> float:
        return float((phi[idx].mean(0) - mu).norm())

    herded = gap(herding(features, 10))
    randoms = [gap(torch.randperm(300, generator=gen(s))[:10]) for s in range(20)]
    assert herded < min(randoms) and herded < 0.5 * sum(randoms) / len(randoms)


def test_the_budget_is_shared_by_every_class_seen_and_quotas_keep_a_prefix() -> None:
    memory = ClassMemory()
    first = data([0] * 20 + [1] * 20)
    memory.add(first, memory_size=10, selection="random", generator=gen())
    assert memory.classes == [0, 1] and memory.count == [5, 5] and len(memory) == 10
    before = memory.of_class(0).x.clone()
    memory.add(data([2] * 20 + [3] * 20, task=1), memory_size=10, selection="random",
               generator=gen())
    assert memory.classes == [0, 1, 2, 3] and memory.count == [2, 2, 2, 2]
    assert torch.equal(memory.of_class(0).x, before[:2])  # the first 2 in selection order
    memory.add(data([4] * 3, task=2), memory_size=10, selection="random", generator=gen())
    assert memory.count == [2, 2, 2, 2, 2] and len(memory) == 10
    memory.add(data([5, 6, 7, 8, 9, 10] * 3, task=3), memory_size=10, selection="random",
               generator=gen())
    assert memory.count == [0] * 11 and len(memory) == 0  # 10 // 11 = 0: over budget, empty
    assert memory.x is not None and len(memory.x) == 0
    for c in range(11):  # every class is still known, in arrival order
        assert memory.classes[c] == c


def test_the_memory_never_exceeds_its_budget() -> None:
    memory = ClassMemory()
    for task in range(7):
        labels = [3 * task + k for k in range(3) for _ in range(5 + task)]
        memory.add(data(labels, task), memory_size=17, selection="random", generator=gen())
        assert len(memory) <= 17
        assert all(n == min(17 // len(memory.classes), 5 + t)
                   for n, t in zip(memory.count, [c // 3 for c in memory.classes], strict=True))
        assert memory.y is not None and memory.y.tolist() == [
            c for c, n in zip(memory.classes, memory.count, strict=True) for _ in range(n)]


def test_random_selection_is_seeded_and_leaves_the_global_rng_alone() -> None:
    d = data([0] * 30 + [1] * 30)
    a, b, c = ClassMemory(), ClassMemory(), ClassMemory()
    state = torch.get_rng_state()
    a.add(d, memory_size=8, selection="random", generator=gen(3))
    b.add(d, memory_size=8, selection="random", generator=gen(3))
    c.add(d, memory_size=8, selection="random", generator=gen(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.data().x, b.data().x) and not torch.equal(a.data().x, c.data().x)


def test_herding_takes_a_feature_function_or_precomputed_features() -> None:
    d = data([0] * 6 + [1] * 6)
    features = torch.randn(12, 3, generator=gen(1))
    by_tensor, by_function = ClassMemory(), ClassMemory()
    by_tensor.add(d, memory_size=6, features=features)
    by_function.add(d, memory_size=6, features=lambda x: features[x[:, 0].long()])
    assert torch.equal(by_tensor.data().x, by_function.data().x)
    expected = herding(features[6:], 3) + 6
    assert by_tensor.of_class(1).x[:, 0].long().tolist() == expected.tolist()
    with pytest.raises(ValueError, match="herding needs features"):
        ClassMemory().add(d, memory_size=6)
    with pytest.raises(ValueError, match="features have 3 rows but data has 12"):
        ClassMemory().add(d, memory_size=6, features=features[:3])


def test_herding_with_a_model_as_the_feature_function() -> None:
    stream = build_stream("split", source="digits", scenario="class", num_tasks=1, seed=0)
    model = build_model("mlp", stream)
    memory = ClassMemory()
    memory.add(stream.tasks[0].train, memory_size=20, features=model.features)
    assert memory.classes == [0, 1] and memory.count == [10, 10]


def test_a_class_added_again_is_chosen_again() -> None:
    memory = ClassMemory()
    memory.add(data([0] * 4 + [1] * 4), memory_size=4, selection="random", generator=gen())
    memory.add(data([1] * 6, task=1), memory_size=4, selection="random", generator=gen())
    assert memory.classes == [0, 1] and memory.count == [2, 2]
    assert memory.of_class(1).t.tolist() == [1, 1]


class Holder(Strategy):
    name = "holder"
    state: ClassMemory

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.state = ClassMemory()


def test_the_memory_is_saved_and_restored_with_the_strategy() -> None:
    model = torch.nn.Linear(2, 2)
    strategy = Holder(model)
    strategy.state.add(data([0] * 5 + [1] * 5), memory_size=6, selection="random",
                       generator=gen())
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    fresh = Holder(torch.nn.Linear(2, 2))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.state.classes == [0, 1] and fresh.state.count == [3, 3]
    assert torch.equal(fresh.state.data().x, strategy.state.data().x)
    assert torch.equal(fresh.state.sample(4, gen(2)).x, strategy.state.sample(4, gen(2)).x)


def test_herding_equals_the_direct_formula_on_random_features() -> None:
    # herding() decides each step by one matrix-vector product; the algorithm as written
    # computes ‖μ − (S + φ_i)/k‖ for every i. Both must pick the same exemplars.
    g = torch.Generator().manual_seed(5)
    features = torch.randn(60, 8, generator=g).relu()  # some rows all zero, as after a ReLU
    features[3] = 0
    phi = torch.nn.functional.normalize(features.double(), dim=1)
    mu, total, picked = phi.mean(0), torch.zeros(8, dtype=torch.float64), []
    for k in range(1, 21):
        gap = (mu - (total + phi) / k).norm(dim=1)
        gap[picked] = float("inf")
        picked.append(int(gap.argmin()))
        total += phi[picked[-1]]
    assert herding(features, 20).tolist() == picked
