"""Strategies: the `STRATEGIES` registry and `build_strategy`.

One method per module, registry key = module name, found by `Registry.discover` (no list to
edit). Families share a private base module (`_penalty.py` for L2/EWC/SI/MAS, `_gradients.py`
for GEM/A-GEM). Installed packages add strategies through the `lifelong.strategies` entry points.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lifelong.registry import Registry
from lifelong.strategies.base import Strategy

STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy", skip=("model",), package=__name__, group="lifelong.strategies")


def build_strategy(name: str, model: nn.Module, **options: Any) -> Strategy:
    """Build strategy `name` around `model` (options are checked first)."""
    strategy: Strategy = STRATEGIES.build(name, model, where="strategy", **options)
    return strategy
