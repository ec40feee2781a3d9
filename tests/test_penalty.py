"""The quadratic-penalty family (L2, EWC, online EWC, SI, MAS): maths by hand, estimators
against brute force, behaviour on small real digits, and exact state round trips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import Stream, Task, TensorData
from lifelong.errors import ConfigError
from lifelong.metrics import bwt
from lifelong.optim import LoopStep
from lifelong.quadratic import Quadratic
from lifelong.strategies import build_strategy
from lifelong.strategies._penalty import QuadraticAnchor
from lifelong.strategies.base import Batch
from lifelong.strategies.ewc import EWC, diagonal_fisher
from lifelong.strategies.mas import MAS
from lifelong.strategies.si import SI

METHODS = ("l2", "ewc", "si", "mas")


class Pair(nn.Module):
    """Two weights and nothing else: logits (0, w·x)."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([w]))

    def forward(self, x: torch.Tensor, t: object = None) -> torch.Tensor:
        z = x @ self.weight[0]
        return torch.stack([torch.zeros_like(z), z], 1)


def tiny_task(n: int = 12, seed: int = 0, garbage: bool = False) -> Task:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] > 0).long()
    if garbage:
        y = torch.randint(0, 4, (n,), generator=g)
    data = TensorData(x, y, torch.zeros(n, dtype=torch.int64))
    return Task("tiny/0", 0, data, data, (0, 1))


# ------------------------------------------------------------------------------ penalty
def test_penalty_matches_hand_computation() -> None:
    model = nn.Linear(2, 1, bias=False)
    model.weight.data = torch.tensor([[1.0, 2.0]])
    ewc = EWC(model, strength=2.0, step="gradient")  # strength/2 · Σ Ω (θ − θ*)²: scale 1
    ewc.state.anchors = [{"weight": torch.zeros(1, 2)}]
    ewc.state.importances = [{"weight": torch.tensor([[1.0, 3.0]])}]
    assert quadratic(ewc).value().item() == pytest.approx(13.0)  # 1·1² + 3·2²
    # Two terms: + 2·(1−1)² + 1·(2−(−1))² = 9; folding them keeps the value exact.
    ewc.state.anchors = [*ewc.state.anchors, {"weight": torch.tensor([[1.0, -1.0]])}]
    ewc.state.importances = [*ewc.state.importances, {"weight": torch.tensor([[2.0, 1.0]])}]
    assert quadratic(ewc).value().item() == pytest.approx(22.0)
    # strength/2 for EWC (Eq. 3), strength alone for SI/MAS.
    si = SI(model, strength=2.0, step="gradient")
    si.state.anchors, si.state.importances = ewc.state.anchors, ewc.state.importances
    assert quadratic(si).value().item() == pytest.approx(44.0)
    # The loss a strategy returns is the task's alone: the loop adds the penalty.
    batch = Batch(torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64), torch.zeros(1))
    logits = torch.zeros(1, 2)
    assert torch.equal(ewc.loss(batch, logits), F.cross_entropy(logits, batch.y))
    # ... by its gradient, whose value the loop reports with the loss.
    value, pull = quadratic(ewc).gradients()
    assert value.item() == pytest.approx(22.0)
    assert EWC(model, strength=0.0).quadratic() is None  # strength 0: no penalty at all


def quadratic(s: QuadraticAnchor) -> Quadratic:
    q = s.quadratic()
    assert q is not None
    return q


