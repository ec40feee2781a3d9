"""The `gem-table` experiment: one run per stream × seed × strategy, overrides reaching every
stream, and the report (mean ± std over seeds, the figure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong.errors import ConfigError
from lifelong.run.runner import execute, plan
from lifelong.strategies import STRATEGIES

TINY = ["stream.num_tasks=2", "stream.train_per_task=60", "stream.test_per_task=30",
        "strategies.gem.memory_size=10", "strategies.er.memory_size=10",
        "strategies.agem.memory_size=10"]


def test_plan_runs_every_strategy_on_both_streams() -> None:
    p = plan("gem-table", quick=True, seeds=[0, 1])
    methods = [m for m in ("naive", "ewc", "er", "gem", "agem", "joint") if m in STRATEGIES]
    assert [r.strategy for r in p.runs[:len(methods)]] == methods
    assert len(p.runs) == 2 * 2 * len(methods)
    assert {r.config["stream"]["name"] for r in p.runs} == {"permuted", "rotated"}
    assert len({r.run_id for r in p.runs}) == len(p.runs)


def test_stream_overrides_reach_every_stream_and_streams_can_be_chosen() -> None:
    p = plan("gem-table", sets=["stream.source=fashion-mnist", "stream.num_tasks=3"])
    assert {(r.config["stream"]["source"], r.config["stream"]["num_tasks"])
            for r in p.runs} == {("fashion-mnist", 3)}
    p = plan("gem-table", quick=True, sets=["options.streams=[rotated]"])
    assert {r.config["stream"]["name"] for r in p.runs} == {"rotated"}
    with pytest.raises(ConfigError, match="did you mean 'rotated'"):
        plan("gem-table", sets=["options.streams=[permuted, rotatd]"])


def test_default_protocol_is_gems() -> None:
    cfg = plan("gem-table").runs[0].config
    assert cfg["stream"]["num_tasks"] == 20 and cfg["stream"]["train_per_task"] == 1000
    # GEM drew each task's examples from the 60k training images and tested on the 10k.
    assert cfg["stream"]["source"] == "mnist" and cfg["stream"]["test_per_task"] is None
    assert cfg["model"]["hidden"] == [100, 100]
    assert cfg["train"]["batch_size"] == 10 and cfg["train"]["epochs"] == 1
    assert cfg["train"]["optimizer"] == "sgd" and cfg["train"]["lr"] == 0.1
    assert cfg["train"]["momentum"] == 0.0 and cfg["stream"]["scenario"] == "domain"
    runs = {r.strategy: r.config["strategy"] for r in plan("gem-table").runs}
    assert runs["gem"]["memory_size"] == 256 and runs["gem"]["memory_strength"] == 0.5
    assert runs["gem"]["memory_batch"] is None  # all memories of each past task, as GEM
    assert runs["agem"]["memory_size"] == runs["er"]["memory_size"] == 256


def test_report_has_mean_and_std_over_seeds_and_a_figure(tmp_path: Path) -> None:
    p = plan("gem-table", quick=True, seeds=[0, 1], strategies=["naive", "gem"], sets=TINY)
    res = execute(p, store_path=tmp_path / "s.sqlite", out_dir=tmp_path, progress=False)
    assert len(res.outcomes) == 2 * 2 * 2
    assert "ACC ± std" in res.table
    assert sum(line.startswith(("permuted", "rotated")) for line in res.table.splitlines()) == 4
    assert any(f.name == "gem_table.png" and f.stat().st_size > 0 for f in res.figures)
    published = {r.ours: ours for r, ours in res.references}
    # Every cell is the mean (and sample std) over seeds of the runs' own metrics.
    from statistics import fmean, stdev

    from lifelong.metrics import summary

    for o_stream in ("permuted", "rotated"):
        for method in ("naive", "gem"):
            runs = [o for o in res.outcomes if o.strategy == method
                    and o.config["stream"]["name"] == o_stream]
            line = next(ln for ln in res.table.splitlines()
                        if ln.split()[:2] == [o_stream, method])
            values = [summary(o.result.matrix)["acc"] for o in runs]
            assert f"{fmean(values):+8.3f} ± {stdev(values):.3f}" in line
    gem_perm = [summary(o.result.matrix)["acc"] for o in res.outcomes
                if o.strategy == "gem" and o.config["stream"]["name"] == "permuted"]
    assert published["gem/permuted/acc"] == pytest.approx(fmean(gem_perm))
