"""`lifelong sweep`: a grid over options and seeds, on a local pool or on Ray; resumable;
failures recorded; two sweeps on one store lose nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lifelong.cli import main
from lifelong.errors import ConfigError
from lifelong.run.sweep import parse_grid, parse_seeds, plan_sweep, split_values
from lifelong.store import Store

LIFELONG = [sys.executable, "-m", "lifelong.cli"]
GRID = ["single", "--quick", "--grid", "strategy.name=naive,ewc", "--grid",
        "strategy.strength=1,100"]


def sweep(tmp_path: Path, *args: str, store: str = "s.sqlite") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIFELONG, "sweep", *args, "--store", str(tmp_path / store),
                           "--out", str(tmp_path / "out"), "--no-progress", "--json"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def sequential(capsys: pytest.CaptureFixture[str], tmp_path: Path, strategy: str,
               seed: int, *sets: str) -> list[list[float]]:
    """The matrix of one ordinary `lifelong run` of the same config, in its own store."""
    code = main(["run", "single", "--quick", "--no-progress", "--json", "--set",
                 f"strategy.name={strategy}", *(a for s in sets for a in ("--set", s)),
                 "--seed", str(seed), "--store", str(tmp_path / "seq.sqlite"), "--out",
                 str(tmp_path / "seq")])
    out, _ = capsys.readouterr()
    assert code == 0
    matrix: list[list[float]] = json.loads(out)["runs"][0]["matrix"]
    return matrix


# ---------------------------------------------------------------------------- parsing
def test_grid_and_seed_parsing() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-1,7,1") == [0, 1, 7]
    assert split_values("a,[1,2],{x: 1, y: 2}") == ["a", "[1,2]", "{x: 1, y: 2}"]
    assert parse_grid(["strategy.strength=1,10"]) == [("strategy.strength", ["1", "10"])]
    with pytest.raises(ConfigError, match="expected key=v1,v2"):
        parse_grid(["strategy.strength"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["a.b=1", "a.b=2"])
    with pytest.raises(ConfigError, match="--seeds 'x'"):
        parse_seeds("x")


def test_an_option_a_strategy_lacks_is_left_out_of_its_runs() -> None:
    s = plan_sweep("single", parse_grid(["strategy.name=naive,ewc",
                                         "strategy.strength=1,100"]), seeds=[0, 1], quick=True)
    labels = sorted({r.label for r in s.runs})
    assert labels == ["ewc strength=1", "ewc strength=100", "naive"]
    assert len(s.runs) == 6  # naive twice (seeds), not four times
    with pytest.raises(ConfigError) as e:  # every grid point's problem, named by its point
        plan_sweep("single", parse_grid(["strategy.name=ewc", "train.lr=-1,0.1"]), quick=True)
    assert "strategy.name=ewc, train.lr=-1: train.lr=-1.0 must be a positive" in str(e.value)


# ------------------------------------------------------------------------ local pool
def test_a_local_sweep_stores_every_run_skips_them_again_and_records_failures(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text(
        "from lifelong.strategies import STRATEGIES\n"
        "from lifelong.strategies.base import Strategy\n\n"
        "@STRATEGIES.register('crashy')\n"
        "class Crashy(Strategy):\n"
        "    name = 'crashy'\n\n"
        "    def after_task(self, task):\n"
        "        if self.seed == 1:\n"
        "            raise RuntimeError('boom on seed 1')\n")
    done = sweep(tmp_path, "single", "--quick", "--grid", "strategy.name=naive,crashy",
                 "--seeds", "0-1", "--import", str(crash), "--max-parallel", "2")
    assert done.returncode == 1, done.stderr  # a failure: the sweep went on, exit code says so
    doc = json.loads(done.stdout)
    assert [f["seed"] for f in doc["failed"]] == [1]
    assert "RuntimeError: boom on seed 1" in doc["failed"][0]["error"]
    assert sorted((r["label"], r["seed"]) for r in doc["runs"]) == [
        ("crashy", 0), ("naive", 0), ("naive", 1)]
    with Store(tmp_path / "s.sqlite") as store:
        status = {(r.label, r.seed): r.status for r in store.list_runs()}
        failed = store.get_run(doc["failed"][0]["run_id"])
    assert status == {("naive", 0): "completed", ("naive", 1): "completed",
                      ("crashy", 0): "completed", ("crashy", 1): "failed"}
    assert "boom on seed 1" in (failed.error or "")
    assert doc["runs"][0]["matrix"] == sequential(capsys, tmp_path, "naive", 0)

    again = sweep(tmp_path, "single", "--quick", "--grid", "strategy.name=naive,crashy",
                  "--seeds", "0-1", "--import", str(crash))
    doc2 = json.loads(again.stdout)
    assert doc2["reused"] == 3 and all(r["reused"] for r in doc2["runs"])
    assert len(doc2["failed"]) == 1  # the failed run is tried again, and fails again


def test_two_sweeps_writing_one_store_at_once_lose_nothing(tmp_path: Path) -> None:
    args = [["single", "--quick", "--grid", "strategy.name=naive,ewc", "--seeds", "0-1",
             "--max-parallel", "1"],
            ["single", "--quick", "--grid", "strategy.name=ewc,si", "--seeds", "1-2",
             "--max-parallel", "1"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*LIFELONG, "sweep", *a, "--store", str(tmp_path / "s.sqlite"),
                               "--out", str(tmp_path / "out"), "--no-progress", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for a in args]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    expected = {("naive", 0), ("naive", 1), ("ewc", 0), ("ewc", 1), ("ewc", 2), ("si", 1),
                ("si", 2)}
    with Store(tmp_path / "s.sqlite") as store:
        runs = store.list_runs()
        records = [store.get_run(r.run_id) for r in runs]
    assert {(r.label, r.seed) for r in runs} == expected and len(runs) == len(expected)
    assert all(r.status == "completed" and r.rows_recorded == r.num_tasks + 1 for r in runs)
    by_id: dict[str, Any] = {}
    for out, _ in outs:
        for r in json.loads(out)["runs"]:
            by_id.setdefault(r["run_id"], r["matrix"])
            assert by_id[r["run_id"]] == r["matrix"]  # ewc seed 1, run by both: one result
    assert {rec.run_id: rec.matrix for rec in records} == by_id


# ------------------------------------------------------------------------------- Ray
def test_a_sweep_on_a_local_ray_instance_matches_sequential_runs(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install "
                              "'lifelong[ray]'); make install puts it in the dev environment")
    from lifelong.run.executors import RayExecutor
    from lifelong.run.sweep import run_sweep

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        s = plan_sweep("single", parse_grid(["strategy.name=naive,ewc",
                                             "strategy.strength=1,100"]), seeds=[0, 1],
                       quick=True)
        executor = RayExecutor()  # joins the instance the test started
        res = run_sweep(s, store_path=tmp_path / "ray.sqlite", out_dir=tmp_path / "out",
                        executor=executor, progress=False)
        executor.close()  # not its instance: left running
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert not res.failures and len(res.outcomes) == 6
    with Store(tmp_path / "ray.sqlite") as store:
        runs = store.list_runs()
        stored = {r.run_id: store.get_run(r.run_id) for r in runs}
    assert sorted((r.label, r.seed) for r in runs) == sorted(
        (label, seed) for label in ("naive", "ewc strength=1", "ewc strength=100")
        for seed in (0, 1))
    assert all(r.status == "completed" for r in runs)
    for o in res.outcomes:
        sets = [f"strategy.strength={o.config['strategy']['strength']}"] if (
            o.strategy == "ewc") else []
        assert stored[o.run_id].matrix == sequential(capsys, tmp_path, o.strategy, o.seed, *sets)


def test_ray_missing_or_misused_is_one_clear_message(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    where = ["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")]
    code = main(["sweep", *GRID, "--executor", "ray", *where])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'lifelong[ray]'" in err and "Traceback" not in err
    code = main(["sweep", *GRID, "--address", "10.0.0.1:6379", *where])
    err = capsys.readouterr().err
    assert code == 2 and "add --executor ray" in err
    assert not (tmp_path / "s.sqlite").exists()  # nothing ran, nothing was stored
