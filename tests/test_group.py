"""Vectorised groups: G runs trained at once as stacked weights must each end with the R and
the final `state_dict` of their own sequential run, bit for bit on the CPU (the README says so:
R compared with ==, every tensor with `torch.equal`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.callbacks import Callback, TaskEnd
from lifelong.cli import main
from lifelong.data.task import Stream
from lifelong.errors import ConfigError
from lifelong.group import Member, MemberDiverged, fit_group, groupable, stackable
from lifelong.run.groups import group_jobs, run_group
from lifelong.store import Store
from lifelong.strategies import STRATEGIES, build_strategy
from lifelong.train import LifelongWarning

SUPPORTED = ["naive", "joint", "l2", "ewc", "si", "mas", "er", "agem", "gem", "lwf"]
CFG = TrainConfig(epochs=1, batch_size=16, lr=0.1, device="cpu")


def stream_for(seed: int, scenario: str = "domain") -> Stream:
    if scenario == "task":
        return build_stream("split", source="digits", num_tasks=3, scenario="task", seed=seed)
    return build_stream("permuted", source="digits", num_tasks=3, seed=seed)


def member(name: str, seed: int, scenario: str = "domain", **options: Any) -> Member:
    s = stream_for(seed, scenario)
    return Member(build_strategy(name, build_model("mlp", s, hidden=[32], seed=seed),
                                 **options), s, seed)


def alone(name: str, seed: int, cfg: TrainConfig = CFG, scenario: str = "domain",
          **options: Any) -> Any:
    m = member(name, seed, scenario, **options)
    return fit_stream(m.strategy, m.stream, cfg, seed=seed)


def assert_same(group: Any, sequential: Any) -> None:
    """Each member's R equals its own run's exactly (the same floats, not within a tolerance)."""
    for a, b in zip(group, sequential, strict=True):
        assert a.matrix == b.matrix, (a.strategy, a.seed, a.matrix, b.matrix)


def assert_equal_state(a: Any, b: Any, where: str = "state_dict") -> None:
    """Two `state_dict()`s hold the same keys and values, every tensor `torch.equal` (same
    dtype, shape and bits), every plain value ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, list(a), list(b))
        for k in a:
            assert_equal_state(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def assert_same_runs(name: str, seeds: list[int], cfg: TrainConfig = CFG,
                     scenario: str = "domain", **options: Any) -> None:
    """A group of `seeds` and each seed's own run end with equal R and equal state."""
    members = [member(name, s, scenario, **options) for s in seeds]
    group = fit_group(members, cfg)
    for m, g in zip(members, group, strict=True):
        own = member(name, m.seed, scenario, **options)
        ran = fit_stream(own.strategy, own.stream, cfg, seed=m.seed)
        assert g.matrix == ran.matrix, (name, m.seed, g.matrix, ran.matrix)
        assert_equal_state(m.strategy.state_dict(), own.strategy.state_dict(),
                           f"{name} seed {m.seed}")


@pytest.fixture(autouse=True)
def _quiet_and_one_thread() -> Any:
    # Bit for bit holds with one intra-op thread (the CLI's default, --threads 1, and every
    # pool worker's): with two, the batched and the plain matrix products of PyTorch's CPU
    # kernels split their sums differently and the weights part in the last bits (measured:
    # up to 2e-7 after one epoch of three tasks, naive), though R stayed equal.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LifelongWarning)
        yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", SUPPORTED)
def test_each_member_of_a_seed_group_ends_as_its_own_run(name: str) -> None:
    seeds = [0, 1, 2]
    group = fit_group([member(name, s) for s in seeds], CFG)
    assert_same(group, [alone(name, s) for s in seeds])
    assert all(d["group_size"] == 3.0 for r in group for d in r.diagnostics)


@pytest.mark.parametrize("name", SUPPORTED)
@pytest.mark.parametrize("scenario", ["domain", "task"])
def test_each_member_ends_with_its_own_run_s_weights_and_state(name: str,
                                                               scenario: str) -> None:
    # Every tensor of the final state_dict (weights, importances, anchors, memories,
    # generator states), not only R: equal R could hide weights that drifted by rounding.
    assert_same_runs(name, [0, 1], scenario=scenario)


def test_a_task_il_lwf_group_is_exact() -> None:
    # LwF in task-IL distils the old heads' outputs on the new task's inputs: the teacher's
    # logits come from each member's own frozen copy.
    assert_same_runs("lwf", [0, 1, 2], TrainConfig(epochs=2, batch_size=16, lr=0.05,
                                                   device="cpu"), "task")


@pytest.mark.parametrize("name,option,values", [("ewc", "strength", [1.0, 100.0]),
                                                ("er", "memory_batch", [4, 16]),
                                                ("l2", "strength", [0.1, 10.0])])
def test_members_may_differ_in_a_numeric_option(name: str, option: str,
                                                values: list[float]) -> None:
    group = fit_group([member(name, 0, **{option: v}) for v in values], CFG)
    assert_same(group, [alone(name, 0, **{option: v}) for v in values])
    assert group[0].matrix != group[1].matrix  # the option made a difference


@pytest.mark.parametrize("name", ["naive", "ewc", "agem"])
def test_task_heads_adam_momentum_and_clipping_stay_exact(name: str) -> None:
    for cfg in (TrainConfig(epochs=2, batch_size=16, lr=0.01, optimizer="adam", grad_clip=1.0,
                            device="cpu"),
                TrainConfig(epochs=3, batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-4,
                            lr_decay_every=1, device="cpu")):
        # The auto penalty step is proximal only with plain SGD; under Adam, gradient steps.
        opts = {"step": "gradient"} if name == "ewc" and cfg.optimizer == "adam" else {}
        group = fit_group([member(name, s, "task", **opts) for s in (0, 1)], cfg)
        assert_same(group, [alone(name, s, cfg, "task", **opts) for s in (0, 1)])


def test_members_keep_their_own_callbacks_and_checkpoints() -> None:
    class Rows(Callback):
        def __init__(self) -> None:
            self.rows: list[tuple[float, ...]] = []

        def on_task_end(self, event: TaskEnd) -> None:
            self.rows.append(event.accuracies)

    members = [member("ewc", s) for s in (0, 1)]
    watch = [Rows(), Rows()]
    for m, w in zip(members, watch, strict=True):
        m.callbacks = [w]
    saved: list[tuple[int, int]] = []
    results = fit_group(members, CFG, checkpoint=lambda g, p: saved.append((g, len(p.ends))))
    for w, r in zip(watch, results, strict=True):
        assert w.rows == list(r.matrix[1:])
    assert saved == [(g, t) for t in (1, 2, 3) for g in (0, 1)]


def test_what_cannot_train_in_a_group_says_why() -> None:
    assert groupable(STRATEGIES.get("naive")) == ""
    assert "prediction" in groupable(STRATEGIES.get("icarl"))
    assert "training step" in groupable(STRATEGIES.get("dgr"))
    s = stream_for(0)
    assert "dropout" in stackable(build_model("mlp", s, hidden=[8], dropout=0.5, seed=0))
    assert "not an MLP" in stackable(build_model("cnn", s, seed=0))
    with pytest.raises(ConfigError, match="cannot train in a group"):
        fit_group([member("naive", 0), Member(build_strategy(
            "naive", build_model("mlp", s, hidden=[8], dropout=0.5, seed=1)), s, 1)], CFG)


def test_list_names_the_strategies_that_train_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    strategies = json.loads(capsys.readouterr().out)["strategies"]
    alone_ = {n for n, info in strategies.items() if info["trains_alone"]}
    assert {"icarl", "dgr", "pnn", "expert-gate", "net2net"} <= alone_
    assert not alone_ & set(SUPPORTED)


# ------------------------------------------------------------------------------ end to end
def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(list(args)) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_run_with_seeds_vectorises_by_default_and_equals_no_vectorize(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["run", "single", "--quick", "--no-progress", "--json", "--set",
            "strategy.name=si", "--seed", "0-2", "--out", str(tmp_path / "o")]
    grouped = run_json(capsys, *base, "--store", str(tmp_path / "g.sqlite"))
    single = run_json(capsys, *base, "--store", str(tmp_path / "s.sqlite"), "--no-vectorize")
    assert [r["group_size"] for r in grouped["runs"]] == [3, 3, 3]
    assert [r["group_size"] for r in single["runs"]] == [1, 1, 1]
    assert [r["matrix"] for r in grouped["runs"]] == [r["matrix"] for r in single["runs"]]
    assert [r["run_id"] for r in grouped["runs"]] == [r["run_id"] for r in single["runs"]]
    with Store(tmp_path / "g.sqlite") as store:  # G ordinary runs, marked as a group of 3
        records = [store.get_run(r["run_id"]) for r in grouped["runs"]]
    assert all(r.status == "completed" and r.versions["group_size"] == "3" for r in records)


def test_a_diverging_member_leaves_the_others_to_finish_alone(tmp_path: Path) -> None:
    from lifelong.run.execution import RunJob
    from lifelong.run.planning import plan
    from lifelong.run.provenance import run_meta

    p = plan("single", quick=True, sets=["strategy.name=ewc", "strategy.step=gradient",
                                         "strategy.normalize=false", "train.lr=0.5"],
             seeds=[0])
    spec = p.runs[0]
    import dataclasses

    specs = [dataclasses.replace(spec, config={**spec.config, "strategy": {
        **spec.config["strategy"], "strength": s}}) for s in (1.0, 1e38)]
    jobs = [RunJob(s, "single", run_meta(1)) for s in specs]
    (group,) = group_jobs(jobs)
    assert len(group) == 2  # strengths differ: one group
    with Store(tmp_path / "s.sqlite") as store:
        results = run_group(group, store=store)
        statuses = [store.get_run(s.run_id).status for s in specs]
    assert [r.status for r in results] == ["completed", "diverged"]
    # The diverged run is failed with its error; the other awaits the driver's finish_run.
    assert statuses == ["running", "failed"]
    first = results[0].result
    assert first is not None and "group_size" not in first.diagnostics[0]  # trained alone


def test_a_group_too_large_for_memory_is_split(tmp_path: Path) -> None:
    from lifelong.run.execution import RunJob, run_job, stream_for
    from lifelong.run.groups import member_bytes
    from lifelong.run.planning import plan
    from lifelong.run.provenance import run_meta
    from lifelong.strategies import strategy_for

    p = plan("single", quick=True, sets=["strategy.name=naive"], seeds=[0, 1, 2, 3, 4])
    jobs = [RunJob(s, "single", run_meta(1)) for s in p.runs]
    (group,) = group_jobs(jobs)
    stream = stream_for(p.runs[0])
    one = member_bytes(stream, strategy_for(p.runs[0].config, "naive", stream, 0))
    results = run_group(group, budget=int(2.5 * one))  # room for 2 members at a time
    sizes = [r.result.diagnostics[0].get("group_size", 1.0) for r in results if r.result]
    assert sizes == [2.0, 2.0, 2.0, 2.0, 1.0]  # two groups of two; the last run trains alone
    seq = [run_job(j) for j in jobs]
    assert [r.result.matrix for r in results if r.result] == [
        r.result.matrix for r in seq if r.result]


def test_a_sweep_over_strengths_groups_them_with_the_seeds() -> None:
    from lifelong.run.execution import RunJob
    from lifelong.run.provenance import run_meta
    from lifelong.run.sweep import parse_grid, plan_sweep

    s = plan_sweep("single", parse_grid(["strategy.name=naive,ewc",
                                         "strategy.strength=1,100"]), seeds=[0, 1], quick=True)
    groups = group_jobs([RunJob(r, "single", run_meta(1)) for r in s.runs])
    assert sorted(len(g) for g in groups) == [2, 4]  # naive × 2 seeds; ewc × 2 strengths × 2
    assert all(len(g) == 1 for g in group_jobs([RunJob(r, "single", run_meta(1))
                                                for r in s.runs], vectorize=False))


def test_learning_curves_are_each_members_own() -> None:
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.1, eval_every=20, device="cpu")
    group = fit_group([member("ewc", s) for s in (0, 1)], cfg)
    seq = [alone("ewc", s, cfg) for s in (0, 1)]
    assert_same(group, seq)
    assert [g.curves for g in group] == [s.curves for s in seq] and group[0].curves


def test_a_group_checkpoints_each_member_and_resumes_as_a_group_or_alone(
        tmp_path: Path) -> None:
    import dataclasses

    from lifelong.run.checkpoint import checkpoint_path, load_checkpoint
    from lifelong.run.execution import RunJob, run_job
    from lifelong.run.planning import plan
    from lifelong.run.provenance import run_meta

    p = plan("single", quick=True, sets=["strategy.name=ewc"], seeds=[0, 1])
    jobs = [RunJob(s, "single", run_meta(1), str(tmp_path)) for s in p.runs]
    results = run_group(tuple(jobs))
    tasks = []
    for job, res in zip(jobs, results, strict=True):
        ckpt = load_checkpoint(checkpoint_path(tmp_path, job.run_id), job.run_id)
        assert res.result is not None and ckpt is not None
        assert ckpt.tasks_done == len(res.result.matrix) - 1  # the last task's checkpoint
        assert ckpt.progress.ends[-1].accuracies == res.result.matrix[-1]
        tasks.append(ckpt.tasks_done)
    # With --resume, runs whose checkpoints stand at one point continue as a group, and a run
    # alone continues from its own.
    resuming = [dataclasses.replace(j, resume=True) for j in jobs]
    assert [len(g) for g in group_jobs(resuming)] == [2]
    regrouped = run_group(tuple(resuming))
    assert [r.resumed_tasks for r in regrouped] == tasks
    assert [r.result.matrix for r in regrouped if r.result] == [
        r.result.matrix for r in results if r.result]
    again = run_job(resuming[0])
    assert again.resumed_tasks == tasks[0] and again.result is not None
    assert results[0].result is not None and again.result.matrix == results[0].result.matrix


def test_groups_are_split_so_every_worker_gets_one() -> None:
    from lifelong.run.groups import balance

    a, b, c, d, e = ("a",), ("b",), ("c",), ("d",), ("e",)
    whole = (a + b + c + d + e,)
    assert balance(whole, 1) == list(whole)  # type: ignore[arg-type]
    assert balance(whole, 2) == [a + b + c, d + e]  # type: ignore[arg-type]
    assert sorted(len(g) for g in balance(whole, 4)) == [1, 1, 1, 2]  # type: ignore[arg-type]
    assert len(balance(((*a,),), 8)) == 1  # type: ignore[arg-type]


def test_a_group_resumes_from_its_members_checkpoints() -> None:
    """The one loop gives a group resume: members restored after task 1 and continued as a
    group end with the uninterrupted group's R and state, bit for bit."""
    import copy

    saved: dict[int, Any] = {}

    def keep(g: int, progress: Any) -> None:
        if len(progress.ends) == 1:
            saved[g] = (progress, copy.deepcopy(members[g].strategy.state_dict()))

    members = [member("ewc", s) for s in (0, 1)]
    whole = fit_group(members, CFG, checkpoint=keep)
    again = [member("ewc", s) for s in (0, 1)]
    for g, m in enumerate(again):
        m.strategy.load_state_dict(saved[g][1])
        m.resume = saved[g][0]
    resumed = fit_group(again, CFG)
    assert_same(resumed, whole)
    for a, b in zip(again, members, strict=True):
        assert_equal_state(a.strategy.state_dict(), b.strategy.state_dict())
    with pytest.raises(ConfigError, match="different points"):
        late = [member("ewc", s) for s in (0, 1)]
        late[0].strategy.load_state_dict(saved[0][1])
        late[0].resume = saved[0][0]
        fit_group(late, CFG)


def test_a_diverging_member_is_named_with_the_strategy_s_hint() -> None:
    class Hinted(STRATEGIES.get("naive")):  # type: ignore[misc]
        def divergence_hint(self) -> str:
            return "try the hint"

    members = []
    for s in (0, 1):
        st = stream_for(s)
        members.append(Member(Hinted(build_model("mlp", st, hidden=[8], seed=s)), st, s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LifelongWarning)
        with pytest.raises(MemberDiverged, match=r"\(seed 0\).*step 2 .*try the hint") as e:
            fit_group(members, TrainConfig(lr=1e30, batch_size=16, device="cpu"))
    assert e.value.index == 0
