"""The loop: determinism, divergence, task labels, learning curves, and the forgetting demo."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.callbacks import Callback, CurvePoint, TaskEnd
from lifelong.errors import DivergenceError
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Batch, Strategy


def run(name: str, stream, seed: int = 0, **train) -> object:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 32, "lr": 0.1, **train})
    model = build_model("mlp", stream, hidden=[64], seed=seed)
    return fit_stream(build_strategy(name, model), stream, cfg, seed=seed)


def test_same_seed_gives_bit_identical_matrices(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    a, b = run("naive", permuted_digits), run("naive", permuted_digits)
    assert a.matrix == b.matrix  # type: ignore[attr-defined]
    c = run("naive", permuted_digits, seed=1)
    assert c.matrix != a.matrix  # type: ignore[attr-defined]


def test_row_zero_is_the_untrained_model(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    r = run("naive", permuted_digits)
    R = r.matrix  # type: ignore[attr-defined]
    assert len(R) == 4 and all(len(row) == 3 for row in R)
    assert max(R[0]) < 0.3  # chance is 0.1
    assert R[1][0] > 0.7  # task 1 learned after one epoch


class Poison(Strategy):
    """Its loss turns NaN at the 7th call of the second epoch of task 2."""

    name = "poison"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.calls = 0

    def loss(self, batch, logits):  # type: ignore[no-untyped-def]
        self.calls += 1
        loss = super().loss(batch, logits)
        return loss * float("nan") if self.calls == self.bad else loss


def test_nan_loss_raises_divergence_error_naming_task_epoch_step(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    steps = -(-len(permuted_digits.tasks[0].train) // 32)
    p = Poison(build_model("mlp", permuted_digits, hidden=[16], seed=0))
    p.bad = 2 * steps + steps + 7  # type: ignore[attr-defined]
    with pytest.raises(DivergenceError) as e:
        fit_stream(p, permuted_digits, TrainConfig(epochs=2, batch_size=32), seed=0)
    msg = str(e.value)
    assert "task 2/3" in msg and "epoch 2" in msg and "step 7 " in msg
    assert "lower train.lr" in msg and "nan" in msg


class Spy(Strategy):
    """Records what the loop hands to predict."""

    name = "spy"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.seen: list[object] = []

    def predict(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        self.seen.append(None if t is None else int(t[0]))
        return super().predict(x, t)


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_task_labels_reach_predict_only_in_task_il(scenario: str) -> None:
    s = build_stream("split", source="digits", num_tasks=2, scenario=scenario,
                     train_per_task=64, seed=0)
    spy = Spy(build_model("mlp", s, hidden=[16], seed=0))
    fit_stream(spy, s, TrainConfig(epochs=1), seed=0)
    if scenario == "task":
        assert set(spy.seen) == {0, 1}
    else:
        assert set(spy.seen) == {None}


def test_learning_curves_every_n_steps(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    points: list[CurvePoint] = []
    ends: list[TaskEnd] = []

    class Watch(Callback):
        def on_curve_point(self, event: CurvePoint) -> None:
            points.append(event)

        def on_task_end(self, event: TaskEnd) -> None:
            ends.append(event)

    model = build_model("mlp", permuted_digits, hidden=[32], seed=0)
    steps_per_task = -(-len(permuted_digits.tasks[0].train) // 100)
    r = fit_stream(build_strategy("naive", model), permuted_digits,
                   TrainConfig(batch_size=100, eval_every=5), seed=0, callbacks=[Watch()])
    assert [p.step for p in points] == list(range(5, 3 * steps_per_task + 1, 5))
    assert all(len(p.accuracies) == 3 for p in points)
    assert r.curves == tuple(points)
    assert [e.task_index for e in ends] == [0, 1, 2]
    assert all(e.costs.parameters == sum(p.numel() for p in model.parameters()) for e in ends)


def test_each_task_gets_a_fresh_optimizer(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    # With momentum, a reused optimizer would carry velocity across tasks: each task must
    # start with a new optimizer whose state (the momentum buffers) is empty.
    from lifelong.strategies.naive import Naive

    seen: list[tuple[torch.optim.Optimizer, int]] = []

    class Spy(Naive):
        def train_task(self, task, loop):  # type: ignore[no-untyped-def]
            seen.append((loop.optimizer, len(loop.optimizer.state)))
            super().train_task(task, loop)

    model = build_model("mlp", permuted_digits, hidden=[16], seed=0)
    fit_stream(Spy(model), permuted_digits,
               TrainConfig(epochs=1, batch_size=64, lr=0.01, momentum=0.9), seed=0)
    optimizers = [o for o, _ in seen]
    assert len(optimizers) == 3 and len({id(o) for o in optimizers}) == 3
    assert [n for _, n in seen] == [0, 0, 0]  # no momentum carried in
    assert all(len(o.state) > 0 for o in optimizers)  # ... and each did build momentum


def test_demo_naive_forgets_task_one_and_joint_keeps_it() -> None:
    """The lecture's picture on real 28×28 digits (mnist-10k), with the demo's --quick size."""
    from tests.conftest import shared_data_or_skip

    shared_data_or_skip("mnist-t10k")
    s = build_stream("noisy", source="mnist-10k", train_per_task=4000, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=1e-3)
    out = {}
    for name in ("naive", "joint"):
        model = build_model("mlp", s, hidden=[50, 50, 50], seed=0)
        out[name] = fit_stream(build_strategy(name, model), s, cfg, seed=0).matrix
    naive, joint = out["naive"], out["joint"]
    assert naive[1][0] > 0.5  # task 1 (noisy) was learned
    assert naive[1][0] - naive[2][0] > 0.15  # and clearly forgotten after clean task 2
    assert joint[2][0] > naive[1][0] - 0.05  # joint keeps it
    assert naive[2][1] > 0.8 and joint[2][1] > 0.8  # both learn task 2


def test_state_bytes_count_the_model_and_what_the_method_keeps(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, device="cpu")
    results = {}
    for name, opts in (("naive", {}), ("er", {"memory_size": 50}), ("ewc", {})):
        model = build_model("mlp", permuted_digits, hidden=[16], seed=0)
        model_bytes = sum(p.numel() * 4 for p in model.parameters())
        strategy = build_strategy(name, model, **opts)
        costs = fit_stream(strategy, permuted_digits, cfg, seed=0).costs
        results[name] = tuple(c.state_bytes for c in costs)
    assert results["naive"] == (model_bytes,) * 3
    # ER keeps 50 examples per task: 64 float pixels and two int64 labels each.
    assert results["er"] == tuple(model_bytes + k * 50 * (64 * 4 + 2 * 8) for k in (1, 2, 3))
    # EWC keeps an anchor and a Fisher per task, each the size of the model.
    assert results["ewc"] == tuple(model_bytes * (1 + 2 * k) for k in (1, 2, 3))


def _stream(scenario: str, labels: list[int], num_outputs: int):  # type: ignore[no-untyped-def]
    from lifelong.data.task import Stream, Task, TensorData

    y = torch.tensor(labels)
    data = TensorData(torch.zeros(len(labels), 2), y, torch.zeros_like(y))
    task = Task("t/0", 0, data, data, tuple(sorted(set(labels))))
    return Stream("t", scenario, (task,), max(labels) + 1, num_outputs, (2,))  # type: ignore[arg-type]


@pytest.mark.parametrize(("scenario", "labels", "outputs", "chance"), [
    ("domain", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 10, 0.1),   # balanced: 1 / head width
    ("task", [0, 0, 0, 1], 2, 0.75),                       # skewed: the frequent class
    ("class", [8, 9, 8, 9], 10, 0.5),                      # class-IL: 2 of 10 classes
    ("class", list(range(10)) * 2, 10, 0.1),
])
def test_chance_level_by_hand(scenario: str, labels: list[int], outputs: int,
                              chance: float) -> None:
    from lifelong.chance import chance_level

    stream = _stream(scenario, labels, outputs)
    assert chance_level(stream, stream.tasks[0]) == pytest.approx(chance)


def test_accuracy_at_chance_warns_and_reaches_task_end(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    from lifelong.train import LifelongWarning

    ends: list[TaskEnd] = []

    class Keep(Callback):
        def on_task_end(self, event: TaskEnd) -> None:
            ends.append(event)

    model = build_model("mlp", permuted_digits, hidden=[64], seed=0)
    cfg = TrainConfig(epochs=1, lr=100.0)  # absurd, yet the loss stays finite (dead ReLUs)
    with pytest.warns(LifelongWarning, match="at chance") as caught:
        result = fit_stream(build_strategy("naive", model), permuted_digits, cfg, seed=0,
                            callbacks=[Keep()])
    chance = [str(w.message) for w in caught if "at chance" in str(w.message)]
    assert len(chance) == 3  # one per task
    assert "task 2/3 (permuted/digits/1)" in chance[1] and "train.lr too high (100.0)" in chance[1]
    assert "train.epochs=1" in chance[1] and "strength" not in chance[1]  # naive has none
    assert [e.warnings for e in ends] == [(m,) for m in chance] == list(result.warnings)
    assert result.diagnostics == ({}, {}, {})


def test_a_run_that_learns_gets_no_chance_warning(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("naive", permuted_digits)
    assert not [w for w in caught if "at chance" in str(w.message)]
    assert result.warnings == ((), (), ())  # type: ignore[attr-defined]


def test_task_report_reaches_the_warning_the_event_and_the_result(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    from lifelong.strategies.base import TaskReport
    from lifelong.train import LifelongWarning

    class Reporting(Strategy):
        name = "reporting"

        def task_report(self) -> TaskReport:
            n = len(self.seen)
            return TaskReport({"capped_fraction": n / 4, "tasks_seen": n}, (f"report {n}",))

        def after_task(self, task):  # type: ignore[no-untyped-def]
            self.seen.append(task.key)

    strategy = Reporting(build_model("mlp", permuted_digits, hidden=[64], seed=0))
    strategy.seen = []  # type: ignore[attr-defined]
    ends: list[TaskEnd] = []

    class Keep(Callback):
        def on_task_end(self, event: TaskEnd) -> None:
            ends.append(event)

    with pytest.warns(LifelongWarning, match="report") as caught:
        result = fit_stream(strategy, permuted_digits, TrainConfig(epochs=1, lr=0.1), seed=0,
                            callbacks=[Keep()])
    assert [str(w.message) for w in caught] == ["report 1", "report 2", "report 3"]
    assert [dict(e.diagnostics) for e in ends] == [
        {"capped_fraction": n / 4, "tasks_seen": float(n)} for n in (1, 2, 3)]
    assert [e.warnings for e in ends] == [("report 1",), ("report 2",), ("report 3",)]
    assert result.diagnostics == tuple(e.diagnostics for e in ends)
    assert result.notes()["warnings"][2] == {"task": 2, "message": "report 3"}
    assert result.per_task()["train_seconds"] == [c.train_seconds for c in result.costs]


def test_a_step_schedule_halves_the_rate_every_n_epochs_of_each_task(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    from lifelong.strategies.base import Strategy

    class Spy(Strategy):
        name = "spy-lr"

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__(model)
            self.rates: list[float] = []

        def train_batch(self, batch: Batch, step: Callable[[Tensor], Tensor]) -> Tensor:
            # (the loop's step holds the optimizer; a strategy never reads it)
            self.rates.append(float(step.optimizer.param_groups[0]["lr"]))  # type: ignore[attr-defined]
            return super().train_batch(batch, step)

    cfg = TrainConfig(epochs=4, batch_size=500, lr=0.1, lr_decay_every=2, lr_decay=0.5)
    assert [cfg.lr_at(e) for e in range(5)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    spy = Spy(build_model("mlp", permuted_digits, hidden=[8], seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_stream(spy, permuted_digits, cfg, seed=0)
    per_epoch = len(spy.rates) // 12  # 3 tasks × 4 epochs
    task = spy.rates[:4 * per_epoch]
    assert task == [0.1] * 2 * per_epoch + [0.05] * 2 * per_epoch
    assert spy.rates[4 * per_epoch] == 0.1  # the next task starts again at lr
    assert "train.lr_decay=2 must be in (0, 1]" in " ".join(
        TrainConfig(lr_decay=2).problems())
