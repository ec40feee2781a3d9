"""Tests of the SQLite results store: round trips, re-runs, failures, lookups, crash safety."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lifelong.errors import ConfigError, StateError
from lifelong.report.tables import format_run, format_runs_table
from lifelong.store import SCHEMA_VERSION, CurveRow, NewRun, Store

SRC = Path(__file__).resolve().parents[1] / "src"
MATRIX = [[0.1, 0.2, 0.3], [0.9, 0.25, 0.3], [0.8, 0.95, 0.35], [0.7, 0.85, 0.99]]


def begin(store: Store, run_id: str = "abc123", **overrides: object) -> None:
    args: dict[str, object] = dict(experiment="permuted", strategy="ewc", stream="permuted-mnist",
                                   seed=0, config={"lr": 0.1, "b": [1, 2]}, num_tasks=3)
    args.update(overrides)
    store.begin(NewRun(run_id, **args))  # type: ignore[arg-type]


def record_all(store: Store, run_id: str = "abc123") -> None:
    for row, accs in enumerate(MATRIX):
        costs = {"train_seconds": 1.5 * row, "peak_memory_bytes": 2.0**20} if row else None
        curve = [(0, row - 1, 0.5), (10, row - 1, accs[row - 1])] if row else None
        store.record_row(run_id, row=row, accuracies=accs, costs=costs, curve=curve)


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_round_trip_of_a_three_task_run(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "lifelong.sqlite"
    with Store(path) as store:
        begin(store, git_commit="deadbeef", versions={"python": "3.11", "torch": "2.3"})
        assert not store.is_completed("abc123")
        record_all(store)
        store.finish_run("abc123", metrics={"acc": 0.88, "bwt": -0.1, "fwt": 0.05,
                                            "forgetting": 0.12, "extra": float("nan")})
        assert store.is_completed("abc123")
    with Store(path) as store:  # reopened: everything was committed
        rec = store.get_run("abc123")
    assert rec.status == "completed" and rec.finished_at is not None and rec.error is None
    assert rec.matrix == MATRIX
    assert rec.rows_recorded == 4 and rec.num_tasks == 3
    assert (rec.acc, rec.bwt, rec.fwt, rec.forgetting) == (0.88, -0.1, 0.05, 0.12)
    assert math.isnan(rec.metrics.pop("extra"))
    assert rec.metrics == {"acc": 0.88, "bwt": -0.1, "forgetting": 0.12, "fwt": 0.05}
    assert rec.costs == {t: {"train_seconds": 1.5 * (t + 1), "peak_memory_bytes": 2.0**20}
                         for t in range(3)}
    assert rec.curves[:2] == [CurveRow(0, 0, 0, 0.5), CurveRow(0, 10, 0, 0.9)]
    assert len(rec.curves) == 6 and rec.curves[-1] == CurveRow(2, 10, 2, 0.99)
    assert rec.config == {"lr": 0.1, "b": [1, 2]} and rec.git_commit == "deadbeef"
    assert rec.versions == {"python": "3.11", "torch": "2.3"} and rec.pid == os.getpid()
    with sqlite3.connect(path) as con:  # canonical JSON, WAL, schema version
        assert con.execute("SELECT config_json FROM runs").fetchone()[0] == '{"b":[1,2],"lr":0.1}'
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    text = format_run(rec)
    lines = text.splitlines()
    init = next(line for line in lines if line.startswith("init"))
    after3 = next(line for line in lines if line.startswith("after 3"))
    assert init.split() == ["init", "0.1000", "0.2000", "0.3000"] and len(init) == len(after3)
    assert "task 3" in text and "train_seconds" in text and "1,048,576" in text
    assert "-0.1000" in text and "6 points over 3 tasks" in text


def test_versions_are_recorded_by_default(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        begin(store)
        assert set(store.get_run("abc123").versions) == {
            "python", "torch", "numpy", "lifelong", "lifelong-code"}


def test_rerun_replaces_the_old_rows(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        begin(store)
        record_all(store)
        store.finish_run("abc123", metrics={"acc": 0.88})
        begin(store, strategy="si", num_tasks=2)
        store.record_row("abc123", row=0, accuracies=[0.5, 0.5])
        rec = store.get_run("abc123")
        assert len(store.list_runs()) == 1
    assert rec.status == "running" and rec.strategy == "si" and rec.num_tasks == 2
    assert rec.matrix == [[0.5, 0.5]]
    assert rec.metrics == {} and rec.costs == {} and rec.curves == [] and rec.acc is None


def test_fail_run_keeps_the_rows_recorded_so_far(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        begin(store)
        store.record_row("abc123", row=0, accuracies=MATRIX[0])
        store.record_row("abc123", row=1, accuracies=MATRIX[1], costs={"train_seconds": 2.0})
        store.fail_run("abc123", error="DivergenceError: loss became nan")
        rec = store.get_run("abc123")
        assert not store.is_completed("abc123")
        with pytest.raises(StateError, match="is failed, not running"):
            store.record_row("abc123", row=2, accuracies=MATRIX[2])
    assert rec.status == "failed" and rec.error == "DivergenceError: loss became nan"
    assert rec.matrix == MATRIX[:2] and rec.costs == {0: {"train_seconds": 2.0}}
    assert "after 1" in format_run(rec) and "loss became nan" in format_run(rec)


def test_invalid_rows_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(StateError, match="call begin first"):
            store.record_row("nope", row=0, accuracies=[0.1])
        begin(store)
        with pytest.raises(StateError, match="row 0 comes next"):
            store.record_row("abc123", row=1, accuracies=MATRIX[1])
        with pytest.raises(StateError, match="2 accuracies given for 3 tasks"):
            store.record_row("abc123", row=0, accuracies=[0.1, 0.2])
        for bad in (1.5, -0.1, float("nan"), float("inf")):
            with pytest.raises(StateError, match="accuracy on task 1"):
                store.record_row("abc123", row=0, accuracies=[0.1, bad, 0.2])
        with pytest.raises(StateError, match="trained task"):
            store.record_row("abc123", row=0, accuracies=MATRIX[0], costs={"train_seconds": 1})
        store.record_row("abc123", row=0, accuracies=MATRIX[0])
        with pytest.raises(StateError, match="eval_task in 0..2"):
            store.record_row("abc123", row=1, accuracies=MATRIX[1], curve=[(0, 3, 0.5)])
        with pytest.raises(StateError, match="repeats"):
            store.record_row("abc123", row=1, accuracies=MATRIX[1],
                             curve=[(0, 1, 0.5), (0, 1, 0.6)])
        with pytest.raises(StateError, match="1 of 4 matrix rows"):
            store.finish_run("abc123", metrics={"acc": 0.5})
        rec = store.get_run("abc123")
        assert rec.matrix == MATRIX[:1] and rec.costs == {} and rec.curves == []
        assert rec.status == "running"


def test_lookup_by_prefix_and_did_you_mean(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        for run_id in ("a1b2c3d4e5", "a1b2ffff00", "9f8e7d6c5b"):
            begin(store, run_id)
        assert store.get_run("9f8").run_id == "9f8e7d6c5b"
        assert store.get_run("a1b2c").run_id == "a1b2c3d4e5"
        with pytest.raises(ConfigError, match="ambiguous.*a1b2c3d4e5, a1b2ffff00"):
            store.get_run("a1b2")
        with pytest.raises(ConfigError, match="no run '9f8e7d6c5c'.*did you mean '9f8e7d6c5b'"):
            store.get_run("9f8e7d6c5c")
        with pytest.raises(ConfigError, match="no run 'zzz'.*lifelong runs"):
            store.get_run("zzz")


def test_list_runs_newest_first_and_by_experiment(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        begin(store, "r1", experiment="permuted")
        begin(store, "r2", experiment="split")
        begin(store, "r3", experiment="permuted")
        record_all(store, "r3")
        store.finish_run("r3", metrics={"acc": 0.9, "bwt": -0.05})
        runs = store.list_runs()
        assert [r.run_id for r in runs] == ["r3", "r2", "r1"]
        assert [r.run_id for r in store.list_runs(experiment="permuted")] == ["r3", "r1"]
    assert runs[0].acc == 0.9 and runs[0].bwt == -0.05 and runs[0].fwt is None
    assert runs[0].rows_recorded == 4 and runs[1].rows_recorded == 0
    table = format_runs_table(runs).splitlines()
    assert table[0].split()[:3] == ["run", "experiment", "strategy"] and len(table) == 4
    assert table[1].startswith("r3 ") and "3/3" in table[1] and "0.9000" in table[1]
    assert table[1].index("permuted") == table[0].index("experiment")
    assert format_runs_table([]) == "no runs recorded"


def test_foreign_files_raise_state_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some text that is long enough\n" * 20)
    with pytest.raises(StateError, match=r"notes\.sqlite: not a SQLite database"):
        Store(text)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(StateError, match=r"other\.sqlite: .*not a lifelong results store"):
        Store(other)
    newer = tmp_path / "newer.sqlite"
    Store(newer).close()
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 7")
    con.close()
    with pytest.raises(StateError, match="schema version 7.*upgrade lifelong"):
        Store(newer)


def test_live_running_run_is_left_alone(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        begin(store)
        with Store(tmp_path / "s.sqlite") as other:
            assert other.get_run("abc123").status == "running"


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL and os.kill(pid, 0)")
def test_killed_write_leaves_whole_rows_and_marks_the_run_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    child = run_python(
        """
        import sqlite3, sys, time
        from lifelong.store import NewRun, Store
        store = Store(sys.argv[1])
        store.begin(NewRun("r1", experiment="e", strategy="naive", stream="s", seed=0,
                           config={}, num_tasks=3))
        store.record_row("r1", row=0, accuracies=[0.1, 0.1, 0.1])
        store.record_row("r1", row=1, accuracies=[0.9, 0.1, 0.1], costs={"train_seconds": 1.0})
        con = sqlite3.connect(sys.argv[1], isolation_level=None)
        con.execute("BEGIN IMMEDIATE")  # row 2, half written and never committed
        con.execute('INSERT INTO cells (run_id, "row", col, accuracy) VALUES ("r1", 2, 0, 0.5)')
        con.execute("INSERT INTO costs VALUES ('r1', 1, 'train_seconds', 2.0)")
        print("inside", flush=True)
        time.sleep(60)
        """,
        str(path),
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line == "inside", child.stderr.read() if child.stderr else ""
    os.kill(child.pid, signal.SIGKILL)
    child.wait()  # reaped: its pid no longer exists

    with Store(path) as store:
        rec = store.get_run("r1")
        assert rec.status == "failed"
        assert rec.error == f"interrupted (process {child.pid} ended without finishing)"
        assert rec.matrix == [[0.1, 0.1, 0.1], [0.9, 0.1, 0.1]]
        assert rec.costs == {0: {"train_seconds": 1.0}}
        begin(store, "r1")  # the lock died with the process: the store is writable again
    child.communicate()


def test_concurrent_writers_from_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "s.sqlite"
    go = tmp_path / "go"
    code = """
        import os, sys, time
        from lifelong.store import NewRun, Store
        while not os.path.exists(sys.argv[3]):  # start together, on a store not yet created
            time.sleep(0.005)
        with Store(sys.argv[1]) as store:
            for i in range(30):
                run_id = f"{sys.argv[2]}-{i}"
                store.begin(NewRun(run_id, experiment="e", strategy="naive", stream="s",
                                   seed=i, config={"i": i}, num_tasks=2))
                for row in range(3):
                    store.record_row(run_id, row=row, accuracies=[0.5, 0.5],
                                     costs={"train_seconds": 0.1} if row else None)
                store.finish_run(run_id, metrics={"acc": 0.5})
        """
    workers = [run_python(code, str(path), name, str(go)) for name in ("w1", "w2")]
    go.touch()
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    with Store(path) as store:
        runs = store.list_runs()
        assert len(runs) == 60
        assert all(store.is_completed(r.run_id) and r.rows_recorded == 3 for r in runs)


def test_diagnostics_and_warnings_round_trip_with_the_row(tmp_path: Path) -> None:
    from lifelong.store import TaskWarning

    with Store(tmp_path / "s.sqlite") as store:
        begin(store)
        store.record_row("abc123", row=0, accuracies=MATRIX[0])
        store.record_row("abc123", row=1, accuracies=MATRIX[1],
                         diagnostics={"capped_fraction": 0.25, "undefined": math.nan},
                         warnings=["first", "second"])
        with pytest.raises(StateError, match="diagnostic 'bad' is inf"):
            store.record_row("abc123", row=2, accuracies=MATRIX[2],
                             costs={"train_seconds": 1.0}, diagnostics={"bad": math.inf},
                             warnings=["lost"])
        store.record_row("abc123", row=2, accuracies=MATRIX[2], warnings=["third"])
        rec = store.get_run("abc123")
    assert rec.matrix[:3] == MATRIX[:3] and rec.costs == {}  # the refused row left nothing
    assert rec.diagnostics[0]["capped_fraction"] == 0.25
    assert math.isnan(rec.diagnostics[0]["undefined"]) and set(rec.diagnostics) == {0}
    assert rec.warnings == [TaskWarning(0, "first"), TaskWarning(0, "second"),
                            TaskWarning(1, "third")]
    shown = format_run(rec)
    assert "capped_fraction" in shown and "task 1: second" in shown and "task 2: third" in shown


def test_warnings_belong_to_trained_rows(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        begin(store)
        with pytest.raises(StateError, match="belong to a trained task"):
            store.record_row("abc123", row=0, accuracies=MATRIX[0], warnings=["early"])


# The schema of version 1, as it shipped, to check that such a file is migrated.
V1_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL,
    strategy TEXT NOT NULL, stream TEXT NOT NULL, seed INTEGER NOT NULL,
    config_json TEXT NOT NULL, versions_json TEXT NOT NULL, git_commit TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')), error TEXT,
    pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    num_tasks INTEGER NOT NULL CHECK (num_tasks > 0));
CREATE INDEX runs_by_start ON runs (started_at);
CREATE TABLE cells (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    "row" INTEGER NOT NULL, col INTEGER NOT NULL, accuracy REAL NOT NULL,
    PRIMARY KEY (run_id, "row", col)) WITHOUT ROWID;
CREATE TABLE metrics (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, name)) WITHOUT ROWID;
CREATE TABLE costs (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    task INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (run_id, task, name)) WITHOUT ROWID;
CREATE TABLE curves (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    trained_task INTEGER NOT NULL, step INTEGER NOT NULL, eval_task INTEGER NOT NULL,
    accuracy REAL NOT NULL, PRIMARY KEY (run_id, trained_task, step, eval_task)) WITHOUT ROWID;
PRAGMA application_id = 1280070484;
PRAGMA user_version = 1;
INSERT INTO runs VALUES ('old1', 'single', 'naive', 'permuted/digits', 0, '{}', '{}', NULL,
    'completed', NULL, 1, 'elsewhere', '2024-01-01T00:00:00+00:00',
    '2024-01-01T00:01:00+00:00', 1);
INSERT INTO cells VALUES ('old1', 0, 0, 0.1), ('old1', 1, 0, 0.9);
INSERT INTO metrics VALUES ('old1', 'acc', 0.9);
INSERT INTO costs VALUES ('old1', 0, 'train_seconds', 2.0);
"""