def test_penalty_gradient_equals_autograd_of_the_formula() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    ewc = EWC(model, strength=3.0)  # scale 1.5
    terms = [({n: torch.randn_like(p) for n, p in model.named_parameters()},
              {n: torch.rand_like(p) for n, p in model.named_parameters()}) for _ in range(3)]
    ewc.state.anchors = [a for a, _ in terms]
    ewc.state.importances = [o for _, o in terms]
    value, fast = quadratic(ewc).gradients()
    ref = sum(((o[n] * (p - a[n]) ** 2).sum() for a, o in terms
               for n, p in model.named_parameters()), torch.zeros(()))
    (1.5 * ref).backward()
    assert value.item() == pytest.approx(1.5 * ref.item(), rel=1e-5)
    for g, p in zip(fast, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


class Still(nn.Module):
    """Two weights the logits do not depend on: only a penalty moves them."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([w]))

    def forward(self, x: torch.Tensor, t: object = None) -> torch.Tensor:
        return torch.zeros(len(x), 2) + 0.0 * self.weight.sum()  # a zero gradient


def _penalty_steps(strength: float, optimizer: str, steps: int, cap: bool = False,
                   step: str = "gradient", momentum: float = 0.0) -> torch.Tensor:
    model = Still([1.0, 1.0])
    ewc = EWC(model, strength=strength, stiffness_cap=cap, step=step)  # type: ignore[arg-type]
    ewc.state.anchors = [{"weight": torch.zeros(1, 2)}]
    ewc.state.importances = [{"weight": torch.tensor([[1.0, 1000.0]])}]
    opt: torch.optim.Optimizer = (torch.optim.SGD(model.parameters(), lr=0.1,
                                                  momentum=momentum)
                                  if optimizer == "sgd" else
                                  torch.optim.Adam(model.parameters(), lr=0.1))
    batch = Batch(torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64), torch.zeros(2))
    step = LoopStep(ewc, opt)  # the loop's step, which follows the penalty
    for _ in range(steps):
        ewc.train_batch(batch, step)
    return model.weight.detach()[0]


def test_the_default_penalty_is_the_papers_exact_one() -> None:
    # Curvature λ·Ω = 1000 on the second weight: plain SGD at lr 0.1 multiplies its distance
    # to the anchor by (1 − lr·λ·Ω) = −99 each step, as the exact penalty says; the gentle
    # one by 0.9.
    exact = _penalty_steps(1.0, "sgd", 3)
    assert exact[1].item() == pytest.approx((-99.0) ** 3, rel=1e-5)
    assert exact[0].item() == pytest.approx(0.9 ** 3, rel=1e-6)
    # No method caps its penalty by default; EWC, SI and MAS choose the step by optimizer
    # and normalise each task's importance; L2 keeps the plain gradient step and Ω = 1.
    assert {n: (s.step, s.stiffness_cap, s.normalize) for n, s in (
        (n, build_strategy(n, nn.Linear(2, 2))) for n in METHODS)} == {  # type: ignore[attr-defined]
        "l2": ("gradient", False, False), "ewc": ("auto", False, True),
        "si": ("auto", False, True), "mas": ("auto", False, True)}


def test_the_proximal_step_is_the_implicit_step_on_the_penalty() -> None:
    # θ ← θ / (1 + lr·λ·Ω) per step (factor ½: curvature λ·Ω): stable at any stiffness.
    w = _penalty_steps(1.0, "sgd", 3, step="proximal")
    assert w[0].item() == pytest.approx(1.1 ** -3, rel=1e-6)
    assert w[1].item() == pytest.approx(101.0 ** -3, rel=1e-5)
    # With momentum μ the step size at rest is lr / (1 − μ); the task gradient is 0 here, so
    # momentum adds nothing and the step is θ / (1 + lr·λ·Ω / (1 − μ)).
    w = _penalty_steps(1.0, "sgd", 2, step="proximal", momentum=0.5)
    assert w[0].item() == pytest.approx(1.2 ** -2, rel=1e-6)


def test_the_proximal_step_works_with_adam_in_its_metric() -> None:
    # Adam's step size along a weight is lr / (√v̂ + ε); the implicit step uses it: θ ←
    # θ / (1 + lr/(√v̂+ε) · λ·Ω). Here the task gradient is 0, so v̂ = 0 and the step size is
    # lr / ε: each weight lands on its anchor, the exact minimum, however stiff the pull.
    w = _penalty_steps(1.0, "adam", 1, step="proximal")
    assert torch.isfinite(w).all() and w.abs().max().item() < 1e-6
    # With a task gradient, v̂ > 0: one step by hand on a weight the loss reaches.

    class Squared(EWC):
        def loss(self, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
            return (logits ** 2).mean()  # gradient 2θ for x = 1

    model = Line(2.0)
    sq = Squared(model, strength=4.0, step="proximal")  # scale 2: curvature 4·Ω
    sq.state.anchors = [{"weight": torch.zeros(1, 1)}]
    sq.state.importances = [{"weight": torch.ones(1, 1)}]
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.ones(4, 1), torch.zeros(4, dtype=torch.int64)
    sq.train_batch(Batch(x, y, torch.zeros(4)), LoopStep(sq, opt))
    # Adam's first step: θ −= lr · g / (|g| + ε) with g = 4, then v̂ = g² and the implicit
    # step divides by 1 + c, c = lr / (|g| + ε) · 2 · scale · Ω.
    rate = 0.1 / (4 + 1e-8)
    assert model.weight.item() == pytest.approx((2 - 4 * rate) / (1 + rate * 4), rel=1e-6)


class Line(nn.Module):
    """y = w·x, one weight."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[w]]))

    def forward(self, x: torch.Tensor, t: object = None) -> torch.Tensor:
        return x @ self.weight.T


def test_the_auto_step_is_proximal_with_plain_sgd_and_the_gradient_step_otherwise() -> None:
    # Plain SGD: exactly the proximal iterates (θ / (1 + lr·λ·Ω) per step).
    assert torch.equal(_penalty_steps(1.0, "sgd", 3, step="auto"),
                       _penalty_steps(1.0, "sgd", 3, step="proximal"))
    # Adam: exactly the paper's gradient step, no error, finite at a stiff penalty.
    auto = _penalty_steps(1.0, "adam", 20, step="auto")
    assert torch.equal(auto, _penalty_steps(1.0, "adam", 20, step="gradient"))
    assert torch.isfinite(auto).all()
    # Asking for the stiffness cap makes 'auto' the capped gradient step (the cap is a
    # gradient-step device): SGD lands on the anchor as in the capped test below.
    assert torch.equal(_penalty_steps(1.0, "sgd", 3, step="auto", cap=True),
                       _penalty_steps(1.0, "sgd", 3, step="gradient", cap=True))


class Fixed(QuadraticAnchor):
    """A penalty whose importance of each task is given: to check what after_task stores."""

    name = "fixed"
    factor = 1.0

    def __init__(self, model: nn.Module, omegas: list[dict[str, torch.Tensor]], *,
                 online: bool, normalize: bool) -> None:
        super().__init__(model, strength=1.0, normalize=normalize)
        self.online = online
        self.omegas = omegas

    def importance(self, task: Task) -> dict[str, torch.Tensor]:
        return self.omegas[len(self.state.importances) if not self.online else task.index]


@pytest.mark.parametrize("online", [False, True])
def test_normalize_divides_each_tasks_importance_by_its_mean(online: bool) -> None:
    model = nn.Linear(2, 1)  # weight (1, 2) and bias (1,): three entries
    omegas = [{"weight": torch.tensor([[1.0, 3.0]]), "bias": torch.tensor([2.0])},  # mean 2
              {"weight": torch.tensor([[0.0, 0.0]]), "bias": torch.tensor([3e-6])}]  # mean 1e-6
    tasks = [Task(f"tiny/{i}", i, tiny_task().train, tiny_task().train, (0, 1)) for i in (0, 1)]
    s = Fixed(model, omegas, online=online, normalize=True)
    for task in tasks:
        s.after_task(task)
    first = {"weight": torch.tensor([[0.5, 1.5]]), "bias": torch.tensor([1.0])}
    second = {"weight": torch.tensor([[0.0, 0.0]]), "bias": torch.tensor([3.0])}
    expected = ([{n: first[n] + second[n] for n in first}] if online else [first, second])
    assert len(s.state.importances) == len(expected)
    for got, want in zip(s.state.importances, expected, strict=True):
        for n in want:
            torch.testing.assert_close(got[n], want[n])
    # The paper's form keeps Ω as estimated; an all-zero Ω stays zero when normalised.
    raw = Fixed(model, omegas, online=False, normalize=False)
    raw.after_task(tasks[0])
    assert torch.equal(raw.state.importances[0]["weight"], omegas[0]["weight"])
    zero = Fixed(model, [{n: torch.zeros_like(v) for n, v in omegas[0].items()}],
                 online=False, normalize=True)
    zero.after_task(tasks[0])
    assert all(v.abs().sum() == 0 for v in zero.state.importances[0].values())


@pytest.mark.parametrize("name", ["ewc", "si", "mas"])
def test_each_estimate_is_stored_with_mean_one_over_all_weights(name: str,
                                                                split_digits: Stream) -> None:
    # A multi-head model: the unused heads' zeros count in the mean, as every weight does.
    s = build_strategy(name, build_model("mlp", split_digits, hidden=[16], seed=0))
    two = Stream(split_digits.name, "task", split_digits.tasks[:2], split_digits.num_classes,
                 split_digits.num_outputs, split_digits.input_shape)
    fit_stream(s, two, TrainConfig(epochs=1, batch_size=32, lr=0.05), seed=0)
    assert isinstance(s, QuadraticAnchor)
    total = sum(float(v.sum()) for v in s.state.importances[-1].values())
    count = sum(v.numel() for v in s.state.importances[-1].values())
    # one term per task (EWC) or the sum of two normalised tasks (SI, MAS: online)
    assert total / count == pytest.approx(1.0 if name == "ewc" else 2.0, rel=1e-4)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_proximal_step_converges_to_the_exact_objectives_stationary_point(
        momentum: float) -> None:
    # A stiff penalty (λ·F up to thousands) that plain gradient steps at this lr cannot follow:
    # the proximal iteration settles where ∇(task loss + penalty) = 0.
    task = tiny_task(n=16)
    model = Pair([0.5, -0.5])
    ewc = EWC(model, strength=5000.0, step="proximal")
    ewc.state.anchors = [{n: torch.full_like(p, 0.3) for n, p in model.named_parameters()}]
    ewc.state.importances = [{n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1))
                              for n, p in model.named_parameters()}]
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=momentum)
    d = task.train
    batch = Batch(d.x, d.y, d.t)
    step = LoopStep(ewc, opt)
    for _ in range(3000):
        ewc.train_batch(batch, step)
    exact = EWC(model, strength=5000.0, step="gradient")
    exact.state = ewc.state
    total = exact.loss(batch, model(d.x)) + quadratic(exact).value()
    grads = torch.autograd.grad(total, list(model.parameters()))
    assert max(float(g.abs().max()) for g in grads) < 1e-4


