"""Runs: everything between a validated plan and the results store.

One package for the run machinery, each module one concept, from the top down:

- `sweep`: grids of options x seeds, with mean and std per grid point (``lifelong sweep``).
- `runner`: the driver (reuse what the store holds, execute the rest, record, write, report).
- `executors`: where runs execute (in this process, a pool of local processes, Ray).
- `groups`: runs that train together as one vectorised group, and running a group.
- `execution`: one run in whatever process executes it (`RunJob` -> `JobResult`).
- `planning`: configuration layers -> a validated `Plan` of `RunSpec`s.
- `checkpoint`: a run's state after each task, so a stopped run continues.
- `provenance`: the versions and code hashes recorded with each run.
- `files`: a run's files (config, result, figures) in its ``--out`` folder.
- `integrations`: MLflow and TensorBoard loggers.

The public entry points are loaded on first use: ``from lifelong.run import plan, execute``.
Experiments never import this package: it imports them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = {
    "plan": "lifelong.run.planning",
    "Plan": "lifelong.run.planning",
    "RunSpec": "lifelong.run.planning",
    "execute": "lifelong.run.runner",
    "execute_runs": "lifelong.run.runner",
    "run_sweep": "lifelong.run.sweep",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'lifelong.run' has no attribute {name!r}")
