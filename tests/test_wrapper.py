"""A strategy that wraps another (`net2net`) forwards every hook of `Strategy` without listing
them: a hook added to `Strategy` reaches the wrapped strategy with no edit to any wrapper."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

from lifelong.strategies._wrapper import OWN, Wrapper, hooks
from lifelong.strategies.base import Strategy


def recording(model: nn.Module) -> tuple[Strategy, list[tuple[str, tuple[Any, ...]]]]:
    """A strategy overriding every hook a wrapper forwards; each records its call and returns
    its own name, so the test sees the call arrive and the value come back."""
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def record(name: str) -> Any:
        def hook(self: Strategy, *args: Any) -> str:
            calls.append((name, args))
            return f"inner {name}"
        return hook

    cls = type("Recording", (Strategy,), {name: record(name) for name in hooks()})
    return cls(model), calls


def test_every_hook_reaches_the_wrapped_strategy_with_its_arguments() -> None:
    model = nn.Linear(2, 2)
    inner, calls = recording(model)
    wrapper = Wrapper(model, inner)
    assert "loss" in hooks() and "remap" in hooks() and "after_step" in hooks()
    for name in hooks():
        n = len([p for p in inspect.signature(getattr(Strategy, name)).parameters.values()
                 if p.name != "self"])
        args = tuple(object() for _ in range(n))
        assert getattr(wrapper, name)(*args) == f"inner {name}", name
        assert calls[-1] == (name, args)
    assert [c for c, _ in calls] == list(hooks())


def test_every_public_method_of_strategy_is_a_forwarded_hook_or_the_wrappers_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    public = {n for n, m in vars(Strategy).items()
              if inspect.isfunction(m) and not n.startswith("_")}
    assert OWN <= public  # a renamed member would otherwise be forwarded by mistake
    assert set(hooks()) == public - OWN
    monkeypatch.setattr(Strategy, "before_epoch", lambda self, epoch: None, raising=False)
    assert "before_epoch" in hooks()  # a hook added later is forwarded with no edit


def test_the_wrapper_keeps_its_own_seed_and_saves_the_wrapped_state() -> None:
    from lifelong.strategies.ewc import EWC

    model = nn.Linear(2, 2)
    inner = EWC(model)
    wrapper = Wrapper(model, inner)
    wrapper.attach(seed=3)
    assert wrapper.seed == inner.seed == 3
    inner.state.anchors = [{"weight": torch.ones(2, 2), "bias": torch.zeros(2)}]
    saved = wrapper.state_dict()
    assert "model" not in saved["state"]["inner"]
    fresh_model = nn.Linear(2, 2)
    fresh = Wrapper(fresh_model, EWC(fresh_model))
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.inner.state.anchors[0]["weight"], torch.ones(2, 2))
    with pytest.raises(ValueError, match="one model"):
        Wrapper(nn.Linear(2, 2), EWC(model))