def test_a_diverging_exact_penalty_names_the_proximal_step(permuted_digits: Stream) -> None:
    from lifelong.errors import DivergenceError

    model = build_model("mlp", permuted_digits, hidden=[32], seed=0)
    with pytest.raises(DivergenceError, match="step=proximal"):
        fit_stream(EWC(model, strength=1e7, step="gradient"), permuted_digits,
                   TrainConfig(epochs=2, batch_size=32, lr=0.1, device="cpu"), seed=0)
    # ... and the proximal step runs the same setting to the end, keeping task 1 far better.
    stable = EWC(build_model("mlp", permuted_digits, hidden=[32], seed=0), strength=1e7,
                 step="proximal")
    R = fit_stream(stable, permuted_digits,
                   TrainConfig(epochs=2, batch_size=32, lr=0.1, device="cpu"), seed=0).matrix
    assert all(v == v for row in R for v in row)
    assert R[-1][0] >= R[1][0] - 0.02  # task 1 held where it was


def test_online_ewc_penalises_gamma_times_the_running_fisher() -> None:
    # Schwarz et al. 2018: the penalty on task i is ½λ·γ·F*_{i−1}, F* = γ·F*_{i−2} + F_{i−1}.
    model = nn.Linear(2, 1, bias=False)
    model.weight.data = torch.tensor([[1.0, 2.0]])
    ewc = EWC(model, strength=2.0, online=True, decay=0.5, step="gradient")
    ewc.state.anchors = [{"weight": torch.zeros(1, 2)}]
    ewc.state.importances = [{"weight": torch.tensor([[1.0, 3.0]])}]
    assert quadratic(ewc).value().item() == pytest.approx(0.5 * 2.0 * 0.5 * 13.0)


