"""`per_sample_gradient_mean`: the linear closed form gives the vmap result or steps aside, on
models built to fool its hooks; the package's MLPs keep the fast path; per-example and
per-label weights against a loop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.task import TensorData
from lifelong.models.heads import MultiHead
from lifelong.models.mlp import MLP
from lifelong.strategies import _per_sample
from lifelong.strategies._per_sample import per_sample_gradient_mean


def nll(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def squared_norm(logits: Tensor, y: Tensor) -> Tensor:
    return logits.square().sum(1)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"square": nll, "abs": squared_norm}


class KeywordHead(nn.Module):
    """Passes the task label to a several-head `MultiHead` by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.head = MultiHead(5, 3, num_heads=4)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        out: Tensor = self.head(torch.tanh(self.fc(x)), t=t)
        return out


class InPlaceReLU(nn.Module):
    """A functional in-place ReLU rewrites the first layer's recorded output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        out: Tensor = self.out(F.relu(self.fc(x), inplace=True))
        return out


class TiedWeight(nn.Module):
    """The first layer's weight is used a second time outside the layer, which no hook sees:
    only the comparison with the batch gradient can tell."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        h = torch.tanh(self.fc(x))
        out: Tensor = self.out(torch.tanh(F.linear(h, self.fc.weight)))
        return out


def data(n: int = 40, heads: int = 4, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g),
                      torch.randint(0, heads, (n,), generator=g))


def assert_same(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduce", ["square", "abs"])
def test_a_task_label_passed_by_keyword_reaches_the_closed_form(reduce: str) -> None:
    torch.manual_seed(0)
    model, d = KeywordHead(), data()
    want = per_sample_gradient_mean(model, d, LOSSES[reduce], reduce,  # type: ignore[arg-type]
                                    method="vmap")
    for method in ("auto", "linear"):  # the fast path itself is right, not just a fallback
        got = per_sample_gradient_mean(model, d, LOSSES[reduce], reduce,  # type: ignore[arg-type]
                                       method=method)  # type: ignore[arg-type]
        assert_same(got, want)
    used = set(d.t.tolist())
    for h in range(4):  # every head an example used has importance, and only those
        rows = want["head.weight"][h * 3:(h + 1) * 3]
        assert bool(rows.abs().sum() > 0) == (h in used)


@pytest.mark.parametrize("model_type,reason", [(InPlaceReLU, "in-place"),
                                               (TiedWeight, "batch gradient")])
@pytest.mark.parametrize("reduce", ["square", "abs"])
def test_models_the_hooks_misread_fall_back_to_vmap(model_type: type[nn.Module], reason: str,
                                                     reduce: str) -> None:
    torch.manual_seed(0)
    model, d = model_type(), data()
    loss = LOSSES[reduce]
    want = per_sample_gradient_mean(model, d, loss, reduce, method="vmap")  # type: ignore[arg-type]
    assert_same(per_sample_gradient_mean(model, d, loss, reduce), want)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=reason):
        per_sample_gradient_mean(model, d, loss, reduce, method="linear")  # type: ignore[arg-type]


@pytest.mark.parametrize("heads,dropout", [(1, 0.0), (3, 0.0), (3, 0.5)])
def test_the_package_mlp_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch, heads: int,
                                             dropout: float) -> None:
    from lifelong.strategies.ewc import diagonal_fisher, exact_fisher
    from lifelong.strategies.mas import output_sensitivity

    def no_vmap(*args: object) -> None:
        raise AssertionError("the closed form stepped aside on the package's MLP")

    torch.manual_seed(0)
    model = MLP((1, 4, 4), 5, heads, hidden=(8, 6), dropout=dropout)
    n = 50
    d = TensorData(torch.randn(n, 1, 4, 4), torch.randint(0, 5, (n,)),
                   torch.randint(0, heads, (n,)))
    monkeypatch.setattr(_per_sample, "_vmap", no_vmap)
    for estimate in (diagonal_fisher, exact_fisher, output_sensitivity):
        out = estimate(model, d)
        assert all(bool(v.isfinite().all()) for v in out.values())
    assert model.training  # the mode it came in with is restored


def _looped(model: nn.Module, d: TensorData, weights: Tensor) -> dict[str, Tensor]:
    """(1/N) Σ_n Σ_k w_nk (∂ nll(f(x_n), k) / ∂θ)², one backward pass per example and label."""
    model.eval()
    out = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for n in range(len(d)):
        for k in range(weights.shape[1]):
            model.zero_grad()
            nll(model(d.x[n:n + 1], d.t[n:n + 1]), torch.tensor([k])).sum().backward()
            for name, p in model.named_parameters():
                assert p.grad is not None
                out[name] += weights[n, k] * p.grad ** 2 / len(d)
    return out


@pytest.mark.parametrize("method", ["linear", "vmap"])
def test_weights_per_example_and_per_label_match_a_loop(method: str) -> None:
    torch.manual_seed(0)
    model, d = KeywordHead(), data(n=12)
    g = torch.Generator().manual_seed(1)
    w = torch.rand(12, 3, generator=g)
    w[:, 1] = 0  # a label nobody weighs is skipped, and adds nothing
    got = per_sample_gradient_mean(model, d, nll, "square", weights=w,
                                   method=method)  # type: ignore[arg-type]
    assert_same(got, _looped(model, d, w))
    # One weight per example applies to the labels `d.y`.
    per_example = torch.zeros(12, 3)
    per_example[torch.arange(12), d.y] = w[:, 0]
    got = per_sample_gradient_mean(model, d, nll, "square", weights=w[:, 0],
                                   method=method)  # type: ignore[arg-type]
    assert_same(got, _looped(model, d, per_example))


def test_weights_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="one row per example"):
        per_sample_gradient_mean(KeywordHead(), data(n=5), nll, "square",
                                 weights=torch.ones(4))
