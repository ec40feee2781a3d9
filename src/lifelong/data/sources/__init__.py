"""Image sources: where raw labelled images come from.

Owns the `SOURCES` registry, the `SourceData` value and `load_source`. Each source module
registers a loader `(data_dir) -> SourceData`. Images are float32 tensors in [0, 1] of shape
(N, 1, H, W); labels int64. Loading is cached per process (sources are read-only values).
Does not own task construction (see `lifelong.data.builders`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from lifelong.registry import Registry

Loader = Callable[[Path | None], "SourceData"]
SOURCES: Registry[Loader] = Registry("source")


@dataclass(frozen=True, slots=True)
class SourceData:
    """A labelled image set split into train and test parts."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def load_source(name: str, data_dir: str | Path | None = None) -> SourceData:
    """Load a registered source (see `SOURCES.names()`), from `data_dir` if given."""
    register_all()
    SOURCES.get(name)  # raises ConfigError with a suggestion for an unknown name
    # The search path is part of the cache key, so changing LIFELONG_DATA is seen.
    return _cached(name, str(data_dir) if data_dir is not None else None,
                   os.environ.get("LIFELONG_DATA"))


@functools.lru_cache(maxsize=4)
def _cached(name: str, data_dir: str | None, search_path: str | None) -> SourceData:
    return SOURCES.get(name)(Path(data_dir) if data_dir is not None else None)


def register_all() -> None:
    # Imported lazily so that `import lifelong` reads nothing and stays fast.
    from lifelong.data.sources import digits, idx_sources  # noqa: F401
