"""MLflow and TensorBoard loggers only observe: a real run logged to each reads back as its
matrix R, its results equal the run's without them, a resumed run's log is whole, a run that
never ended is closed as FAILED (once), and unknown kinds or missing packages are ConfigErrors."""

from __future__ import annotations

import io
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.callbacks import Callback, Costs, RunEnd, RunStart, TaskEnd
from lifelong.data.task import Stream
from lifelong.errors import ConfigError
from lifelong.run.integrations import Logger, MLflowLogger, TensorBoardLogger, build_loggers
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Strategy
from lifelong.train import Progress, RunResult

pytestmark = pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")

CFG = TrainConfig(epochs=1, lr=0.1, batch_size=64, eval_every=10, device="cpu")
CONFIG: dict[str, Any] = {"strategy": {"name": "ewc", "strength": 10.0},
                          "model": {"name": "mlp", "hidden": [16]},
                          "train": {"epochs": 1, "lr": 0.1, "grad_clip": None}}
NAMES = {"run_id": "abc123", "run_name": "ewc-digits"}


@pytest.fixture(autouse=True)
def _restore_file_store_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflowLogger opts this process in to MLflow's folder store (MLFLOW_ALLOW_FILE_STORE);
    set-then-delete records the variable's original state, so the opt-in ends with each test
    and every test starts without it (the logger must opt in by itself)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")


@pytest.fixture(scope="module")
def stream() -> Stream:
    s: Stream = build_stream("permuted", source="digits", num_tasks=3, seed=0)
    return s


@pytest.fixture(scope="module")
def plain(stream: Stream) -> RunResult:
    """The run without loggers."""
    return fit_stream(ewc(stream), stream, CFG, seed=0)


def ewc(stream: Stream) -> Strategy:
    return build_strategy("ewc", build_model("mlp", stream, hidden=[16], seed=0), strength=10.0)


def column(matrix: Sequence[Sequence[float]], j: int) -> list[float]:
    return [row[j] for row in matrix]


def rng_states() -> tuple[Any, ...]:
    return (torch.get_rng_state().tolist(), random.getstate(), np.random.get_state()[1].tolist())


