"""Strategies: the `STRATEGIES` registry, `build_strategy` and `strategy_for` (a run config's
strategy around its model).

One method per module, registry key = module name, found by `Registry.discover` (no list to
edit). Families share a private base module (`_penalty.py` for L2/EWC/SI/MAS, `_gradients.py`
for GEM/A-GEM). Installed packages add strategies through the `lifelong.strategies` entry points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from lifelong.registry import Registry
from lifelong.strategies.base import Strategy

if TYPE_CHECKING:
    from lifelong.data.task import Stream

STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy", skip=("model",), package=__name__, group="lifelong.strategies")


def build_strategy(name: str, model: nn.Module, **options: Any) -> Strategy:
    """Build strategy `name` around `model` (options are checked first)."""
    strategy: Strategy = STRATEGIES.build(name, model, where="strategy", **options)
    return strategy


def strategy_for(config: dict[str, Any], strategy: str, stream: Stream, seed: int) -> Strategy:
    """Strategy `strategy` around a fresh model, both as a run config's `model` and
    `strategy` sections say, shaped for `stream` and initialised from `seed`."""
    from lifelong.models import build_model

    model = build_model(config["model"]["name"], stream, seed=seed,
                        **{k: v for k, v in config["model"].items() if k != "name"})
    return build_strategy(strategy, model,
                          **{k: v for k, v in config["strategy"].items() if k != "name"})
