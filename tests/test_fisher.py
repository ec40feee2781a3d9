"""EWC's three Fisher estimates: the exact one against a loop over examples and classes, the
sampled one converging to it, the empirical one differing from it where it should, and the
task-incremental case (each example's own head)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.task import Task, TensorData
from lifelong.errors import ConfigError
from lifelong.models.mlp import MLP
from lifelong.strategies.ewc import EWC, exact_fisher


class Net(nn.Module):
    """Layers in sequence, taking (and ignoring) the task label as the package's models do."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        out: Tensor = self.body(x)
        return out


def per_class_gradients(model: nn.Module, d: TensorData) -> tuple[Tensor, dict[str, Tensor]]:
    """p_θ(y|x_n) (N, C) and every ∂ log p_θ(y|x_n) / ∂θ (N, C, *shape), by plain autograd on
    one example and one class at a time."""
    model.eval()
    with torch.no_grad():
        probs = F.softmax(model(d.x, d.t), 1)
    n, c = probs.shape
    grads = {name: torch.zeros(n, c, *p.shape) for name, p in model.named_parameters()}
    for i in range(n):
        for y in range(c):
            model.zero_grad()
            F.log_softmax(model(d.x[i:i + 1], d.t[i:i + 1]), 1)[0, y].backward()
            for name, p in model.named_parameters():
                assert p.grad is not None
                grads[name][i, y] = p.grad
    return probs, grads


def brute_force_exact(model: nn.Module, d: TensorData) -> dict[str, Tensor]:
    probs, grads = per_class_gradients(model, d)
    shape = probs.shape
    return {name: (probs.view(*shape, *[1] * (g.dim() - 2)) * g ** 2).sum(1).mean(0)
            for name, g in grads.items()}


def mlp_data(heads: int, n: int = 9, seed: int = 0) -> tuple[MLP, TensorData]:
    torch.manual_seed(seed)
    model = MLP((1, 3, 3), 4, heads, hidden=(5,))
    d = TensorData(torch.randn(n, 1, 3, 3), torch.randint(0, 4, (n,)),
                   torch.randint(0, heads, (n,)))
    return model, d


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("method", ["auto", "linear", "vmap"])
def test_exact_fisher_matches_a_loop_over_examples_and_classes(heads: int, method: str) -> None:
    model, d = mlp_data(heads)
    got = exact_fisher(model, d, method=method)  # type: ignore[arg-type]
    want = brute_force_exact(model, d)
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-8)


def test_a_multi_head_model_uses_each_examples_own_head() -> None:
    model, d = mlp_data(3, n=12)
    d = TensorData(d.x, d.y, torch.tensor([0, 2] * 6))  # head 1 sees no example
    fisher = exact_fisher(model, d)
    rows = fisher["head.weight"].view(3, 4, -1).abs().sum((1, 2))
    assert rows[0] > 0 and rows[2] > 0 and rows[1] == 0
    # Each example's classes are those of its own head: moving every example to head 1 moves
    # the whole head importance there, with the same numbers the heads 0/2 split had.
    moved = exact_fisher(model, TensorData(d.x, d.y, torch.ones(12, dtype=torch.int64)))
    assert moved["head.weight"].view(3, 4, -1)[[0, 2]].abs().sum() == 0
    torch.testing.assert_close(moved, brute_force_exact(model, TensorData(
        d.x, d.y, torch.ones(12, dtype=torch.int64))), rtol=1e-5, atol=1e-8)


def tiny_task(d: TensorData) -> Task:
    return Task("fisher/0", 0, d, d, (0, 1, 2))


def test_sampled_fisher_converges_to_the_exact_one() -> None:
    # The sampled Fisher over M copies of N examples is the mean of M independent sampled
    # Fishers of the N: within a few standard errors of the exact value (the standard error
    # from the per-class gradients, so the bound holds for any seed, not one lucky draw).
    torch.manual_seed(0)
    model = Net(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3))
    base = TensorData(torch.randn(6, 2), torch.zeros(6, dtype=torch.int64),
                      torch.zeros(6, dtype=torch.int64))
    probs, grads = per_class_gradients(model, base)
    copies = 3000
    many = TensorData(base.x.repeat(copies, 1), base.y.repeat(copies), base.t.repeat(copies))
    ewc = EWC(model, fisher="sampled", fisher_samples=None)
    ewc.attach(seed=0)
    sampled = ewc.importance(tiny_task(many))
    exact = exact_fisher(model, base)
    for name, g in grads.items():
        p = probs.view(*probs.shape, *[1] * (g.dim() - 2))
        mean_sq, mean_4th = (p * g ** 2).sum(1), (p * g ** 4).sum(1)  # per example
        stderr = ((mean_4th - mean_sq ** 2).sum(0) / copies).sqrt() / len(base)
        assert bool(((sampled[name] - exact[name]).abs() <= 5 * stderr + 1e-7).all()), name
        torch.testing.assert_close(exact[name], mean_sq.mean(0), rtol=1e-5, atol=1e-8)


def test_empirical_fisher_differs_from_the_exact_one_when_confidently_wrong() -> None:
    # The model is sure of class 0; the labels say 1. The exact Fisher weighs the gradients by
    # the model's own p(y|x), so it is nearly zero (log p(0|x) is flat at p ≈ 1); the
    # empirical one takes the large gradient of log p(1|x).
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([8.0, 0.0, 0.0]))
    model = Net(layer)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    task = tiny_task(TensorData(x, torch.ones(20, dtype=torch.int64),
                                torch.zeros(20, dtype=torch.int64)))

    def total(kind: str) -> float:
        ewc = EWC(model, fisher=kind, fisher_samples=None)  # type: ignore[arg-type]
        ewc.attach(seed=0)
        return sum(float(v.sum()) for v in ewc.importance(task).values())

    assert total("exact") < 0.01 * total("empirical")
    assert total("exact") > 0


def test_exact_is_the_default_and_a_bad_choice_names_all_three() -> None:
    assert EWC(nn.Linear(2, 2)).fisher == "exact"
    with pytest.raises(ConfigError, match="'exact'.*'sampled'.*'empirical'"):
        EWC(nn.Linear(2, 2), fisher="fisher")  # type: ignore[arg-type]
