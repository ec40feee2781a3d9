"""Checkpoints: a run's state after each task, so a killed run continues where it stopped.

Owns the checkpoint file: the loop's `Progress` (row 0 of R and every finished task's
`TaskEnd`, and the optimizer's state where the run keeps one across tasks), the strategy's
`state_dict()` (weights, memories, importances, generator states)
and what the run's recorders kept. One file per run, replaced atomically after each task and
loaded with ``torch.load(weights_only=True)`` — plain values and tensors, never an arbitrary
pickle. Does not own deciding when to resume or remove it (`lifelong.run.execution`,
`lifelong.run.runner`).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from lifelong.callbacks import Costs, CurvePoint, TaskEnd
from lifelong.errors import StateError
from lifelong.io import atomic_write
from lifelong.train import Progress

FORMAT = 1  # bump when the layout below changes; an older file is refused, never misread


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Run `run_id` after `len(progress.ends)` tasks."""

    run_id: str
    progress: Progress
    strategy: dict[str, Any]  # Strategy.state_dict()
    artifacts: dict[str, Any]  # Recorder.artifact() by key

    @property
    def tasks_done(self) -> int:
        return len(self.progress.ends)


def checkpoint_path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / f"{run_id}.pt"


def to_bytes(ckpt: Checkpoint) -> bytes:
    """`ckpt` as the bytes of its file (plain values and CPU tensors, ``torch.save``)."""
    p = ckpt.progress
    plain = {
        "format": FORMAT, "run_id": ckpt.run_id, "row0": list(p.row0), "step": p.step,
        "ends": [_end_to_plain(e) for e in p.ends], "optimizer": p.optimizer,
        "strategy": ckpt.strategy,
        "artifacts": ckpt.artifacts}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    return buffer.getvalue()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a checkpoint's bytes to `path` atomically (a crash leaves the previous one whole)."""
    return atomic_write(path, lambda fh: fh.write(data))


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write `ckpt` to `path` atomically (a crash leaves the previous checkpoint whole)."""
    return write_bytes(path, to_bytes(ckpt))


def load_checkpoint(path: str | Path, run_id: str) -> Checkpoint | None:
    """The checkpoint of `run_id` at `path`, or None where there is none.

    Raises:
        StateError: the file is unreadable, of another format, or of another run; the
            message says to delete it (the run then trains from its first task).
    """
    path = Path(path)
    if not path.exists():
        return None
    return from_bytes(path.read_bytes(), run_id, where=str(path))


def from_bytes(data: bytes, run_id: str, *, where: str) -> Checkpoint:
    """The checkpoint of `run_id` in `data`, the bytes of the file at `where` (named in errors).

    Raises:
        StateError: unreadable, of another format, or of another run; the message says to
            delete the file (the run then trains from its first task).
    """
    fix = "delete it to train the run from its first task"
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StateError(f"{where}: not a readable lifelong checkpoint ({first}); {fix}"
                         ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise StateError(f"{where}: checkpoint format {got!r}, this lifelong reads {FORMAT}; "
                         f"{fix}")
    if raw.get("run_id") != run_id:
        raise StateError(f"{where}: a checkpoint of run {raw.get('run_id')!r}, not "
                         f"{run_id!r}; {fix}")
    try:
        progress = Progress(tuple(float(a) for a in raw["row0"]),
                            tuple(_end_from_plain(e) for e in raw["ends"]), int(raw["step"]),
                            raw.get("optimizer"))
        return Checkpoint(run_id, progress, dict(raw["strategy"]), dict(raw["artifacts"]))
    except (KeyError, TypeError, ValueError) as e:
        raise StateError(f"{where}: checkpoint is incomplete ({type(e).__name__}: {e}); "
                         f"{fix}") from None


class Checkpoints(Protocol):
    """Where a run's checkpoints go (`save`, after each task) and come from (`load`)."""

    def save(self, run_id: str, data: bytes) -> None: ...

    def load(self, run_id: str) -> bytes | None: ...


class CheckpointFolder:
    """The driver's checkpoints: ``<folder>/<run_id>.pt``, each replaced atomically, whether
    its bytes come from a run in this process or from a worker (`lifelong.run.executors`)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def save(self, run_id: str, data: bytes) -> None:
        write_bytes(checkpoint_path(self.folder, run_id), data)

    def load(self, run_id: str) -> bytes | None:
        path = checkpoint_path(self.folder, run_id)
        return path.read_bytes() if path.exists() else None


def _end_to_plain(e: TaskEnd) -> dict[str, Any]:
    return {"task_index": e.task_index, "task_key": e.task_key,
            "accuracies": list(e.accuracies), "costs": e.costs.as_dict(),
            "curve": [[p.task_index, p.step, list(p.accuracies)] for p in e.curve],
            "diagnostics": {str(k): float(v) for k, v in e.diagnostics.items()},
            "warnings": list(e.warnings)}


def _end_from_plain(d: dict[str, Any]) -> TaskEnd:
    return TaskEnd(int(d["task_index"]), str(d["task_key"]),
                   tuple(float(a) for a in d["accuracies"]), Costs.from_dict(d["costs"]),
                   tuple(CurvePoint(int(t), int(s), tuple(float(a) for a in accs))
                         for t, s, accs in d["curve"]),
                   diagnostics=dict(d["diagnostics"]), warnings=tuple(d["warnings"]))