def test_importances_of_parameters_the_model_no_longer_has_are_an_error() -> None:
    from lifelong.errors import StateError

    model = nn.Sequential(nn.Linear(2, 2))
    ewc = EWC(model)
    ewc.state.anchors = [{"0.weight": torch.zeros(2, 2), "_orig_mod.0.bias": torch.zeros(2)}]
    ewc.state.importances = [{"0.weight": torch.ones(2, 2), "_orig_mod.0.bias": torch.ones(2)}]
    with pytest.raises(StateError, match="_orig_mod.0.bias"):
        ewc.quadratic()


def test_the_stiffness_cap_reports_what_it_held() -> None:
    model = Still([1.0, 1.0])
    ewc = EWC(model, strength=1.0, stiffness_cap=True, step="gradient")
    ewc.state.anchors = [{"weight": torch.zeros(1, 2)}]
    ewc.state.importances = [{"weight": torch.tensor([[1.0, 1000.0]])}]
    batch = Batch(torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64), torch.zeros(2))
    step = LoopStep(ewc, torch.optim.SGD(model.parameters(), lr=0.1))  # one task's steps
    ewc.train_batch(batch, step)
    assert step.capped is not None
    fraction, warning = step.capped
    assert fraction == 0.5 and "50.0%" in warning and "stiffness_cap=false" in warning
    uncapped = LoopStep(EWC(Still([1.0, 1.0]), step="gradient"), step.optimizer)
    assert uncapped.capped is None  # no cap, nothing to report


def test_a_penalty_too_stiff_for_sgd_is_capped_when_asked() -> None:
    # Curvature λ·Ω = 1000 on the second weight: plain SGD at lr 0.1 would multiply its
    # distance to the anchor by (1 − 100) each step. Capped at 1/lr, it lands on the anchor.
    w = _penalty_steps(1.0, "sgd", 3, cap=True)
    assert torch.isfinite(w).all()
    assert w[1].abs() < 1e-6
    # The first weight (curvature 1, far below the cap) follows the exact gradient:
    # θ ← θ − lr·λ·Ω·θ, i.e. 0.9³ after three steps.
    assert w[0].item() == pytest.approx(0.9 ** 3, rel=1e-6)
    # Adam rescales its steps: no cap, and no divergence either.
    assert torch.isfinite(_penalty_steps(1.0, "adam", 20, cap=True)).all()


def test_bad_options_are_refused_with_the_option_named() -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="strength"):
        EWC(model, strength=-1.0)
    with pytest.raises(ConfigError, match="fisher"):
        EWC(model, fisher="true")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="decay"):
        EWC(model, online=True, decay=1.5)
    with pytest.raises(ConfigError, match="damping"):
        SI(model, damping=0.0)
    with pytest.raises(ConfigError, match="importance_samples"):
        MAS(model, importance_samples=0)
    with pytest.raises(ConfigError, match="step"):
        SI(model, step="implicit")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exclude each other"):
        EWC(model, step="proximal", stiffness_cap=True)


