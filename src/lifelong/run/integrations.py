"""Experiment trackers (MLflow, TensorBoard) as callbacks that only observe a run: no random
draw, no tensor touched, so results are the same with or without them. Owns the loggers and
`build_loggers` (``--mlflow``, ``--tensorboard``); a tracker is imported when one is built."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lifelong.callbacks import Callback, CurvePoint, EpochEnd, RunEnd, RunStart, TaskEnd
from lifelong.errors import ConfigError
from lifelong.metrics import summary
from lifelong.registry import suggest

_MAX_VALUE, _MAX_KEY = 6000, 250  # MLflow's param value and key lengths (its validation.py)
_BAD_KEY = re.compile(r"[^/\w.\- ]")  # the characters MLflow refuses in a key
KINDS = ("mlflow", "tensorboard")


def _row(row: Sequence[float], template: str) -> dict[str, float]:
    return {template.format(j): float(a) for j, a in enumerate(row)}


class Logger(Callback):
    """Writes to a tracker from `on_run_start` to `on_run_end` or `close`: row i of R at step i
    (a resumed run replays its finished tasks, so its log is whole), the mean accuracy over the
    tasks seen, costs, diagnostics, the summary; never NaN or infinities."""

    NAMES: Mapping[str, str] = {}  # name templates: "acc", "avg", "cost", "diag"
    SUMMARY = "{}"

    def on_run_start(self, event: RunStart) -> None:
        self.close()
        self._open_run(event)
        self._scalars(_row(event.initial_accuracies, self.NAMES["acc"]), 0)
        for done in event.completed:
            for point in done.curve:
                self.on_curve_point(point)
            self.on_task_end(done)

    def on_task_end(self, event: TaskEnd) -> None:
        seen, n = event.accuracies[:event.task_index + 1], self.NAMES
        self._scalars({**_row(event.accuracies, n["acc"]), n["avg"]: sum(seen) / len(seen),
                       **{n["cost"].format(k): v for k, v in event.costs.as_dict().items()},
                       **{n["diag"].format(k): v for k, v in event.diagnostics.items()}},
                      event.task_index + 1)

    def on_run_end(self, event: RunEnd) -> None:
        self._scalars({self.SUMMARY.format(k): v for k, v in summary(event.matrix).items()},
                      len(event.matrix) - 1)
        self._finish(event)

    def close(self, status: str = "FAILED") -> None:
        """End an open run as `status`, release the tracker; safe twice or after the end."""
        raise NotImplementedError

    def _scalars(self, values: Mapping[str, float], step: int) -> None:
        self._write({k: float(v) for k, v in values.items() if math.isfinite(v)}, step)

    def _open_run(self, event: RunStart) -> None: raise NotImplementedError
    def _write(self, values: Mapping[str, float], step: int) -> None: raise NotImplementedError
    def _finish(self, event: RunEnd) -> None: self.close("FINISHED")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to strings, JSON for non-strings: ``{"a": {"b": [8]}}`` → ``{"a.b": "[8]"}``."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return out


class MLflowLogger(Logger):
    """Logs to MLflow by its client API (not the global active run, so two runs in one process
    do not mix): params, metrics, ``matrix.json``, ``matrix.png``; a run left open ends FAILED
    at exit. `tracking_uri` None is the folder ``mlruns/`` here; a bare path is a folder too."""

    NAMES = {"acc": "acc_task_{}", "avg": "avg_acc_seen", "cost": "cost/{}", "diag": "diag/{}"}

    def __init__(self, *, run_id: str, run_name: str, experiment: str, config: dict[str, Any],
                 tracking_uri: str | None = None) -> None:
        self.client, uri, self.experiment_id = _mlflow_experiment(tracking_uri, experiment)
        self.tracking_uri = uri
        self.run_id, self.run_name, self.mlflow_run_id, self._title = run_id, run_name, "", run_name
        self.params = {_BAD_KEY.sub("_", k)[:_MAX_KEY]: v[:_MAX_VALUE]
                       for k, v in flatten(config).items()}
        self._open: weakref.finalize[..., MLflowLogger] | None = None

    def close(self, status: str = "FAILED") -> None:
        if self._open is not None and self._open.detach() is not None:
            self.client.set_terminated(self.mlflow_run_id, status)

    def _open_run(self, event: RunStart) -> None:
        from mlflow.entities import Param
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags={
            "lifelong.run_id": self.run_id, "lifelong.strategy": event.strategy})
        self.mlflow_run_id = rid = run.info.run_id
        self._open = weakref.finalize(self, self.client.set_terminated, rid, "FAILED")
        self._title = f"{self.run_name}: {event.strategy} on {event.stream}"
        self.client.log_batch(rid, params=[Param(k, v) for k, v in self.params.items()])

    def _write(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.mlflow_run_id, [
            Metric(_BAD_KEY.sub("_", k)[:_MAX_KEY], v, now, step) for k, v in values.items()])

    def _finish(self, event: RunEnd) -> None:
        from lifelong.plots import matrix_heatmap
        rid = self.mlflow_run_id
        self.client.log_dict(rid, {"matrix": [list(r) for r in event.matrix]}, "matrix.json")
        with tempfile.TemporaryDirectory() as tmp:
            png = matrix_heatmap(event.matrix, self._title, Path(tmp) / "matrix.png")
            self.client.log_artifact(rid, str(png))
        self.close("FINISHED")


def _mlflow_experiment(tracking_uri: str | None, experiment: str) -> tuple[Any, str, str]:
    """(client, URI, experiment id) of MLflow experiment `experiment` at `tracking_uri` (None:
    the folder ``mlruns/`` here; a bare path is a folder too), created if missing."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError("--mlflow needs MLflow, which is not installed; install it with: "
                          "pip install 'lifelong[mlflow]'") from None
    uri = tracking_uri or "mlruns"
    if not re.match(r"^[A-Za-z][\w+.-]+:", uri):  # not file:, sqlite:, http(s):, ...
        uri = Path(uri).expanduser().absolute().as_uri()
    if uri.startswith("file:"):  # MLflow 3 refuses a folder store unless one opts in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:  # the experiment now, so a URI MLflow cannot use fails before a run starts
        client = MlflowClient(tracking_uri=uri)
        if client.get_experiment_by_name(experiment) is None:
            with contextlib.suppress(MlflowException):  # another worker may create it first
                client.create_experiment(experiment)
        found = client.get_experiment_by_name(experiment)
    except MlflowException as e:
        found, uri = None, f"{uri} ({e})"
    if found is None:
        raise ConfigError(f"--mlflow {uri}: MLflow cannot keep experiment {experiment!r} "
                          "there; give a writable folder, sqlite:/// file or http(s):// URL")
    return client, uri, str(found.experiment_id)


