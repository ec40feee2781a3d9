"""The base of strategies that run another strategy inside them: `net2net`.

Owns forwarding. Every hook of `Strategy` (each of its public methods but the few a wrapper
keeps for itself, `OWN`) goes to the wrapped strategy unless the wrapper overrides it, so a hook
added to `Strategy` later is forwarded with no edit here or in any wrapper. Also owns passing the
set-up (`attach`, `to`) to both strategies and saving the wrapped strategy's state inside the
wrapper's own. Does not own what a wrapper adds (e.g. growth on demand: `net2net`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lifelong.strategies.base import Strategy, StrategyState

# Members of `Strategy` a wrapper keeps for itself: its seed and generators, its own
# hyperparameters and its saved state (which holds the wrapped strategy's). Set-up by the loop
# (`attach`, `to`) reaches both.
OWN = frozenset({"attach", "to", "generator", "hparams", "state_dict", "load_state_dict"})


def hooks() -> tuple[str, ...]:
    """The members a wrapper forwards: every public method of `Strategy` but `OWN`."""
    return tuple(name for name, member in vars(Strategy).items()
                 if inspect.isfunction(member) and not name.startswith("_") and name not in OWN)


@dataclass
class WrapperState(StrategyState):
    inner: dict[str, Any] = field(default_factory=dict)  # the wrapped strategy's saved state


class Wrapper(Strategy):
    """A strategy around `inner`, which trains the same `model`: each hook is `inner`'s unless
    a subclass overrides it (and may call `super()` to reach `inner`'s)."""

    state: WrapperState

    def __init__(self, model: nn.Module, inner: Strategy) -> None:
        super().__init__(model)
        if inner.model is not model:
            raise ValueError("a wrapper and the strategy it wraps train one model")
        self.inner = inner
        self.state = WrapperState()

    def attach(self, *, seed: int) -> None:
        super().attach(seed=seed)
        self.inner.attach(seed=seed)

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.inner.to(device)

    def state_dict(self) -> dict[str, Any]:
        # The model is saved once, by the wrapper; the wrapped strategy's is the same model.
        self.state.inner = {k: v for k, v in self.inner.state_dict().items() if k != "model"}
        return super().state_dict()

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        super().load_state_dict(sd)  # grows the model as saved, then loads its weights
        self.inner.load_state_dict({**self.state.inner, "model": sd["model"]})


def _forward(name: str) -> Callable[..., Any]:
    def forward(self: Wrapper, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    forward.__name__, forward.__qualname__ = name, f"Wrapper.{name}"
    forward.__doc__ = f"The wrapped strategy's `{name}` (see `Strategy.{name}`)."
    return forward


for _name in hooks():
    setattr(Wrapper, _name, _forward(_name))
