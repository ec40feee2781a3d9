"""The command line's output: one strict JSON object with ``--json``, and a run as JSON.

Owns `emit` (undefined numbers become null) and `run_json`, the fields of one run in the
"runs" of ``--json`` that users' scripts rely on.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(obj: Any) -> None:
    """One JSON object on stdout; undefined numbers (NaN) become null, so it is strict JSON."""
    sys.stdout.write(json.dumps(_nan_to_null(obj), indent=None, default=str,
                                allow_nan=False) + "\n")


def _nan_to_null(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    return obj


def run_json(o: Any) -> dict[str, Any]:
    """One run of ``--json``'s "runs" (an `Outcome` with a result)."""
    return {
        "run_id": o.run_id, "strategy": o.strategy, "label": o.label,
        "stream": o.result.stream, "scenario": o.config["stream"].get("scenario"),
        "seed": o.seed, "matrix": [list(r) for r in o.result.matrix], **o.result.metrics,
        "train_seconds": sum(c.train_seconds for c in o.result.costs),
        "eval_seconds": sum(c.eval_seconds for c in o.result.costs),
        # the model's size after each task
        "parameters": [c.parameters for c in o.result.costs],
        "order": list(o.result.tasks),  # the task keys in training order
        "run_dir": str(o.run_dir),
        "reused": o.reused, "resumed_tasks": o.resumed_tasks,
        # 1: trained alone; G: trained with G-1 others as one vectorised group
        "group_size": int(o.result.diagnostics[0].get("group_size", 1.0)
                          if o.result.diagnostics else 1),
        **o.result.notes()}
