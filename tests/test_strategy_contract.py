"""The contract every registered strategy keeps — no opt-out list.

For each strategy: it runs in every scenario it claims and refuses the others; losses stay
finite; the global RNGs are untouched; `state_dict()` holds only CPU tensors and plain values;
loading it into a fresh strategy reproduces the next training steps exactly.
"""

from __future__ import annotations

import io
import random
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import SCENARIOS, Stream
from lifelong.errors import ConfigError
from lifelong.models.heads import GrowingHead
from lifelong.optim import LoopStep
from lifelong.strategies import STRATEGIES, build_strategy
from lifelong.strategies.base import Batch
from lifelong.train import LifelongWarning

NAMES = STRATEGIES.names()
# CPU: some tests below step by hand with CPU tensors after fit_stream.
CFG = TrainConfig(epochs=1, batch_size=16, lr=0.05, device="cpu")


def tiny(scenario: str) -> Stream:
    return build_stream("split", source="digits", num_tasks=3, classes_per_task=2,
                        train_per_task=96, test_per_task=40, scenario=scenario, seed=0)


def plain(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.device.type == "cpu"
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_supported_scenarios_run_and_others_are_refused(name: str, scenario: str) -> None:
    stream = tiny(scenario)
    strategy = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=0))
    if scenario not in strategy.card.scenarios:
        with pytest.raises(ConfigError, match="does not support"):
            fit_stream(strategy, stream, CFG, seed=0)
        return
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), \
        random.getstate()
    with pytest.warns(LifelongWarning) if scenario in strategy.card.caveats else _nothing():
        result = fit_stream(strategy, stream, CFG, seed=0)
    assert torch.equal(torch.get_rng_state(), torch_state), "global torch RNG was used"
    assert np.random.get_state()[1].tolist() == np_state[1].tolist(), "numpy RNG was used"
    assert random.getstate() == py_state, "python RNG was used"
    assert len(result.matrix) == len(stream) + 1
    assert all(0.0 <= v <= 1.0 for row in result.matrix for v in row)


class _nothing:
    def __enter__(self) -> None: ...
    def __exit__(self, *exc: object) -> None: ...


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_reproduces_the_next_steps(name: str) -> None:
    scenario = "task" if "task" in STRATEGIES.get(name).card.scenarios else sorted(
        STRATEGIES.get(name).card.scenarios)[0]
    stream = tiny(scenario)
    two = Stream(stream.name, stream.scenario, stream.tasks[:2], stream.num_classes,
                 stream.num_outputs, stream.input_shape)
    a = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=0))
    fit_stream(a, two, CFG, seed=7)
    sd = a.state_dict()
    assert set(sd) == {"strategy", "version", "hparams", "model", "state", "rng"}
    assert plain(sd), "state_dict must hold only CPU tensors and plain values"
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)

    b = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=123))
    b.attach(seed=999)  # a different seed: everything must come from the saved state
    b.load_state_dict(loaded)
    task = stream.tasks[2]
    data = task.train
    losses = []
    for s in (a, b):
        s.before_task(task)
        opt = torch.optim.SGD(list(s.trainable_parameters()), lr=0.05)
        run = []
        for i in range(3):
            idx = torch.arange(i * 16, (i + 1) * 16)
            run.append(s.train_batch(Batch(data.x[idx], data.y[idx], data.t[idx]),
                                      LoopStep(s, opt)))
        losses.append(torch.stack(run))
    assert torch.equal(losses[0], losses[1])
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_a_run_resumed_from_a_saved_state_equals_the_uninterrupted_run(name: str,
                                                                       device: str) -> None:
    # The real resume path: fit_stream on the first two tasks, save, load into a fresh
    # strategy whose model sits on the CPU, fit_stream on the third task on `device`.
    scenario = "task" if "task" in STRATEGIES.get(name).card.scenarios else sorted(
        STRATEGIES.get(name).card.scenarios)[0]
    stream = tiny(scenario)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, device=device)

    def part(tasks: slice) -> Stream:
        return Stream(stream.name, stream.scenario, stream.tasks[tasks], stream.num_classes,
                      stream.num_outputs, stream.input_shape)

    whole = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=0))
    full = fit_stream(whole, stream, cfg, seed=7)
    first = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=0))
    fit_stream(first, part(slice(0, 2)), cfg, seed=7)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=123))
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    rest = fit_stream(resumed, part(slice(2, 3)), cfg, seed=7)
    assert rest.matrix[-1][0] == full.matrix[-1][2]
    for pa, pb in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert plain(resumed.state_dict())


@pytest.mark.parametrize("name", [n for n in NAMES if "class" in STRATEGIES.get(n).card.scenarios])
def test_a_run_with_a_growing_head_resumes_bit_identical(name: str) -> None:
    # Class-IL with `model.growing=true`: the head gains units before each task, so the saved
    # model has grown; loaded into a freshly built (empty-headed) model it must grow back and
    # finish as the uninterrupted run, with every method (penalties anchor the grown chunks).
    stream = tiny("class")

    def part(tasks: slice) -> Stream:
        return Stream(stream.name, stream.scenario, stream.tasks[tasks], stream.num_classes,
                      stream.num_outputs, stream.input_shape)

    def fresh(seed: int) -> Any:
        return build_strategy(name, build_model("mlp", stream, hidden=[32], growing=True,
                                                seed=seed))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LifelongWarning)  # caveats and chance warnings
        whole = fresh(0)
        full = fit_stream(whole, stream, CFG, seed=7)
        first = fresh(0)
        fit_stream(first, part(slice(0, 2)), CFG, seed=7)
        buf = io.BytesIO()
        torch.save(first.state_dict(), buf)
        buf.seek(0)
        resumed = fresh(123)
        resumed.load_state_dict(torch.load(buf, weights_only=True))
        rest = fit_stream(resumed, part(slice(2, 3)), CFG, seed=7)
    def units(model: torch.nn.Module) -> set[int]:  # every class some growing head holds
        return {int(c) for m in model.modules() if isinstance(m, GrowingHead)
                for c in m.classes.tolist()}

    assert units(resumed.model) == units(whole.model) == set(range(stream.num_classes))
    assert rest.matrix[-1][0] == full.matrix[-1][2]
    for pa, pb in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_is_strict(name: str) -> None:
    from lifelong.errors import StateError

    stream = tiny("task")
    s = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=0))
    sd = s.state_dict()
    with pytest.raises(StateError):
        s.load_state_dict({**sd, "extra": 1})
    with pytest.raises(StateError):
        s.load_state_dict({**sd, "strategy": "something-else"})
    with pytest.raises(StateError, match="version"):
        s.load_state_dict({**sd, "version": sd["version"] + 1})
    if sd["state"]:  # a state field missing
        with pytest.raises(StateError, match="state fields"):
            s.load_state_dict({**sd, "state": dict(list(sd["state"].items())[1:])})
    if sd["hparams"]:  # saved with other hyperparameters
        key = next(iter(sd["hparams"]))
        with pytest.raises(StateError, match="hyperparameters"):
            s.load_state_dict({**sd, "hparams": {**sd["hparams"], key: "other"}})
    s.load_state_dict(sd)  # and the genuine one loads
