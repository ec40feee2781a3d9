"""A run's files: ``<out>/<run_id>/`` with config.yaml, matrix.json and matrix.png.

Owns writing them atomically, and telling whether a folder already holds them (a reused run
is not drawn again). Does not own the store or the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from lifelong.errors import ConfigError
from lifelong.experiments.base import Outcome
from lifelong.io import atomic_write_json, atomic_write_text
from lifelong.run.planning import RunSpec
from lifelong.store import Store
from lifelong.train import RunResult


def write_files(spec: RunSpec, result: RunResult, store: Store, out: Path, *,
                reused: bool = False) -> Outcome:
    """Write `<out>/<run_id>/`: config.yaml, matrix.json and matrix.png, atomically. If that
    fails, a run not yet completed in `store` is marked failed (its rows stay)."""
    from lifelong.plots import matrix_heatmap

    cfg, run_id, metrics = spec.config, spec.run_id, result.metrics
    run_dir = out / run_id
    payload = {
        "run_id": run_id, "matrix": [list(r) for r in result.matrix], **metrics,
        **result.per_task(),
        "curves": [{"task": c.task_index, "step": c.step, "accuracies": list(c.accuracies)}
                   for c in result.curves]}
    outcome = Outcome(run_id, spec.strategy, spec.label or spec.strategy, spec.seed, cfg,
                      result, run_dir, reused)
    if reused and files_hold(run_dir, payload):  # a resumed study: nothing to redraw
        return outcome
    try:  # the files first: a run is 'completed' only once everything it wrote is there
        atomic_write_text(run_dir / "config.yaml",
                          yaml.safe_dump({**cfg, "seed": spec.seed}, sort_keys=False))
        atomic_write_json(run_dir / "matrix.json", payload)
        matrix_heatmap(result.matrix, f"{spec.strategy} on {result.stream} (seed {spec.seed})",
                       run_dir / "matrix.png")
    except OSError as e:
        if not store.is_completed(run_id):
            store.fail_run(run_id, error=f"writing {run_dir}: {e}")
        raise ConfigError(f"cannot write the run's files in {run_dir} ({e}); pass --out with "
                          "a writable folder (its rows stay in the store)") from None
    return outcome


def files_hold(run_dir: Path, payload: dict[str, Any]) -> bool:
    """Whether `run_dir` already holds this run's files as `write_files` would write them
    (a reused run written before: its figure need not be drawn again)."""
    try:
        same = json.loads((run_dir / "matrix.json").read_text()) == json.loads(
            json.dumps(payload))
    except (OSError, ValueError):
        return False
    return same and (run_dir / "matrix.png").is_file() and (run_dir / "config.yaml").is_file()