# ------------------------------------------------------------------------------ L2
def test_l2_holds_every_weight_of_a_single_head_model(permuted_digits: Stream) -> None:
    # Ω = 1 everywhere, also on the weights of pixels that are 0 in every image of the task
    # (they never move, but a later permutation puts ink there: the classic L2 holds them too).
    model = build_model("mlp", permuted_digits, hidden=[16], seed=0)
    s = build_strategy("l2", model)
    fit_stream(s, Stream(permuted_digits.name, "domain", permuted_digits.tasks[:1],
                         permuted_digits.num_classes, permuted_digits.num_outputs,
                         permuted_digits.input_shape), TrainConfig(epochs=1, lr=0.05), seed=0)
    assert isinstance(s, QuadraticAnchor)
    (omega,) = s.state.importances
    assert set(omega) == {n for n, _ in model.named_parameters()}
    assert all(bool((w == 1).all()) for w in omega.values())
    x = permuted_digits.tasks[0].train.x.flatten(1)
    assert bool((x == 0).all(0).any())  # such pixels exist, so the check above means something


def test_l2_in_a_multi_head_model_covers_the_trained_head_only(split_digits: Stream) -> None:
    model = build_model("mlp", split_digits, hidden=[8], seed=0)
    s = build_strategy("l2", model)
    assert isinstance(s, QuadraticAnchor)
    omega = s.importance(split_digits.tasks[1])
    rows = torch.zeros(split_digits.num_heads * split_digits.num_outputs)
    rows[split_digits.num_outputs:2 * split_digits.num_outputs] = 1  # head 2 of 5
    assert torch.equal(omega["head.bias"], rows)
    assert torch.equal(omega["head.weight"], rows[:, None].expand_as(model.head.weight))
    assert all(bool((w == 1).all()) for n, w in omega.items() if not n.startswith("head."))


# ------------------------------------------------------------------------------ EWC
def _brute_force(model: nn.Module, data: TensorData, loss: str) -> dict[str, torch.Tensor]:
    """The reduction by a Python loop over single examples: the reference."""
    out = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(len(data)):
        model.zero_grad()
        logits = model(data.x[i:i + 1], data.t[i:i + 1])
        if loss == "fisher":
            (-F.log_softmax(logits, 1)[0, data.y[i]]).backward()
        else:
            logits.square().sum().backward()
        for name, p in model.named_parameters():
            g = p.grad
            assert g is not None
            out[name] += (g ** 2 if loss == "fisher" else g.abs()) / len(data)
    return out


@pytest.mark.parametrize("model_name,heads", [("mlp", 1), ("mlp", 3), ("cnn", 2)])
@pytest.mark.parametrize("method", ["auto", "vmap", "linear"])
def test_vectorised_importances_equal_a_per_sample_loop(model_name: str, heads: int,
                                                        method: str) -> None:
    from lifelong.models.cnn import CNN
    from lifelong.models.mlp import MLP
    from lifelong.strategies.mas import output_sensitivity

    torch.manual_seed(0)
    model: nn.Module = (MLP((1, 4, 4), 4, heads, hidden=(5, 3)) if model_name == "mlp" else
                        CNN((1, 4, 4), 4, heads, channels=(2,), hidden=5))
    n = 7
    data = TensorData(torch.randn(n, 1, 4, 4), torch.randint(0, 4, (n,)),
                      torch.randint(0, heads, (n,)))
    for loss, fast in (("fisher", diagonal_fisher), ("mas", output_sensitivity)):
        if model_name == "cnn" and method == "linear":
            with pytest.raises(ValueError, match="linear layers"):
                fast(model, data, method=method)  # type: ignore[arg-type]
            continue
        got = fast(model, data, method=method)  # type: ignore[arg-type]
        want = _brute_force(model, data, loss)
        assert set(got) == set(want)
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7)
        if heads == 3:  # rows of heads no example used carry no importance
            for h in set(range(3)) - set(data.t.tolist()):
                assert got["head.weight"][h * 4:(h + 1) * 4].abs().sum() == 0


def test_importances_with_a_frozen_first_layer() -> None:
    # Its output is outside the autograd graph: the closed form must leave it out, not fail.
    from lifelong.models.mlp import MLP

    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, 1, hidden=(5, 4))
    first = model.features[1]
    assert isinstance(first, nn.Linear)
    first.requires_grad_(False)
    data = TensorData(torch.randn(9, 1, 4, 4), torch.randint(0, 3, (9,)),
                      torch.zeros(9, dtype=torch.int64))
    exact = diagonal_fisher(model, data, method="linear")
    looped = diagonal_fisher(model, data, method="vmap")
    assert set(exact) == set(looped) == {n for n, p in model.named_parameters()
                                         if p.requires_grad}
    for name in exact:
        torch.testing.assert_close(exact[name], looped[name], rtol=1e-5, atol=1e-7)


def test_sampled_fisher_is_seeded_and_differs_from_the_empirical_one() -> None:
    task = tiny_task(64)

    def fisher(kind: str, seed: int) -> torch.Tensor:
        e = EWC(Pair([0.5, -0.3]), fisher=kind)  # type: ignore[arg-type]
        e.attach(seed=seed)
        return e.importance(task)["weight"]

    assert torch.equal(fisher("sampled", 0), fisher("sampled", 0))
    assert not torch.equal(fisher("sampled", 0), fisher("sampled", 1))
    assert not torch.equal(fisher("sampled", 0), fisher("empirical", 0))


