"""`stream.order`: every stream's tasks in any order, without changing a task's data."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong import build_stream
from lifelong.cli import main
from lifelong.errors import ConfigError

STREAMS = [("permuted", {"num_tasks": 4}), ("rotated", {"num_tasks": 4}),
           ("split", {"num_tasks": 4, "scenario": "class"}), ("noisy", {"source": "digits"})]


@pytest.mark.parametrize(("name", "options"), STREAMS)
def test_reordering_leaves_every_task_s_data_identical(name: str, options: dict) -> None:  # type: ignore[type-arg]
    plain = build_stream(name, seed=3, **{"source": "digits", **options})
    n = len(plain)
    order = list(range(n))[::-1]
    moved = build_stream(name, seed=3, order=order, **{"source": "digits", **options})
    assert [t.key for t in moved.tasks] == [plain.tasks[i].key for i in order]
    for position, old in enumerate(order):
        a, b = plain.tasks[old], moved.tasks[position]
        assert b.index == position and (b.train.t == position).all()
        for part in ("train", "test"):
            x, y = getattr(a, part), getattr(b, part)
            assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)  # type: ignore[arg-type]
        assert a.classes == b.classes


def test_named_orders_and_strings() -> None:
    base = {"source": "digits", "num_tasks": 5}
    keys = [t.key for t in build_stream("permuted", seed=0, **base).tasks]

    def order(o: object, seed: int = 0) -> list[str]:
        return [t.key for t in build_stream("permuted", seed=seed, order=o, **base).tasks]

    assert order("given") == keys and order("reverse") == keys[::-1]
    assert order("2,0,1,4,3") == [keys[i] for i in (2, 0, 1, 4, 3)]
    assert order("random", 1) == order("random", 1) and sorted(order("random", 1)) == keys
    assert order("random", 1) != order("random", 2) or order("random", 1) != order("random", 3)


@pytest.mark.parametrize(("order", "message"), [
    ([0, 0, 1], "not a permutation.*repeats \\[0\\]"), ([0, 2], "misses \\[1\\]"),
    ([1, 2, 3], "has \\[3\\]"), ("revers", "did you mean 'reverse'"),
    ("easy", "must list task positions"), ([-1, 0, 1], "must list task positions"),
    ("greedy-affinity", "measures the tasks first")])
def test_an_order_that_is_not_a_permutation_is_one_clear_error(order: object,
                                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_stream("permuted", source="digits", num_tasks=3, seed=0, order=order)


def test_the_cli_carries_the_order_and_refuses_a_bad_one(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["run", "single", "--quick", "--no-progress", "--json", "--set", "strategy.name=naive",
            "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")]
    assert main([*args, "--set", "stream.order=2,0,1"]) == 0
    first = json.loads(capsys.readouterr().out)["runs"][0]
    assert first["order"] == ["permuted/digits/2", "permuted/digits/0", "permuted/digits/1"]
    assert main([*args, "--set", "stream.order=[2, 0, 1]"]) == 0  # the same run, reused
    again = json.loads(capsys.readouterr().out)["runs"][0]
    assert again["reused"] and again["order"] == first["order"]
    assert main([*args, "--set", "stream.order=0,0,1"]) == 2
    assert "not a permutation" in capsys.readouterr().err
    assert main([*args, "--set", "stream.order=best"]) == 2


def test_the_order_study_equals_separate_runs_and_ranks_the_choosers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lifelong import TrainConfig, build_model, build_strategy, fit_stream
    from lifelong.run.runner import execute, plan

    p = plan("task-order", quick=True, strategies=["naive"],
             sets=["options.orders=3", "train.epochs=1", "stream.train_per_task=200",
                   "stream.test_per_task=100"])
    res = execute(p, store_path=tmp_path / "s.sqlite", out_dir=tmp_path / "o", progress=False)
    rotated = [o for o in res.outcomes if o.config["stream"]["name"] == "rotated"]
    assert len(rotated) == 3 and len({o.result.tasks for o in rotated}) == 3
    o = rotated[-1]
    s = dict(o.config["stream"])
    stream = build_stream(s.pop("name"), seed=o.seed, **s)
    model = build_model("mlp", stream, seed=o.seed, hidden=[100])
    alone = fit_stream(build_strategy("naive", model), stream, TrainConfig(**o.config["train"]),
                       seed=o.seed)
    assert alone.matrix == o.result.matrix and alone.tasks == o.result.tasks
    for chooser in ("given", "random", "easy-to-hard", "greedy-affinity"):
        assert chooser in res.table
    assert "final accuracy by training position" in res.table
    assert {f.name for f in res.figures} >= {"task-order.png", "affinity.png"}
    png = rotated[0].run_dir / "matrix.png"
    drawn = png.stat().st_mtime_ns
    (rotated[1].run_dir / "matrix.png").unlink()
    again = execute(p, store_path=tmp_path / "s.sqlite", out_dir=tmp_path / "o",
                    progress=False)  # a stopped study resumes: every run is reused
    assert all(x.reused for x in again.outcomes)
    assert png.stat().st_mtime_ns == drawn  # its files were there: not drawn again
    assert (rotated[1].run_dir / "matrix.png").is_file()  # a missing figure is redrawn


def test_a_measuring_chooser_orders_a_run_from_its_own_config(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from lifelong import TrainConfig, build_model, build_strategy
    from lifelong.curriculum import BUDGET as AFFINITY_BUDGET
    from lifelong.curriculum import choose, task_affinity

    sets = ["--set", "strategy.name=naive", "--set", "stream.name=rotated", "--set",
            "stream.num_tasks=3", "--set", "stream.train_per_task=300", "--set",
            "stream.validation=0.1", "--set", "stream.order=greedy-affinity"]
    assert main(["run", "single", "--quick", "--no-progress", "--json", *sets, "--store",
                 str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    stream = build_stream("rotated", source="digits", num_tasks=3, train_per_task=300,
                          validation=0.1, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.1)

    def fresh(seed: int):  # type: ignore[no-untyped-def]
        return build_strategy("naive", build_model("mlp", stream, seed=seed, hidden=[100, 100]))

    affinity = task_affinity(stream, fresh, cfg, budget=AFFINITY_BUDGET, seed=0)
    order = choose("greedy-affinity", stream, affinity=affinity).order
    assert run["order"] == [stream.tasks[i].key for i in order]


@pytest.mark.parametrize("order", ["easy-to-hard", "greedy-affinity"])
def test_a_measuring_chooser_without_a_validation_split_is_one_clear_error(
        tmp_path, capsys, order: str) -> None:  # type: ignore[no-untyped-def]
    # The orders are chosen on held-out training examples: on the test set, the runs would
    # be scored on what chose their order.
    assert main(["run", "single", "--quick", "--no-progress", "--set", "strategy.name=naive",
                 "--set", "stream.name=rotated", "--set", "stream.num_tasks=3", "--set",
                 f"stream.order={order}", "--store", str(tmp_path / "s.sqlite"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no validation split" in err and "--set stream.validation=0.1" in err
    assert "Traceback" not in err
