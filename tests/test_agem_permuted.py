"""The `agem-permuted` experiment (A-GEM's permuted-MNIST protocol): the reported stream is the
tasks after the tuning ones, tuning reads only the tuning tasks, PNN alone is told the task,
the published rows sit beside ours; and the `permuted` builder's `first_task`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from lifelong.data.builders import build_stream
from lifelong.errors import ConfigError
from lifelong.experiments.agem_permuted import PUBLISHED, REPORTED_TASKS, TUNE_GRID, TUNING_TASKS
from lifelong.run.runner import RunSpec, execute, plan


def _task_keys(runs: Sequence[RunSpec]) -> set[str]:
    """The keys of the tasks the runs train on (each distinct stream built once)."""
    streams = {(repr(sorted(r.config["stream"].items())), r.seed): r for r in runs}
    keys: set[str] = set()
    for r in streams.values():
        opts = {k: v for k, v in r.config["stream"].items() if k != "name"}
        keys |= {t.key for t in build_stream(r.config["stream"]["name"], seed=r.seed,
                                             **opts).tasks}
    return keys


def test_default_protocol_is_a_gems() -> None:
    p = plan("agem-permuted")
    runs = {r.strategy: r.config for r in p.runs}
    assert set(runs) == {"naive", "ewc", "mas", "agem", "gem", "pnn", "joint"}
    stream = runs["naive"]["stream"]
    assert (stream["source"], stream["num_tasks"], stream["first_task"]) == ("mnist", 17, 3)
    assert TUNING_TASKS + REPORTED_TASKS == 20
    assert stream["train_per_task"] == 1000 and stream["test_per_task"] is None
    train = runs["naive"]["train"]
    assert (train["epochs"], train["batch_size"], train["optimizer"]) == (1, 10, "sgd")
    assert runs["naive"]["model"]["hidden"] == [256, 256]
    assert runs["agem"]["strategy"]["memory_size"] == 250  # 25 per class x 10 classes
    assert runs["agem"]["strategy"]["memory_batch"] == 256
    assert runs["gem"]["strategy"]["memory_batch"] is None  # all memories, GEM's rule
    # One shared head for all, except PNN, which has a head per task and is told the task.
    assert {s: c["stream"]["scenario"] for s, c in runs.items()} == {
        **{s: "domain" for s in runs if s != "pnn"}, "pnn": "task"}


def test_quick_reports_the_tasks_after_the_tuning_ones_and_tuning_sees_only_those() -> None:
    evaluate = plan("agem-permuted", quick=True)
    tune = plan("agem-permuted", quick=True, sets=["options.phase=tune"])
    ev_keys, tune_keys = _task_keys(evaluate.runs), _task_keys(tune.runs)
    assert tune_keys == {f"permuted/digits/{i}" for i in range(TUNING_TASKS)}
    assert ev_keys == {f"permuted/digits/{i}" for i in range(TUNING_TASKS, TUNING_TASKS + 5)}
    # The full protocol: tasks 3-19 reported, 0-2 tuned, never the same task.
    full = plan("agem-permuted").runs[0].config["stream"]
    assert range(full["first_task"], full["first_task"] + full["num_tasks"]) == range(3, 20)
    # Tuning runs every strength of the grid; evaluating runs the chosen one.
    labels = {r.label for r in tune.runs if r.strategy in TUNE_GRID}
    assert len(labels) == sum(len(v) for g in TUNE_GRID.values() for v in g.values())
    assert len([r for r in evaluate.runs if r.strategy == "ewc"]) == 1


def test_first_task_gives_the_same_tasks_as_the_longer_stream() -> None:
    whole = build_stream("permuted", seed=3, source="digits", num_tasks=5,
                         train_per_task=50, test_per_task=20)
    tail = build_stream("permuted", seed=3, source="digits", num_tasks=2, first_task=3,
                        train_per_task=50, test_per_task=20)
    assert [t.key for t in tail.tasks] == [t.key for t in whole.tasks[3:]]
    assert [t.index for t in tail.tasks] == [0, 1]  # positions in this stream
    for a, b in zip(tail.tasks, whole.tasks[3:], strict=True):
        assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    with pytest.raises(ConfigError, match="first_task=-1 must be an integer >= 0"):
        build_stream("permuted", source="digits", first_task=-1)


def test_a_phase_that_does_not_exist_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="options.phase='tun' must be one of evaluate, tune"):
        plan("agem-permuted", sets=["options.phase=tun"])


@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")
def test_quick_run_prints_the_published_rows_beside_ours(tmp_path: Path) -> None:
    p = plan("agem-permuted", quick=True, strategies=["naive", "pnn"],
             sets=["stream.num_tasks=2", "stream.train_per_task=200", "stream.test_per_task=50"])
    res = execute(p, store_path=tmp_path / "s.sqlite", out_dir=tmp_path, progress=False)
    assert all(len(o.result.matrix[0]) == 2 for o in res.outcomes)  # only the reported tasks
    rows = {line.split()[0]: line.split() for line in res.table.splitlines()[2:-1]}
    assert set(rows) == {"naive", "pnn"}
    assert float(rows["naive"][3]) == PUBLISHED["naive"][1]
    assert float(rows["pnn"][3]) == PUBLISHED["pnn"][1]
    by = {r.ours: (r.value, ours) for r, ours in res.references}
    assert by["naive/acc"][0] == 0.4795 and by["pnn/acc"][0] == 0.9355
    assert by["naive/acc"][1] == pytest.approx(
        sum(res.outcomes[0].result.matrix[-1]) / 2 if res.outcomes[0].strategy == "naive"
        else sum(res.outcomes[1].result.matrix[-1]) / 2)
    assert by["gem/acc"][1] is None  # not run: nothing printed as ours
