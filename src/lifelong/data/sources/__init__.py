"""Image sources: where raw labelled images come from.

Owns the `SOURCES` registry, the `SourceData` value and `load_source`. Each source module
registers a loader `(data_dir) -> SourceData` and is found by `Registry.discover` on the first
lookup (no list to edit); installed packages add sources through the `lifelong.sources` entry
points. Images are float32 tensors in [0, 1] of shape (N, 1, H, W); labels int64. Loading is
cached per process (sources are read-only values). Does not own task construction (see
`lifelong.data.builders`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lifelong.registry import Registry
from lifelong.seeding import numpy_rng

Loader = Callable[[Path | None], "SourceData"]
SOURCES: Registry[Loader] = Registry("source", package=__name__, group="lifelong.sources")


@dataclass(frozen=True, slots=True)
class SourceData:
    """A labelled image set split into train and test parts."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    @classmethod
    def split(cls, name: str, x: np.ndarray, y: np.ndarray, *, n_test: int,
              num_classes: int) -> SourceData:
        """One labelled array set divided by `split_exact` into train and test parts."""
        train, test = split_exact(y, n_test=n_test, purpose=f"{name}-split")
        return cls(name, torch.from_numpy(x[train]), torch.from_numpy(y[train]),
                   torch.from_numpy(x[test]), torch.from_numpy(y[test]), num_classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def load_source(name: str, data_dir: str | Path | None = None) -> SourceData:
    """Load a registered source (see `SOURCES.names()`), from `data_dir` if given."""
    SOURCES.get(name)  # raises ConfigError with a suggestion for an unknown name
    # The search path is part of the cache key, so changing LIFELONG_DATA is seen.
    return _cached(name, str(data_dir) if data_dir is not None else None,
                   os.environ.get("LIFELONG_DATA"))


@functools.lru_cache(maxsize=4)
def _cached(name: str, data_dir: str | None, search_path: str | None) -> SourceData:
    return SOURCES.get(name)(Path(data_dir) if data_dir is not None else None)


def split_exact(y: np.ndarray, *, n_test: int, purpose: str) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic class-stratified split of indices into (train, test), each sorted.

    The test part has exactly `n_test` items; each class gets its proportional share, rounded
    by largest remainder (ties go to the smaller class id). Each class is shuffled by its own
    generator ``numpy_rng(purpose, class)``, so the global RNG is untouched.

    Raises:
        ValueError: `n_test` is not between 0 and ``len(y)``.
    """
    if not 0 <= n_test <= len(y):
        raise ValueError(f"n_test={n_test} must lie in 0..{len(y)}")
    classes, counts = np.unique(y, return_counts=True)
    # Integer arithmetic: share = floor(count · n_test / N), plus one for the largest remainders.
    scaled = counts.astype(np.int64) * n_test
    shares, remainders = np.divmod(scaled, max(len(y), 1))
    by_remainder = np.argsort(-remainders, kind="stable")
    shares[by_remainder[: n_test - int(shares.sum())]] += 1
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c, n in zip(classes, shares, strict=True):
        idx = np.flatnonzero(y == c)
        idx = idx[numpy_rng(purpose, int(c)).permutation(len(idx))]
        test.append(idx[:n])
        train.append(idx[n:])
    return _sorted_concat(train), _sorted_concat(test)


def _sorted_concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
