"""Shared fixtures: real data through LIFELONG_DATA, small real streams, a quick trainer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "LIFELONG_DATA" not in os.environ and SHARED.is_dir():
    os.environ["LIFELONG_DATA"] = str(SHARED)


def shared_data_or_skip(name: str) -> Path:
    """The shared copy of data set `name`, or a skip saying why it is missing."""
    root = Path(os.environ.get("LIFELONG_DATA", SHARED))
    path = root / name
    if not path.is_dir():
        pytest.skip(f"real data {name!r} not found under {root}: set LIFELONG_DATA to the "
                    "shared/data folder")
    return path


@pytest.fixture(scope="session")
def permuted_digits():  # type: ignore[no-untyped-def]
    """Three permuted tasks of real 8×8 digits (embedded, no download)."""
    from lifelong import build_stream

    return build_stream("permuted", source="digits", num_tasks=3, seed=0)


@pytest.fixture(scope="session")
def split_digits():  # type: ignore[no-untyped-def]
    """Split digits, five 2-class tasks, task-incremental (multi-head)."""
    from lifelong import build_stream

    return build_stream("split", source="digits", scenario="task", seed=0)