def log_figures(tracking_uri: str | None, experiment: str, figures: Sequence[Path],
                run_ids: Sequence[str]) -> None:
    """An experiment's figures (drawn from several runs) as the artifacts of one MLflow run
    named ``<experiment> figures``, tagged with the lifelong run ids they show."""
    client, _, experiment_id = _mlflow_experiment(tracking_uri, experiment)
    run = client.create_run(experiment_id, run_name=f"{experiment} figures",
                            tags={"lifelong.run_ids": ",".join(run_ids)[:5000]})
    for figure in figures:
        client.log_artifact(run.info.run_id, str(figure))
    client.set_terminated(run.info.run_id, "FINISHED")


class TensorBoardLogger(Logger):
    """Writes scalars under ``log_dir/run_name-run_id``, also ``loss/train`` per epoch (counted
    on across a resume) and ``curve/task_j`` at global steps."""

    NAMES = {"acc": "acc/task_{}", "avg": "acc/avg_seen", "cost": "cost/{}", "diag": "diag/{}"}
    SUMMARY = "summary/{}"

    def __init__(self, *, log_dir: str | Path, run_id: str, run_name: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs TensorBoard, which is not installed; install "
                              "it with: pip install tensorboard") from None
        self._writer_class = SummaryWriter
        self.path, self.epochs = Path(log_dir) / f"{run_name}-{run_id}", 0
        self.writer: Any = None  # a SummaryWriter while a run is open

    def on_epoch_end(self, event: EpochEnd) -> None:
        self.epochs += 1
        self._scalars({"loss/train": event.mean_loss}, self.epochs)

    def on_curve_point(self, event: CurvePoint) -> None:
        self._scalars(_row(event.accuracies, "curve/task_{}"), event.step)

    def close(self, status: str = "FAILED") -> None:
        if self.writer is not None:
            self.writer.close()  # flushes first
            self.writer = None

    def _open_run(self, event: RunStart) -> None:
        self.writer = self._writer_class(log_dir=str(self.path))
        self.epochs = len(event.completed) * event.epochs  # the epochs before a resume

    def _write(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items() if self.writer is not None else ():
            self.writer.add_scalar(name, value, step)


def build_loggers(specs: Sequence[tuple[str, str | None]], *, run_id: str, run_name: str,
                  experiment: str, config: dict[str, Any]) -> list[Callback]:
    """The loggers `specs` ask for: ``("mlflow", tracking URI or None)`` or ``("tensorboard",
    folder or None = ``runs``)``. Every unknown kind is reported before any logger is built."""
    if bad := [f"unknown logger {kind!r}{suggest(kind, KINDS)}; valid: {', '.join(KINDS)}"
               for kind, _ in specs if kind not in KINDS]:
        raise ConfigError(bad)
    return [MLflowLogger(run_id=run_id, run_name=run_name, experiment=experiment,
                         config=config, tracking_uri=where) if kind == "mlflow"
            else TensorBoardLogger(log_dir=where or "runs", run_id=run_id, run_name=run_name)
            for kind, where in specs]