def test_online_ewc_keeps_exactly_one_decayed_term(permuted_digits: Stream) -> None:
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05)
    online = EWC(build_model("mlp", permuted_digits, hidden=[16], seed=0), strength=10.0,
                 online=True, decay=0.5, fisher_samples=64, normalize=False)
    seen: list[dict[str, torch.Tensor]] = []
    estimate = online.importance

    def spy(task: Task) -> dict[str, torch.Tensor]:
        seen.append(estimate(task))
        return seen[-1]

    online.importance = spy  # type: ignore[method-assign]
    fit_stream(online, permuted_digits, cfg, seed=0)
    assert len(online.state.anchors) == len(online.state.importances) == 1
    for n, p in online.model.named_parameters():
        expected = 0.25 * seen[0][n] + 0.5 * seen[1][n] + seen[2][n]
        torch.testing.assert_close(online.state.importances[0][n], expected)
        assert torch.equal(online.state.anchors[0][n], p.detach())
    offline = EWC(build_model("mlp", permuted_digits, hidden=[16], seed=0), strength=10.0,
                  fisher_samples=64, normalize=False)
    fit_stream(offline, permuted_digits, cfg, seed=0)
    assert len(offline.state.anchors) == len(offline.state.importances) == 3


# ------------------------------------------------------------------------------ SI
def test_si_path_integral_on_a_quadratic_matches_a_hand_computation() -> None:
    # L(θ) = ½ Σ a_i θ_i², plain SGD with rate η: θ_t = (1 − η a)^t θ_0, and each step adds
    # −g·Δθ = η a² θ_t² to ω. After K steps Ω = ω / ((θ_K − θ_0)² + ξ).
    a, theta0, lr, steps, xi = torch.tensor([1.0, 4.0]), torch.tensor([1.0, -2.0]), 0.1, 5, 0.1
    model = Pair(theta0.tolist())
    si = SI(model, damping=xi)
    si.before_task(tiny_task())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (a * model.weight[0] ** 2).sum()).backward()
        opt.step()
        si.after_step()
    thetas = [theta0 * (1 - lr * a) ** t for t in range(steps + 1)]
    omega = sum((lr * a ** 2 * th ** 2 for th in thetas[:-1]), torch.zeros(2))
    expected = omega / ((thetas[-1] - theta0) ** 2 + xi)
    got = si.importance(tiny_task())["weight"][0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_si_importance_is_nonzero_after_a_task_and_old_weights_are_copies(
        permuted_digits: Stream) -> None:
    si = build_strategy("si", build_model("mlp", permuted_digits, hidden=[16], seed=0))
    stream = Stream(permuted_digits.name, permuted_digits.scenario, permuted_digits.tasks[:1],
                    permuted_digits.num_classes, permuted_digits.num_outputs,
                    permuted_digits.input_shape)
    assert isinstance(si, SI)
    si.before_task(stream.tasks[0])
    live = dict(si.model.named_parameters())
    for store in (si.state.previous, si.state.start):
        for n, t in store.items():  # a view of the live weight would make SI a no-op
            assert t.untyped_storage().data_ptr() != live[n].untyped_storage().data_ptr()
    fit_stream(si, stream, TrainConfig(epochs=1, batch_size=32, lr=0.1), seed=0)
    omega = si.state.importances[0]
    assert all(torch.isfinite(o).all() and (o >= 0).all() for o in omega.values())
    assert sum(float(o.sum()) for o in omega.values()) > 1.0
    assert all(float(o.max()) > 0 for o in omega.values())


@pytest.mark.parametrize("step", ["gradient", "proximal"])
def test_si_integrates_the_task_gradient_only(step: str) -> None:
    # A model whose logits do not depend on its weights: only the penalty moves them, and
    # that motion must add nothing to ω.
    model = Still([1.0, 1.0])
    si = SI(model, strength=1.0, step=step)  # type: ignore[arg-type]
    si.state.anchors = [{"weight": torch.zeros(1, 2)}]
    si.state.importances = [{"weight": torch.ones(1, 2)}]
    si.before_task(tiny_task())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.zeros(4, 2)
    for _ in range(3):
        si.train_batch(Batch(x, torch.zeros(4, dtype=torch.int64), torch.zeros(4)),
                       LoopStep(si, opt))
    assert not torch.equal(model.weight.detach(), torch.ones(1, 2))  # the penalty moved it
    assert si.state.omega["weight"].abs().max() < 1e-7  # 0 up to rounding (ω moves ~1e-2)


@pytest.mark.parametrize("step", ["gradient", "proximal"])
def test_si_path_integral_with_task_and_penalty_gradients_together(step: str) -> None:
    # Both pulls at once: ω must integrate −g_task · Δθ, where Δθ is the real step (task and
    # penalty, explicit or implicit) and g_task the task loss's gradient alone, computed here
    # independently.
    model = Pair([0.5, -0.3])
    si = SI(model, strength=2.0, step=step)  # type: ignore[arg-type]
    si.state.anchors = [{"weight": torch.tensor([[1.0, 1.0]])}]
    si.state.importances = [{"weight": torch.tensor([[0.5, 2.0]])}]
    task = tiny_task(n=16, seed=3)
    si.before_task(task)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = torch.zeros(1, 2)
    for i in range(4):
        idx = torch.arange(4 * i, 4 * i + 4)
        x, y = task.train.x[idx], task.train.y[idx]
        w = model.weight.detach().clone().requires_grad_(True)
        z = x @ w[0]
        ce = F.cross_entropy(torch.stack([torch.zeros_like(z), z], 1), y)
        (g_task,) = torch.autograd.grad(ce, w)
        before = model.weight.detach().clone()
        si.train_batch(Batch(x, y, torch.zeros(4, dtype=torch.int64)), LoopStep(si, opt))
        expected -= g_task * (model.weight.detach() - before)
    assert torch.allclose(si.state.omega["weight"], expected, atol=1e-7, rtol=1e-5)
    assert expected.abs().min() > 1e-4  # both coordinates moved by the task


# ------------------------------------------------------------------------------ MAS
def test_mas_importance_ignores_the_labels() -> None:
    model = Pair([0.7, -0.2])
    honest, garbage = tiny_task(32), tiny_task(32, garbage=True)
    assert not torch.equal(honest.train.y, garbage.train.y)
    imps = []
    for task in (honest, garbage):
        mas = MAS(model)
        mas.attach(seed=0)
        imps.append(mas.importance(task)["weight"])
    assert torch.equal(imps[0], imps[1])
    # and it is what Eq. 4 says: mean |∂ (w·x)² / ∂w| = mean |2 (w·x) x|
    x = honest.train.x
    expected = (2 * (x @ model.weight[0]).unsqueeze(1) * x).abs().mean(0)
    torch.testing.assert_close(imps[0][0], expected)


# ----------------------------------------------------------------------- behaviour
# Strengths for this small setting (MLP 64, plain SGD lr 0.05): see each method's docstring.
# The papers' absolute form (normalize=false) at strengths that act on this stream; the
# defaults are covered in test_behaviour.py.
STRENGTH: dict[str, dict[str, object]] = {
    "naive": {}, "l2": {"strength": 1.0}, "ewc": {"strength": 100.0, "normalize": False},
    "si": {"strength": 5.0, "normalize": False}, "mas": {"strength": 0.5, "normalize": False}}


def _fit(name: str, stream: Stream) -> tuple[tuple[float, ...], ...]:
    model = build_model("mlp", stream, hidden=[64], seed=0)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.05)
    return fit_stream(build_strategy(name, model, **STRENGTH[name]), stream, cfg, seed=0).matrix