def test_a_version_1_store_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    from lifelong.store import APPLICATION_ID, SCHEMA_VERSION

    path = tmp_path / "v1.sqlite"
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.close()
    assert APPLICATION_ID == 1280070484 and SCHEMA_VERSION == 4
    with Store(path) as store:
        old = store.get_run("old1")
        assert old.matrix == [[0.1], [0.9]] and old.costs == {0: {"train_seconds": 2.0}}
        assert old.diagnostics == {} and old.warnings == [] and old.task_keys == []
        assert old.label == "naive" and old.artifacts == {}  # label: the strategy
        begin(store, "new1")
        record_all(store, "new1")
        store.finish_run("new1", metrics={"acc": 0.5})
    with Store(path) as store:  # opening the migrated file again changes nothing
        store.begin(NewRun("new2", experiment="e", strategy="s", stream="x", seed=0, config={},
                           num_tasks=1, task_keys=("x/0",), label="s strength=10"))
        store.record_row("new2", row=0, accuracies=[0.1])
        store.record_row("new2", row=1, accuracies=[0.2], diagnostics={"d": 1.0},
                         warnings=["w"])
        assert store.get_run("new2").diagnostics == {0: {"d": 1.0}}
        assert store.get_run("new2").task_keys == ["x/0"]
        store.finish_run("new2", metrics={}, artifacts={"path": [[0, 1.5]]})
        assert store.get_run("new2").artifacts == {"path": [[0, 1.5]]}
        assert store.get_run("new2").label == "s strength=10"
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone() == (4,)
    tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert {"diagnostics", "warnings", "runs", "cells", "costs", "task_keys", "artifacts",
            "figures"} <= tables