def mlflow_runs(uri: str) -> tuple[Any, list[Any]]:
    """The client and the runs of experiment ``exp`` at `uri`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp")
    assert exp is not None
    return client, list(client.search_runs([exp.experiment_id]))


def history(client: Any, run_id: str, key: str) -> tuple[list[int], list[float]]:
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return [m.step for m in points], [m.value for m in points]


def scalars(log_dir: Path, tag: str) -> tuple[list[int], list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)]


def check_mlflow(uri: str, matrix: Sequence[Sequence[float]]) -> None:
    """The one run at `uri` holds `matrix` as metrics and as an artifact, and is FINISHED."""
    client, runs = mlflow_runs(uri)
    (run,) = runs
    rid, T = run.info.run_id, len(matrix[0])
    assert run.info.status == "FINISHED" and run.info.run_name == "ewc-digits"
    assert run.data.tags["lifelong.run_id"] == "abc123"
    for j in range(T):
        assert history(client, rid, f"acc_task_{j}") == (list(range(T + 1)), column(matrix, j))
    steps, avg = history(client, rid, "avg_acc_seen")
    assert steps == [1, 2, 3] and avg[-1] == pytest.approx(sum(matrix[-1]) / T)
    assert history(client, rid, "cost/parameters")[0] == [1, 2, 3]
    assert history(client, rid, "cost/train_seconds")[0] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(rid)}
    assert {"matrix.json", "matrix.png"} <= artifacts
    path = Path(client.download_artifacts(rid, "matrix.json"))
    assert json.loads(path.read_text())["matrix"] == [list(r) for r in matrix]


def check_tensorboard(log_dir: Path, result: RunResult, *, resumed: int = 0) -> None:
    """The scalars under `log_dir` are `result`'s; a run resumed after `resumed` tasks has no
    training loss for them (events keep none), and counts its epochs on from theirs."""
    matrix, T = result.matrix, len(result.matrix[0])
    for j in range(T):
        steps, values = scalars(log_dir, f"acc/task_{j}")
        assert steps == list(range(T + 1))
        assert values == pytest.approx(column(matrix, j), rel=1e-6)  # stored as float32
    assert scalars(log_dir, "loss/train")[0] == [1, 2, 3][resumed:]  # 3 tasks × 1 epoch
    steps, values = scalars(log_dir, "curve/task_0")
    assert steps == [p.step for p in result.curves] and len(steps) >= 3
    assert values == pytest.approx([p.accuracies[0] for p in result.curves], rel=1e-6)
    assert scalars(log_dir, "cost/parameters")[0] == [1, 2, 3]
    assert scalars(log_dir, "summary/acc")[1] == pytest.approx([result.metrics["acc"]])


def test_mlflow_logs_the_run_and_only_observes(tmp_path: Path, stream: Stream,
                                               plain: RunResult) -> None:
    uri = str(tmp_path / "mlruns")
    logger = MLflowLogger(experiment="exp", config=CONFIG, tracking_uri=uri, **NAMES)
    before = rng_states()
    result = fit_stream(ewc(stream), stream, CFG, seed=0, callbacks=[logger])
    assert result.matrix == plain.matrix and rng_states() == before
    check_mlflow(uri, result.matrix)
    client, (run,) = mlflow_runs(uri)
    params = run.data.params
    assert params["strategy.name"] == "ewc" and params["model.hidden"] == "[16]"
    assert params["train.grad_clip"] == "null" and params["train.lr"] == "0.1"
    assert run.data.metrics["acc"] == pytest.approx(plain.metrics["acc"])
    import mlflow

    assert mlflow.active_run() is None  # the client API only: no global run left behind
    logger.close()  # after a finished run: nothing to do
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_tensorboard_logs_the_run_and_only_observes(tmp_path: Path, stream: Stream,
                                                    plain: RunResult) -> None:
    logger = TensorBoardLogger(log_dir=tmp_path / "tb", **NAMES)
    before = rng_states()
    result = fit_stream(ewc(stream), stream, CFG, seed=0, callbacks=[logger])
    assert result.matrix == plain.matrix and rng_states() == before
    assert logger.writer is None  # flushed and closed at the run's end
    logger.close()
    check_tensorboard(tmp_path / "tb" / "ewc-digits-abc123", plain)


def test_a_resumed_run_logs_the_tasks_finished_before(tmp_path: Path, stream: Stream,
                                                      plain: RunResult) -> None:
    first = ewc(stream)
    saved: list[tuple[Progress, bytes]] = []

    def keep(progress: Progress) -> None:
        if len(progress.ends) == 1:
            buf = io.BytesIO()
            torch.save(first.state_dict(), buf)
            saved.append((progress, buf.getvalue()))

    fit_stream(first, stream, CFG, seed=0, checkpoint=keep)
    (progress, state), = saved
    second = ewc(stream)
    second.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
    uri = str(tmp_path / "mlruns")
    loggers = build_loggers([("mlflow", uri), ("tensorboard", str(tmp_path / "tb"))],
                            experiment="exp", config=CONFIG, **NAMES)
    try:
        result = fit_stream(second, stream, CFG, seed=0, callbacks=loggers, resume=progress)
    finally:
        for logger in loggers:
            assert isinstance(logger, Logger)
            logger.close()  # after a finished run: nothing to do
    assert result.matrix == plain.matrix
    check_mlflow(uri, plain.matrix)
    check_tensorboard(tmp_path / "tb" / "ewc-digits-abc123", plain, resumed=1)


def test_a_run_that_raises_is_closed_as_failed_with_what_it_logged(tmp_path: Path,
                                                                   stream: Stream) -> None:
    class Stop(Callback):
        def on_task_end(self, event: TaskEnd) -> None:
            raise KeyboardInterrupt

    uri = str(tmp_path / "mlruns")
    logger = MLflowLogger(experiment="exp", config=CONFIG, tracking_uri=uri, **NAMES)
    with pytest.raises(KeyboardInterrupt):
        try:
            fit_stream(ewc(stream), stream, CFG, seed=0, callbacks=[logger, Stop()])
        finally:
            logger.close("KILLED")
    client, (run,) = mlflow_runs(uri)
    assert run.info.status == "KILLED"
    assert history(client, run.info.run_id, "acc_task_0")[0] == [0, 1]  # row 0, task 1


def test_a_run_that_never_ends_is_closed_failed_once_and_runs_do_not_mix(
        tmp_path: Path) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    a, b = (MLflowLogger(run_id=k, run_name=k, experiment="exp", config={}, tracking_uri=uri)
            for k in ("a", "b"))
    start = RunStart("naive", "s", ("t0",), 1, 0, (0.1,))
    for logger in (a, b):
        logger.on_run_start(start)
    diagnostics = {"capped": float("nan"), "kept": 2.0}
    a.on_task_end(TaskEnd(0, "t0", (0.9,), Costs(parameters=7), diagnostics=diagnostics))
    b.on_task_end(TaskEnd(0, "t0", (0.5,), Costs()))
    a.on_run_end(RunEnd(((0.1,), (0.9,))))  # one task: bwt, fwt, forgetting are NaN
    for _ in range(2):  # safe twice; `a` ended already
        a.close()
        b.close()
    client, runs = mlflow_runs(uri)
    run_a, run_b = sorted(runs, key=lambda r: r.data.tags["lifelong.run_id"])
    assert (run_a.info.status, run_b.info.status) == ("FINISHED", "FAILED")
    assert history(client, run_a.info.run_id, "acc_task_0")[1] == [0.1, 0.9]
    assert history(client, run_b.info.run_id, "acc_task_0")[1] == [0.1, 0.5]
    assert set(run_a.data.metrics) == {"acc_task_0", "avg_acc_seen", "diag/kept", "acc",
                                       *(f"cost/{k}" for k in Costs().as_dict())}


def test_unknown_kinds_are_reported_together_before_any_logger_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        build_loggers([("mlflw", None), ("mlflow", None), ("wandb", "x")], experiment="exp",
                      config={}, **NAMES)
    assert len(err.value.problems) == 2 and "did you mean 'mlflow'?" in str(err.value)
    assert "valid: mlflow, tensorboard" in str(err.value)
    assert not (tmp_path / "mlruns").exists()
    (logger,) = build_loggers([("mlflow", None)], experiment="exp", config={}, **NAMES)
    assert isinstance(logger, MLflowLogger)
    assert logger.tracking_uri == (tmp_path / "mlruns").as_uri()  # the default: a folder here


def test_a_missing_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("mlflow", "tensorboard")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"pip install 'lifelong\[mlflow\]'"):
        MLflowLogger(experiment="exp", config={}, **NAMES)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        TensorBoardLogger(log_dir=tmp_path, **NAMES)


def test_the_command_line_logs_runs_and_sweep_workers_to_both(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    # `lifelong run --mlflow DIR --tensorboard DIR` in this process, then a sweep whose two
    # runs log from worker processes: every run is there once, with its whole matrix.
    import subprocess

    from mlflow.tracking import MlflowClient

    from lifelong.cli import main

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    ml, tb = tmp_path / "mlruns", tmp_path / "tb"
    where = ["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o"),
             "--no-progress", "--mlflow", str(ml), "--tensorboard", str(tb)]
    assert main(["run", "single", "--quick", "--set", "strategy.name=naive", *where]) == 0
    done = subprocess.run([sys.executable, "-m", "lifelong.cli", "sweep", "single", "--quick",
                           "--grid", "strategy.name=ewc", "--seeds", "0-1", *where],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(ml.resolve().as_uri())
    (exp,) = [e for e in client.search_experiments() if e.name == "single"]
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["ewc seed 0", "ewc seed 1", "naive seed 0"]
    assert all(r.info.status == "FINISHED" and len(client.get_metric_history(
        r.info.run_id, "acc_task_0")) == 4 for r in runs)  # row 0 and 3 tasks
    assert len([d for d in tb.iterdir() if d.is_dir()]) == 3


def test_an_experiments_figures_go_to_mlflow_as_one_run(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from lifelong.cli import main

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    ml = tmp_path / "mlruns"
    assert main(["run", "ewc-surface", "--quick", "--no-progress", "--store",
                 str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o"), "--mlflow",
                 str(ml)]) == 0
    client = MlflowClient(ml.resolve().as_uri())
    (exp,) = [e for e in client.search_experiments() if e.name == "ewc-surface"]
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    figures = runs.pop("ewc-surface figures")
    assert len(runs) == 3  # naive, l2, ewc
    assert {r.data.tags["lifelong.run_id"] for r in runs.values()} == set(
        figures.data.tags["lifelong.run_ids"].split(","))
    assert [a.path for a in client.list_artifacts(figures.info.run_id)] == ["ewc_surface.png"]
