"""GEM's QP and A-GEM's closed form by hand; the gradient helpers; behaviour on real digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.memory import EpisodicMemory
from lifelong.metrics import bwt
from lifelong.strategies import build_strategy
from lifelong.strategies._gradients import (
    TaskGradients,
    agem_project,
    flat_grad,
    gem_project,
    memory_gradient,
    write_grad,
)
from lifelong.strategies.base import Batch


def vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


SOLVERS = ["quadprog", "nnls"]


@pytest.mark.parametrize("solver", SOLVERS)
def test_gem_projection_matches_a_hand_solved_two_task_qp(solver: str) -> None:
    # Past-task gradients g1 = (1, 0), g2 = (1, 1); g = (−1, 0.5) violates both (−1, −0.5).
    # The closest z with z1 ≥ 0 and z1 + z2 ≥ 0 is (0, 0.5): dual v = (1, 0).
    G = torch.stack([vec(1, 0), vec(1, 1)])
    g = vec(-1, 0.5)
    out = gem_project(g, G, margin=0.0, solver=solver)  # type: ignore[arg-type]
    assert out.tolist() == pytest.approx([0.0, 0.5], abs=1e-6)
    assert bool((G @ out >= -1e-6).all())  # now violates nothing
    # A gradient that violates nothing is left as it is.
    ok = vec(1, 1)
    assert gem_project(ok, G, solver=solver).tolist() == pytest.approx([1, 1], abs=1e-6)  # type: ignore[arg-type]


@pytest.mark.parametrize("solver", SOLVERS)
def test_gem_margin_is_a_floor_on_the_dual(solver: str) -> None:
    # G = I, g = (−1, 2): min ½|v|² − v1 + 2 v2 s.t. v ≥ 0.5 gives v = (1, 0.5), so
    # g̃ = g + v = (0, 2.5).
    out = gem_project(vec(-1, 2), torch.eye(2), margin=0.5, solver=solver)  # type: ignore[arg-type]
    assert out.tolist() == pytest.approx([0.0, 2.5], abs=1e-6)


@pytest.mark.parametrize("solver", SOLVERS)
def test_gem_projection_with_parallel_task_gradients(solver: str) -> None:
    # A singular Gram matrix (g2 = 2·g1): the projection is still onto z1 ≥ 0.
    G = torch.stack([vec(1, 0), vec(2, 0)])
    out = gem_project(vec(-1, 1), G, solver=solver)  # type: ignore[arg-type]
    assert out.tolist() == pytest.approx([0.0, 1.0], abs=1e-5)


def test_gem_solvers_agree_on_random_problems() -> None:
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, 8):
        G = torch.randn(k, 50, generator=g, dtype=torch.float64)
        v = torch.randn(50, generator=g, dtype=torch.float64)
        a = gem_project(v, G, margin=0.1, solver="quadprog")
        b = gem_project(v, G, margin=0.1, solver="nnls")
        assert torch.allclose(a, b, atol=1e-6)
        exact = gem_project(v, G, margin=0.0)
        assert bool((G @ exact >= -1e-8).all())


def test_agem_closed_form_by_hand() -> None:
    # g = (1, −2), g_ref = (0, 2): gᵀg_ref = −4 < 0, so g̃ = g − (−4/4)·g_ref = (1, 0).
    assert agem_project(vec(1, -2), vec(0, 2)).tolist() == pytest.approx([1.0, 0.0])
    # g = (3, 4), g_ref = (1, 1) (gᵀg_ref = 7 ≥ 0): unchanged.
    assert agem_project(vec(3, 4), vec(1, 1)).tolist() == pytest.approx([3.0, 4.0])
    # g = (1, −1), g_ref = (−1, 2): gᵀg_ref = −3, |g_ref|² = 5: g̃ = (1 − 3/5, −1 + 6/5).
    out = agem_project(vec(1, -1), vec(-1, 2))
    assert out.tolist() == pytest.approx([0.4, 0.2])
    assert float(out @ vec(-1, 2)) == pytest.approx(0.0, abs=1e-6)
    assert agem_project(vec(1, -1), vec(0, 0)).tolist() == [1.0, -1.0]  # no reference


def test_flat_grad_and_write_grad_round_trip() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    params = list(model.parameters())
    model(torch.ones(4, 3)).sum().backward()  # type: ignore[no-untyped-call]
    flat = flat_grad(params)
    assert flat.shape == (3 * 2 + 2 + 2 + 1,)
    write_grad(params, torch.arange(11.0))
    assert torch.equal(flat_grad(params), torch.arange(11.0))
    assert params[0].grad is not None and params[0].grad.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_task_gradients_vmapped_equal_a_loop_over_tasks() -> None:
    """One row per past task, padding ignored, each task scored by its own head (task-IL)."""
    stream = build_stream("split", source="digits", scenario="task", num_tasks=3,
                          train_per_task=40, seed=0)
    model = build_model("mlp", stream, hidden=[16], seed=0)
    mem = EpisodicMemory()
    g = torch.Generator().manual_seed(0)
    for task, slots in zip(stream.tasks, (12, 12, 5), strict=True):
        mem.add(task.key, task.train, slots=slots, generator=g)
    layout = mem.per_task(None, g)
    params = list(model.parameters())
    fast = TaskGradients(model, params)(layout)
    assert fast.shape == (3, sum(p.numel() for p in params))
    start = 0
    for k, n in enumerate(mem.count):
        assert mem.x is not None and mem.y is not None and mem.t is not None
        part = slice(start, start + n)
        slow = memory_gradient(model, params, Batch(mem.x[part], mem.y[part], mem.t[part]))
        assert torch.allclose(fast[k], slow, atol=1e-6)
        start += n
    looped = TaskGradients(model, params)
    looped.use_loop = True
    assert torch.allclose(looped(layout), fast, atol=1e-6)


def test_gem_step_violates_no_past_task(split_digits) -> None:  # type: ignore[no-untyped-def]
    """After `after_backward`, ⟨g̃, g_k⟩ ≥ 0 for every past task k (margin 0, all memories)."""
    gem = build_strategy("gem", build_model("mlp", split_digits, hidden=[32], seed=0),
                         memory_strength=0.0, memory_size=20)
    fit_stream(gem, split_digits.__class__(
        split_digits.name, split_digits.scenario, split_digits.tasks[:2],
        split_digits.num_classes, split_digits.num_outputs, split_digits.input_shape),
        TrainConfig(epochs=1, batch_size=10, lr=0.1, device="cpu"), seed=0)
    task = split_digits.tasks[2]
    gem.before_task(task)
    params = list(gem.trainable_parameters())
    G = TaskGradients(gem.model, params)(gem.state.per_task(None, gem.draws()))
    projected = 0
    for i in range(10):
        idx = torch.arange(i * 10, (i + 1) * 10)
        batch = Batch(task.train.x[idx], task.train.y[idx], task.train.t[idx])
        gem.model.zero_grad(set_to_none=True)
        gem.loss(batch, gem.model(batch.x, batch.t)).backward()  # type: ignore[no-untyped-call]
        before = flat_grad(params)
        gem.after_backward()
        after = flat_grad(params)
        assert bool((G @ after >= -1e-5 * after.norm() * G.norm(dim=1)).all())
        projected += int(not torch.equal(before, after))
    assert projected > 0  # the new task does conflict with the old ones


def test_gem_forgets_far_less_than_naive(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=1, batch_size=10, lr=0.1)
    runs = {}
    for name in ("naive", "gem"):
        model = build_model("mlp", permuted_digits, hidden=[100, 100], seed=0)
        runs[name] = fit_stream(build_strategy(name, model), permuted_digits, cfg, seed=0)
    assert bwt(runs["gem"].matrix) > bwt(runs["naive"].matrix) + 0.1
    assert runs["gem"].metrics["acc"] > runs["naive"].metrics["acc"] + 0.05


@pytest.mark.parametrize("name", ["gem", "agem", "er"])
def test_bad_options_are_refused(name: str) -> None:
    from lifelong.errors import ConfigError

    stream = build_stream("split", source="digits", num_tasks=2, seed=0)
    model = build_model("mlp", stream, hidden=[8])
    with pytest.raises(ConfigError, match="memory_size"):
        build_strategy(name, model, memory_size=-3)
    if name == "gem":
        with pytest.raises(ConfigError, match="memory_strength"):
            build_strategy(name, model, memory_strength=-1.0)
        build_strategy(name, model, memory_batch=None)  # all memories: GEM's paper setting


def _two_tasks_learned(name: str, split_digits, **options):  # type: ignore[no-untyped-def]
    """`name` after the first two tasks of task-IL split digits, and the third task."""
    s = build_strategy(name, build_model("mlp", split_digits, hidden=[32], seed=0), **options)
    two = split_digits.__class__(
        split_digits.name, split_digits.scenario, split_digits.tasks[:2],
        split_digits.num_classes, split_digits.num_outputs, split_digits.input_shape)
    fit_stream(s, two, TrainConfig(epochs=1, batch_size=10, lr=0.1, device="cpu"), seed=0)
    task = split_digits.tasks[2]
    s.before_task(task)
    return s, task


def test_agem_step_projects_against_one_averaged_gradient_of_all_past_tasks(split_digits) -> None:  # type: ignore[no-untyped-def]
    agem, task = _two_tasks_learned("agem", split_digits, memory_size=40, memory_batch=64)
    params = list(agem.trainable_parameters())
    projected = untouched = 0
    for i in range(12):
        idx = torch.arange(i * 10, (i + 1) * 10)
        batch = Batch(task.train.x[idx], task.train.y[idx], task.train.t[idx])
        agem.model.zero_grad()
        agem.loss(batch, agem.model(batch.x, batch.t)).backward()
        g = flat_grad(params)
        twin = torch.Generator()
        twin.set_state(agem.draws().get_state())  # the draw after_backward is about to make
        mem = agem.state.sample(64, twin)
        assert set(mem.t.tolist()) == {0, 1}  # the reference batch covers every past task
        ref = memory_gradient(agem.model, params, mem)
        agem.after_backward()
        got = flat_grad(params)
        if float(g @ ref) >= 0:
            assert torch.equal(got, g)  # no conflict: the gradient is left alone
            untouched += 1
        else:
            torch.testing.assert_close(got, g - (g @ ref) / (ref @ ref) * ref)
            assert float(got @ ref) > -1e-5  # no longer raises the memories' average loss
            projected += 1
    assert projected and untouched  # both branches were exercised on real data


def test_er_loss_weighs_the_batch_and_the_replayed_memories_by_their_sizes(split_digits) -> None:  # type: ignore[no-untyped-def]
    import torch.nn.functional as F

    er, task = _two_tasks_learned("er", split_digits, memory_size=40, memory_batch=6)
    batch = Batch(task.train.x[:10], task.train.y[:10], task.train.t[:10])
    twin = torch.Generator()
    twin.set_state(er.draws().get_state())
    mem = er.state.sample(6, twin)
    with torch.no_grad():
        want = (10 * F.cross_entropy(er.model(batch.x, batch.t), batch.y)
                + 6 * F.cross_entropy(er.model(mem.x, mem.t), mem.y)) / 16
        got = er.loss(batch, er.model(batch.x, batch.t))
    torch.testing.assert_close(got, want)