@pytest.fixture(scope="module")
def naive_matrix(permuted_digits: Stream) -> tuple[tuple[float, ...], ...]:
    return _fit("naive", permuted_digits)


@pytest.mark.parametrize("name", METHODS)
def test_each_method_forgets_less_than_naive(name: str, permuted_digits: Stream,
                                             naive_matrix: tuple[tuple[float, ...], ...]
                                             ) -> None:
    R = _fit(name, permuted_digits)
    assert bwt(R) > bwt(naive_matrix) + 0.05, (name, bwt(R), bwt(naive_matrix))
    assert R[1][0] == naive_matrix[1][0]  # no penalty while learning the first task


@pytest.mark.parametrize("name", METHODS)
def test_multi_head_models_learn_each_task_and_leave_unused_heads_free(
        name: str, split_digits: Stream) -> None:
    # A five-head model trained on the first three tasks: heads 4 and 5 are never used.
    three = Stream(split_digits.name, "task", split_digits.tasks[:3], split_digits.num_classes,
                   split_digits.num_outputs, split_digits.input_shape)
    s = build_strategy(name, build_model("mlp", split_digits, hidden=[32], seed=0))
    R = fit_stream(s, three, TrainConfig(epochs=2, batch_size=32, lr=0.05), seed=0).matrix
    assert all(R[k + 1][k] > 0.6 for k in range(3)), R  # each new head is learned
    assert sum(R[-1]) / 3 > 0.75, R
    assert isinstance(s, QuadraticAnchor)
    for imp in s.state.importances:  # the unused heads' rows carry no importance
        assert imp["head.weight"][3 * 2:].abs().sum() == 0
        assert imp["head.bias"][3 * 2:].abs().sum() == 0
    assert imp["head.weight"][:3 * 2].abs().sum() > 0


