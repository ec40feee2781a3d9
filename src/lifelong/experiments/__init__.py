"""Experiments: the `EXPERIMENTS` registry. One registered experiment per module.

Each module defines an `Experiment` subclass registered under its name, found by
`Registry.discover` (no list to edit); `get_experiment` returns an instance. Installed packages
add experiments through the `lifelong.experiments` entry points.
"""

from __future__ import annotations

from lifelong.experiments.base import Experiment
from lifelong.registry import Registry

EXPERIMENTS: Registry[type[Experiment]] = Registry(
    "experiment", package=__name__, group="lifelong.experiments")


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)()
