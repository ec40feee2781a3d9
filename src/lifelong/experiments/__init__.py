"""Experiments: the `EXPERIMENTS` registry. One registered experiment per module.

Each module defines an `Experiment` subclass registered under its name; `get_experiment`
returns an instance.
"""

from __future__ import annotations

import importlib
import pkgutil

from lifelong.experiments.base import Experiment
from lifelong.registry import Registry

EXPERIMENTS: Registry[type[Experiment]] = Registry("experiment")


def register_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def get_experiment(name: str) -> Experiment:
    register_all()
    return EXPERIMENTS.get(name)()
