"""Growing heads: growth preserves the old classes' logits bit for bit, the optimizer sees the
new units, a grown model loads into a fresh one, and no task label reaches `predict` outside
task-IL."""

from __future__ import annotations

import io

import pytest
import torch
from torch import Tensor

from lifelong import build_model, build_stream
from lifelong.data.task import Stream, Task
from lifelong.errors import DataError, StateError
from lifelong.models.heads import GrowingHead, MultiHead, grow_model
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Strategy
from lifelong.train import TrainConfig, fit_stream

CPU = TrainConfig(epochs=10, batch_size=32, lr=0.2, device="cpu")


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def split_stream(scenario: str = "class", num_tasks: int = 5) -> Stream:
    return build_stream("split", source="digits", scenario=scenario, num_tasks=num_tasks,
                        train_per_task=120, test_per_task=60, seed=0)


def test_the_default_head_is_unchanged_and_task_il_keeps_its_heads() -> None:
    stream = split_stream()
    model = build_model("mlp", stream)
    assert isinstance(model.head, MultiHead) and model.head.num_outputs == 10
    task_il = split_stream("task")
    for name in ("mlp", "cnn"):
        head = build_model(name, task_il, growing=True).head
        assert isinstance(head, MultiHead) and head.num_heads == 5
        assert isinstance(build_model(name, stream, growing=True).head, GrowingHead)


def test_growth_leaves_old_logits_bit_identical_and_adds_the_new_ones() -> None:
    stream = split_stream()
    model = build_model("mlp", stream, growing=True)
    x = stream.tasks[0].test.x
    assert grow_model(model, [0, 1], generator=gen()) == 2
    before = model(x)
    old_params = list(model.parameters())
    assert grow_model(model, [3, 2, 1], generator=gen(1)) == 2  # class 1 is already there
    after = model(x)
    assert torch.equal(after[:, :2], before[:, :2])  # bit for bit
    assert torch.isfinite(after[:, 2:4]).all() and (after[:, 2:4].abs() < 1e3).all()
    unseen = torch.finfo(after.dtype).min
    assert (after[:, 4:] == unseen).all() and (before[:, 2:] == unseen).all()
    assert set(after.argmax(1).tolist()) <= {0, 1, 2, 3}  # only seen classes are predicted
    assert model.head.classes.tolist() == [0, 1, 3, 2]
    # The old parameters are the same objects (an optimizer holding them stays valid); the
    # new units are new parameters that the next task's fresh optimizer picks up.
    new_params = list(model.parameters())
    assert all(any(p is q for q in new_params) for p in old_params)
    assert len(new_params) == len(old_params) + 2


def test_growth_draws_from_its_generator_not_the_global_rng() -> None:
    stream = split_stream()
    a, b = (build_model("mlp", stream, growing=True) for _ in range(2))
    state = torch.get_rng_state()
    grow_model(a, [0, 1], generator=gen(7))
    grow_model(b, [0, 1], generator=gen(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.head.weights[0], b.head.weights[0])


def test_a_class_outside_the_label_space_is_refused() -> None:
    head = GrowingHead(4, 3)
    with pytest.raises(DataError, match=r"classes \[3\] are outside the head's label space 0..2"):
        head.grow([1, 3], generator=gen())


def test_a_grown_model_loads_into_a_fresh_one() -> None:
    stream = split_stream()
    model = build_model("cnn", stream, growing=True)
    grow_model(model, [0, 1], generator=gen())
    grow_model(model, [2, 3], generator=gen(1))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = build_model("cnn", stream, growing=True, seed=5)  # another init, no units
    fresh.load_state_dict(saved)
    x = stream.tasks[1].test.x
    assert torch.equal(fresh(x), model(x))
    assert fresh.head.classes.tolist() == [0, 1, 2, 3]
    # Growing on after loading continues where the saved model stopped.
    assert grow_model(fresh, [0, 1, 2, 3, 4], generator=gen()) == 1


def test_a_less_grown_state_does_not_load_into_a_more_grown_head() -> None:
    head = GrowingHead(4, 6)
    head.grow([0, 1], generator=gen())
    small = head.state_dict()
    head.grow([2], generator=gen())
    with pytest.raises(StateError, match="saved state has 1 growth chunks but this head has 2"):
        head.load_state_dict(small)


def test_strategy_state_of_a_grown_model_round_trips_into_a_fresh_strategy() -> None:
    stream = split_stream(num_tasks=2)
    strategy = build_strategy("naive", build_model("mlp", stream, growing=True))
    fit_stream(strategy, stream, CPU, seed=0)
    fresh = build_strategy("naive", build_model("mlp", stream, growing=True))
    fresh.load_state_dict(strategy.state_dict())
    x = stream.tasks[1].test.x
    assert torch.equal(fresh.predict(x, None), strategy.predict(x, None))


class Recording(Strategy):
    """Records what the head looks like when each task starts."""

    name = "recording"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.seen: list[list[int]] = []
        self.fresh: list[Tensor] = []

    def before_task(self, task: Task) -> None:
        self.seen.append(self.model.head.classes.tolist())
        self.fresh.append(self.model.head.weights[-1].detach().clone())


def test_the_loop_grows_the_head_per_task_and_trains_the_new_units() -> None:
    stream = split_stream(num_tasks=3)
    strategy = Recording(build_model("mlp", stream, growing=True))
    result = fit_stream(strategy, stream, CPU, seed=0)
    assert strategy.seen == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    head = strategy.model.head
    for k, start in enumerate(strategy.fresh):  # the fresh optimizer updated each new chunk
        assert not torch.equal(head.weights[k].detach(), start)
    assert min(result.matrix[k + 1][k] for k in range(3)) > 0.9  # each task learned
    x = torch.cat([t.test.x for t in stream.tasks])
    assert set(strategy.predict(x, None).argmax(1).tolist()) <= set(range(6))


class Cheater(Strategy):
    """Would use the task label at test time if it were given; records what it is given."""

    name = "cheater"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.labels: list[Tensor | None] = []

    def predict(self, x: Tensor, t: Tensor | None) -> Tensor:
        self.labels.append(t)
        out: Tensor = self.model(x, t)
        if t is not None:  # the cheat: move the logits by the task label
            out = out + 100.0 * torch.nn.functional.one_hot(t % out.shape[1], out.shape[1])
        return out


@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")  # the cheat's accuracy
@pytest.mark.parametrize("scenario,growing", [("class", False), ("class", True),
                                              ("domain", False), ("task", False)])
def test_no_task_label_reaches_predict_outside_task_il(scenario: str, growing: bool) -> None:
    stream = split_stream(scenario, num_tasks=2)
    model = build_model("mlp", stream, growing=growing)
    forwarded: list[Tensor | int | None] = []
    model.register_forward_pre_hook(  # what the model itself gets at test time
        lambda m, args: None if m.training else forwarded.append(args[1] if len(args) > 1
                                                                 else None))
    strategy = Cheater(model)
    fit_stream(strategy, stream, CPU, seed=0)
    assert strategy.labels and forwarded
    if scenario == "task":  # the recorder does see labels where they are allowed
        assert all(t is not None for t in strategy.labels)
    else:
        assert all(t is None for t in strategy.labels) and all(t is None for t in forwarded)
