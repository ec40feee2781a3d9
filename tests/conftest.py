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


class Untouchable:
    """A test part that fails if anything reads it (its size may be asked)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: object) -> object:
        raise AssertionError("the test set was read")


@pytest.fixture
def digits_without_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stream builder loads `digits` with a test part that fails when read: a run that
    passes never looked at a test image or label."""
    from lifelong.data.builders import _common
    from lifelong.data.sources import SourceData, load_source

    real = load_source("digits")
    poisoned = SourceData(real.name, real.train_x, real.train_y,
                          Untouchable(len(real.test_y)),  # type: ignore[arg-type]
                          Untouchable(len(real.test_y)),  # type: ignore[arg-type]
                          real.num_classes)
    monkeypatch.setattr(_common, "load_source", lambda *a, **k: poisoned)


@pytest.fixture
def isolated_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the real home, cache, $LIFELONG_DATA, /usr/share or the network."""
    from lifelong.data.sources import locate

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LIFELONG_DATA", raising=False)
    monkeypatch.setenv("LIFELONG_OFFLINE", "1")
    monkeypatch.setattr(locate, "SYSTEM_DIRS", (tmp_path / "system",))
    return tmp_path


def sigkill_at_first_checkpoint(cmd: list[str], folder: Path) -> None:
    """Start `cmd` (a `lifelong` command line) in a real process and SIGKILL it as soon as a
    checkpoint appears in `folder`: a run stopped mid-stream, as a crash would leave it."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (folder.is_dir() and any(folder.glob("*.pt"))):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
