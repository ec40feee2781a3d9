"""Smoke test of `benchmarks/overhead.py`: it runs and its JSON has the promised shape.

Deliberately asserts no timings (machines are noisy); speed is judged by reading the benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import shared_data_or_skip

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overhead.py"


def test_overhead_quick_json() -> None:
    data = shared_data_or_skip("fashion-mnist")
    env = {**os.environ, "LIFELONG_DATA": str(data.parent), "LIFELONG_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--protocols", "P1",
         "--strategies", "naive", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    rows = out["rows"]
    assert [(r["protocol"], r["strategy"]) for r in rows] == [("P1", "naive")]
    row = rows[0]
    for key in ("ratio_wall", "ratio_train", "ratio_eval", "ours_wall_s", "bare_wall_s"):
        assert row[key] > 0, key
    for key in ("acc", "acc_bare"):
        assert 0.0 <= row[key] <= 1.0, key
    # The two loops do the same work (data, batch order, init, evaluation), so the ratio
    # compares like with like: naive must land on exactly the bare loop's accuracy.
    assert row["acc"] == row["acc_bare"] and row["acc"] > 0.3  # it learned (chance: 0.1)
    assert set(out["import_seconds"]) >= {"import lifelong"}


def test_checkpoints_benchmark_json() -> None:
    data = shared_data_or_skip("fashion-mnist")
    env = {**os.environ, "LIFELONG_DATA": str(data.parent), "LIFELONG_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "checkpoints.py"), "--json", "--protocols", "P1",
         "--strategies", "ewc", "--repeats", "1"],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["rows"]
    assert row["strategy"] == "ewc" and row["ratio_wall"] > 0
    assert row["checkpoint_mb"] > 0.3  # weights, and an anchor and importance per task