@pytest.mark.parametrize("name", METHODS)
def test_warns_once_clearly_in_class_il(name: str) -> None:
    import warnings

    from lifelong.train import LifelongWarning

    stream = build_stream("split", source="digits", num_tasks=3, train_per_task=32,
                          test_per_task=16, scenario="class", seed=0)
    cfg = TrainConfig(epochs=2, batch_size=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_stream(build_strategy(name, build_model("mlp", stream, hidden=[8])), stream, cfg)
    ours = [w for w in caught if issubclass(w.category, LifelongWarning)
            and "scenario" in str(w.message)]  # (this tiny run may also learn nothing)
    assert len(ours) == 1  # once per run, not per task or step
    text = str(ours[0].message)
    assert name in text and "class-incremental" in text and "replay" in text


@pytest.mark.parametrize("name", METHODS)
def test_state_round_trip_mid_task_reproduces_the_next_steps(name: str,
                                                             permuted_digits: Stream) -> None:
    import io

    stream = permuted_digits
    a = build_strategy(name, build_model("mlp", stream, hidden=[16], seed=0))
    first = Stream(stream.name, stream.scenario, stream.tasks[:2], stream.num_classes,
                   stream.num_outputs, stream.input_shape)
    fit_stream(a, first, TrainConfig(epochs=1, batch_size=64, lr=0.05, device="cpu"), seed=3)
    task = stream.tasks[2]
    a.before_task(task)
    opt_a = torch.optim.SGD(list(a.trainable_parameters()), lr=0.05)

    def step(s: object, opt: torch.optim.Optimizer, i: int) -> torch.Tensor:
        idx = torch.arange(i * 16, (i + 1) * 16)
        d = task.train
        return s.train_batch(Batch(d.x[idx], d.y[idx], d.t[idx]),  # type: ignore[attr-defined]
                             LoopStep(s, opt))  # type: ignore[arg-type]

    for i in range(3):  # part-way through the task: SI's path integral is under way
        step(a, opt_a, i)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = build_strategy(name, build_model("mlp", stream, hidden=[16], seed=5))
    b.load_state_dict(torch.load(buf, weights_only=True))
    opt_b = torch.optim.SGD(list(b.trainable_parameters()), lr=0.05)
    la = torch.stack([step(a, opt_a, i) for i in range(3, 6)])
    lb = torch.stack([step(b, opt_b, i) for i in range(3, 6)])
    assert torch.equal(la, lb)
    a.after_task(task)
    b.after_task(task)
    for ia, ib in zip(a.state.importances, b.state.importances, strict=True):  # type: ignore[attr-defined]
        for n in ia:
            assert torch.equal(ia[n], ib[n])


@pytest.mark.parametrize("name", ["ewc", "si", "mas"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_group_at_the_defaults_equals_its_plain_runs(name: str, optimizer: str) -> None:
    # `--seed 0-4` trains seeds as one vectorised group: each member resolves step='auto'
    # from its own optimizer and normalises its own importances, as a plain run does.
    from lifelong.group import Member, fit_group

    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.1 if optimizer == "sgd" else 0.01,
                      optimizer=optimizer, device="cpu")  # type: ignore[arg-type]

    def member(seed: int) -> Member:
        s = build_stream("split", source="digits", num_tasks=3, scenario="task", seed=seed)
        return Member(build_strategy(name, build_model("mlp", s, hidden=[32], seed=seed)), s,
                      seed)

    group = fit_group([member(s) for s in (0, 1)], cfg)
    for r in group:
        m = member(r.seed)
        assert r.matrix == fit_stream(m.strategy, m.stream, cfg, seed=r.seed).matrix


def test_l2_can_hold_every_head_and_only_the_last_anchor_as_hsu_et_al(
        split_digits: Stream) -> None:
    """`heads=all` holds the other tasks' head rows too; `anchor=last` keeps one term, the
    weights after the latest task (Hsu et al.'s code); the defaults hold a task's own head in
    one term per task."""
    two = Stream(split_digits.name, "task", split_digits.tasks[:2], split_digits.num_classes,
                 split_digits.num_outputs, split_digits.input_shape)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, device="cpu")
    fitted = {}
    for options in ({}, {"heads": "all", "anchor": "last"}):
        s = build_strategy("l2", build_model("mlp", two, hidden=[16], seed=0), **options)
        fit_stream(s, two, cfg, seed=0)
        fitted[bool(options)] = s
    own, hsu = fitted[False], fitted[True]
    assert isinstance(own, QuadraticAnchor) and isinstance(hsu, QuadraticAnchor)
    assert len(own.state.importances) == 2 and len(hsu.state.importances) == 1
    head = [n for n in own.state.importances[0] if "head" in n and n.endswith("weight")][0]
    assert 0 < float(own.state.importances[0][head].mean()) < 1  # only task 0's rows held
    assert float(hsu.state.importances[0][head].min()) == 1.0  # every row held
    last = {n: p.detach() for n, p in hsu.model.named_parameters()}
    assert all(torch.equal(hsu.state.anchors[0][n], last[n]) for n in hsu.state.anchors[0])
    with pytest.raises(ConfigError, match="heads="):
        build_strategy("l2", nn.Linear(2, 2), heads="some")
