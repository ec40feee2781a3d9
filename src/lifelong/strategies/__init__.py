"""Strategies: the `STRATEGIES` registry and `build_strategy`.

One method per module, registry key = module name. Families share a private base module
(`_penalty.py` for L2/EWC/SI/MAS, `_gradients.py` for GEM/A-GEM).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from torch import nn

from lifelong.registry import Registry
from lifelong.strategies.base import Strategy

STRATEGIES: Registry[type[Strategy]] = Registry("strategy", skip=("model",))


def register_all() -> None:
    """Import every strategy module (each registers itself)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def build_strategy(name: str, model: nn.Module, **options: Any) -> Strategy:
    """Build strategy `name` around `model` (options are checked first)."""
    register_all()
    strategy: Strategy = STRATEGIES.build(name, model, where="strategy", **options)
    return strategy
