"""lifelong: continual (lifelong) learning on PyTorch.

One model learns a stream of tasks in turn; `lifelong` measures and fights catastrophic
forgetting. Importing this package reads no data and touches no network; the public API is
loaded on first use::

    from lifelong import build_stream, build_model, build_strategy, fit_stream, TrainConfig
    stream = build_stream("permuted", source="digits", num_tasks=3)
    model = build_model("mlp", stream, hidden=[100, 100])
    result = fit_stream(build_strategy("naive", model), stream, TrainConfig(epochs=2, lr=0.1))
    print(result.matrix, result.metrics)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "build_stream": "lifelong.data.builders",
    "build_model": "lifelong.models",
    "build_strategy": "lifelong.strategies",
    "fit_stream": "lifelong.train",
    "TrainConfig": "lifelong.train",
    "RunResult": "lifelong.train",
    "Strategy": "lifelong.strategies.base",
    "Stream": "lifelong.data.task",
    "Task": "lifelong.data.task",
    "TensorData": "lifelong.data.task",
    "load_source": "lifelong.data.sources",
    "metrics": "lifelong",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name == "metrics":
        return import_module("lifelong.metrics")
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'lifelong' has no attribute {name!r}")
