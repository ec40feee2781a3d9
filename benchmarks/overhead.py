"""Overhead of `lifelong` against a bare PyTorch loop on the same data, in the same process.

Owns the two protocols (P1, P2), the bare reference loop, the alternating timing and the
report (table or ``--json``). Does not own any training logic of the library: "ours" is exactly
``fit_stream(build_strategy(...), stream, TrainConfig(...))``.

Protocols (permuted Fashion-MNIST, domain-incremental, MLP 784-100-100-10, one epoch, SGD; a
strategy without domain-IL runs the same tasks in a scenario it supports, see `scenario_of`):
    P1: 5 tasks x 1000 training examples, batch 10, lr 0.1;
    P2: 5 tasks x 10000 training examples, batch 128, lr 0.01, momentum 0.9.
Every task is evaluated on its full 10k test set after every task.

What is compared (so the ratios are fair):
    wall  = the whole `fit_stream` call vs the whole bare run. Both evaluate the untrained model
            first (row 0) and then every task after every task: T+1 evaluation rows each.
    train = Σ RunResult.costs[t].train_seconds vs the bare per-task time from creating the optimizer
            to the last step. Ours includes before_task/after_task (no-ops for naive; for other
            strategies their consolidation is part of their cost, shown separately per task).
    eval  = Σ RunResult.costs[t].eval_seconds, which covers the T rows after each task (row 0 is in
            wall only), vs the bare loop's same T rows.
The bare loop starts from the same initial weights and shuffles with generators seeded the way
the library seeds them, so for `naive` both compute the same thing and the accuracies agree.

Every registered strategy is timed at its defaults (`OPTIONS` overrides a few, documented),
unless it declares itself not comparable (`Card.not_comparable`, e.g. joint): then it runs
only when named, with no target. A user's strategy is timed with ``--import my_method.py``.

Run: ``python benchmarks/overhead.py [--protocols P1,P2] [--strategies naive,ewc] [--repeats 3]
[--threads N] [--quick] [--json] [--import MODULE_OR_FILE]``. Needs fashion-mnist (set
LIFELONG_DATA).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lifelong import TrainConfig, build_model, build_strategy, build_stream, fit_stream
from lifelong.callbacks import Callback, EpochEnd
from lifelong.data.task import Stream, Task
from lifelong.errors import LifelongError
from lifelong.extensions import import_extensions
from lifelong.seeding import derive_seed
from lifelong.strategies import STRATEGIES

# Per-strategy overrides of the defaults for this benchmark; a strategy without an entry runs at
# its defaults (nothing to add for a new strategy). The memory settings below are kept so the
# numbers stay comparable with the earlier measurements in benchmarks/README.md.
OPTIONS: dict[str, dict[str, Any]] = {
    # Episodic memories: 256 per task as in GEM. GEM draws 32 memories per past task
    # per step (its paper default, all 256, costs k·256 examples of arithmetic per step).
    "er": {"memory_size": 256, "memory_batch": 10},
    "gem": {"memory_size": 256, "memory_batch": 32},
    "agem": {"memory_size": 256, "memory_batch": 256},
    # Quadratic penalties (l2, ewc, si, mas) run at their defaults, chosen by `lifelong run
    # strength-sweep`; EWC and MAS estimate the importance from all 1000 examples of a P1 task
    # (1000 of 10000 in P2).
}

# Upper bounds on the median ratios ours/bare; a strategy without an entry gets DEFAULT_TARGET
# (evaluation only: the extra work a method does while training is its cost, not overhead).
TARGETS: dict[str, dict[str, float]] = {
    "naive": {"wall": 1.15, "eval": 1.1},
    "er": {"wall": 1.5, "eval": 1.1},
    "gem": {"wall": 2.5, "eval": 1.1},
    "agem": {"wall": 2.5, "eval": 1.1},
    "lwf": {"wall": 1.5, "eval": 1.1},
    # iCaRL's epochs hold the task and every exemplar (at K = 2000: 2.4x the bare loop's
    # steps on P1, 1.2x on P2), so its wall time also measures its data: besides the issue's
    # wall target, one on its cost per step, which carries the teacher's outputs (once per
    # task) and the herding after each task (on P2, 10000 examples per task). Its eval
    # normalises the features and multiplies by the class means (nearest-mean classifier).
    "icarl": {"wall": 1.5, "step": 2.5, "eval": 1.25},
    # Models that grow (a column, an expert, wider layers per task): training and evaluation
    # grow with them, so no ratio target; `train_s_per_task` and `parameters` in the JSON
    # show the cost of each task as the model grows.
    "pnn": {}, "expert-gate": {}, "net2net": {},
    "l2": {"wall": 1.5, "eval": 1.1}, "ewc": {"wall": 1.5, "eval": 1.1},
    "si": {"wall": 1.5, "eval": 1.1}, "mas": {"wall": 1.5, "eval": 1.1},
}
DEFAULT_TARGET: dict[str, float] = {"eval": 1.1}

SEED = 0
EVAL_BATCH = 2048  # the same for ours (TrainConfig.eval_batch_size) and the bare loop


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    num_tasks: int
    train_per_task: int
    test_per_task: int | None  # None = the full 10k test set
    batch_size: int
    lr: float
    momentum: float
    epochs: int = 1


PROTOCOLS = {
    "P1": Protocol("P1", 5, 1000, None, batch_size=10, lr=0.1, momentum=0.0),
    "P2": Protocol("P2", 5, 10000, None, batch_size=128, lr=0.01, momentum=0.9),
}


def quick(p: Protocol) -> Protocol:
    """A small version of `p` for smoke tests: 2 tasks x 500 examples, 1000 test examples."""
    return replace(p, num_tasks=2, train_per_task=500, test_per_task=1000)


# ------------------------------------------------------------------------------ bare loop
def bare_model(init: nn.Module) -> nn.Sequential:
    """The plain network, with the initial weights of `init` (the library's MLP)."""
    width = list(init.parameters())[-1].shape[0]  # 10 outputs in domain-IL, 50 in class-IL
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100),
                        nn.ReLU(), nn.Linear(100, width))
    with torch.no_grad():
        theirs = list(init.parameters())
        assert [p.shape for p in net.parameters()] == [p.shape for p in theirs]
        for p, q in zip(net.parameters(), theirs, strict=True):
            p.copy_(q)
    return net


def bare_eval(net: nn.Module, tasks: tuple[Task, ...]) -> list[float]:
    net.eval()
    out = []
    with torch.inference_mode():
        for task in tasks:
            x, y = task.test.x, task.test.y
            hits = 0
            for s in range(0, len(y), EVAL_BATCH):
                hits += int((net(x[s:s + EVAL_BATCH]).argmax(1) == y[s:s + EVAL_BATCH]).sum())
            out.append(hits / len(y))
    net.train()
    return out


def bare_run(net: nn.Module, stream: Stream, p: Protocol) -> dict[str, Any]:
    # Shuffle seeds as the library derives them; computed before the clock starts (the bare
    # loop still creates one generator per epoch, as ours does).
    seeds = [[derive_seed(SEED, "batches", t.key, e) for e in range(p.epochs)]
             for t in stream.tasks]
    train_s = eval_s = 0.0
    t_wall = time.perf_counter()
    bare_eval(net, stream.tasks)  # row 0, as fit_stream does (counted in wall only)
    for task, task_seeds in zip(stream.tasks, seeds, strict=True):
        t0 = time.perf_counter()
        opt = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum)
        x, y = task.train.x, task.train.y
        n = len(y)
        for epoch in range(p.epochs):
            g = torch.Generator()
            g.manual_seed(task_seeds[epoch])
            order = torch.randperm(n, generator=g)
            for i in range(0, n, p.batch_size):
                idx = order[i:i + p.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(net(x[idx]), y[idx])
                loss.backward()
                opt.step()
        t1 = time.perf_counter()
        row = bare_eval(net, stream.tasks)
        t2 = time.perf_counter()
        train_s += t1 - t0
        eval_s += t2 - t1
    wall = time.perf_counter() - t_wall
    steps = sum(p.epochs * -(-len(t.train.y) // p.batch_size) for t in stream.tasks)
    return {"wall": wall, "train": train_s, "eval": eval_s, "acc": statistics.fmean(row),
            "after_task": 0.0, "steps": steps}


# ----------------------------------------------------------------------------------- ours
def config(p: Protocol) -> TrainConfig:
    return TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=p.momentum,
                       optimizer="sgd", eval_batch_size=EVAL_BATCH, device="cpu")


class StepCount(Callback):
    """Counts optimisation steps from the epoch events (one call per epoch, not per step)."""

    def __init__(self) -> None:
        self.total = 0

    def on_epoch_end(self, event: EpochEnd) -> None:
        self.total += event.steps


def ours_run(name: str, stream: Stream, p: Protocol) -> dict[str, Any]:
    model = build_model("mlp", stream, hidden=[100, 100], seed=SEED)
    strategy = build_strategy(name, model, **OPTIONS.get(name, {}))
    cfg = config(p)
    steps = StepCount()
    gc.collect()
    t = time.perf_counter()
    result = fit_stream(strategy, stream, cfg, seed=SEED, callbacks=[steps])
    wall = time.perf_counter() - t
    return {"wall": wall, "train": sum(c.train_seconds for c in result.costs),
            "eval": sum(c.eval_seconds for c in result.costs),
            "steps": steps.total,
            "acc": statistics.fmean(result.matrix[-1]),
            "after_task": statistics.fmean(c.after_task_seconds for c in result.costs),
            # a growing model's cost as it grows
            "per_task": [c.train_seconds for c in result.costs],
            "parameters": [c.parameters for c in result.costs],
            # a generative method's time on its generator (DGR reports it per task)
            "generator": sum(d.get("generator_seconds", 0.0) for d in result.diagnostics)}


# ------------------------------------------------------------------------------ measuring
def measure(name: str, stream: Stream, p: Protocol, repeats: int) -> dict[str, Any]:
    """Alternate bare, ours, bare, ours... and report median ratios and seconds."""
    bare: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    for i in range(repeats):
        net = bare_model(build_model("mlp", stream, hidden=[100, 100], seed=SEED))
        gc.collect()
        if i % 2:  # alternate which goes first, so neither always gets the warmer machine
            ours.append(ours_run(name, stream, p))
            bare.append(bare_run(net, stream, p))
        else:
            bare.append(bare_run(net, stream, p))
            ours.append(ours_run(name, stream, p))

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    def ratio(key: str) -> float:
        return float(statistics.median(o[key] / b[key] for o, b in zip(ours, bare, strict=True)))

    row: dict[str, Any] = {
        "protocol": p.name, "strategy": name,
        "ratio_wall": ratio("wall"), "ratio_train": ratio("train"), "ratio_eval": ratio("eval"),
        # Steps taken: more than the bare loop's where a method's epochs also hold stored
        # examples (iCaRL's exemplars); then train / steps is its cost per step.
        "ratio_steps": ours[0]["steps"] / bare[0]["steps"],
        "ratio_step": ratio("train") / (ours[0]["steps"] / bare[0]["steps"]),
        # The wall ratio a bare loop taking as many steps would have: the bare run with its
        # training time scaled by the steps ratio. What a method with extra steps (iCaRL's
        # exemplars) cannot go below, before any arithmetic of its own.
        "ratio_wall_same_steps": float(statistics.median(
            (b["wall"] + (o["steps"] / b["steps"] - 1) * b["train"]) / b["wall"]
            for o, b in zip(ours, bare, strict=True))),
        "acc": ours[0]["acc"], "acc_bare": bare[0]["acc"],
        "ours_wall_s": med(ours, "wall"), "bare_wall_s": med(bare, "wall"),
        "ours_train_s": med(ours, "train"), "bare_train_s": med(bare, "train"),
        "ours_eval_s": med(ours, "eval"), "bare_eval_s": med(bare, "eval"),
        "after_task_s": med(ours, "after_task"), "repeats": repeats,
        "generator_share": float(statistics.median(o["generator"] / o["train"] for o in ours)),
        # per task: ours' training seconds (median over repeats) and the model's size after it
        "train_s_per_task": [float(statistics.median(o["per_task"][k] for o in ours))
                             for k in range(len(ours[0]["per_task"]))],
        "parameters": ours[0]["parameters"],
    }
    if reason := STRATEGIES.get(name).card.not_comparable:
        row["target"], row["ok"], row["note"] = {}, None, reason
    else:
        target = TARGETS.get(name, DEFAULT_TARGET)
        row["target"] = target
        row["ok"] = all(row[f"ratio_{k}"] <= v for k, v in target.items())
    return row


def scenario_of(name: str) -> str:
    """The protocol's scenario, domain-IL, for a strategy that supports it; else the first it
    supports (iCaRL: class-IL, the same images with each task's 10 labels made its own, so a
    50-way head; the bare loop then trains the same 50-way network)."""
    supports = STRATEGIES.get(name).card.scenarios
    return "domain" if "domain" in supports else sorted(supports)[0]


def warm_up(stream: Stream, p: Protocol) -> None:
    """One untimed single-task run of each, so lazy initialisation is charged to neither."""
    one = replace(stream, tasks=stream.tasks[:1])
    short = replace(p, num_tasks=1)
    bare_run(bare_model(build_model("mlp", one, hidden=[100, 100], seed=SEED)), one, short)
    ours_run("naive", one, short)


def import_seconds(runs: int = 5, *, with_torch: bool = True) -> dict[str, float]:
    """Median seconds to import, each in a fresh interpreter, minus a bare interpreter start.

    `import lifelong` is lazy (it imports no torch); the first use of the API pays for torch.
    """

    def timed(code: str) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    base = timed("pass")
    out = {"import lifelong": timed("import lifelong") - base}
    if with_torch:
        out["import torch"] = timed("import torch") - base
        out["from lifelong import fit_stream"] = timed("from lifelong import fit_stream") - base
    return out


# ------------------------------------------------------------------------------- report
def fmt_target(row: dict[str, Any]) -> str:
    if not row["target"]:
        return "-"
    return " ".join(f"{k}<={v:g}" for k, v in row["target"].items())


def table(rows: list[dict[str, Any]]) -> str:
    head = ("proto", "strategy", "ours s", "bare s", "wall", "train", "eval", "steps", "acc",
            "acc bare", "after s/task", "generator", "target", "")
    lines = [head]
    errors = []
    for r in rows:
        if "error" in r:
            errors.append(f"{r['protocol']} {r['strategy']}: {r['error']}")
            lines.append((r["protocol"], r["strategy"], *["-"] * 11, "ERROR"))
            continue
        ok = "-" if r["ok"] is None else ("ok" if r["ok"] else "MISS")
        scenario = r.get("scenario", "domain")
        name = r["strategy"] + ("" if scenario == "domain" else f" ({scenario}-IL)")
        lines.append((r["protocol"], name, f"{r['ours_wall_s']:.3f}",
                      f"{r['bare_wall_s']:.3f}", f"{r['ratio_wall']:.3f}",
                      f"{r['ratio_train']:.3f}", f"{r['ratio_eval']:.3f}",
                      f"{r['ratio_steps']:.2f}", f"{r['acc']:.4f}",
                      f"{r['acc_bare']:.4f}", f"{r['after_task_s']:.4f}",
                      f"{r['generator_share']:.0%}" if r.get("generator_share") else "-",
                      fmt_target(r), ok))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                      for line in lines] + errors)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocols", default="P1,P2", help="comma-separated: P1,P2")
    ap.add_argument("--strategies", default=None,
                    help="comma-separated (default: every registered strategy that is "
                    "comparable with the bare loop)")
    ap.add_argument("--repeats", type=int, default=3, help="bare/ours pairs per row (median)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--quick", action="store_true",
                    help="2 tasks x 500 examples, 1000 test, 1 repeat (smoke test)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--no-import-time", action="store_true", help="skip the import timing")
    ap.add_argument("--import", dest="imports", action="append", default=[],
                    metavar="MODULE_OR_FILE",
                    help="import your module (dotted name or .py file) first, so the strategy "
                    "it registers can be timed (repeatable)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        import_extensions(args.imports)
        STRATEGIES.names()  # the first lookup loads the installed plugins: a broken one fails here
    except LifelongError as e:
        print(f"overhead: error: {e}", file=sys.stderr)
        return 2
    protocols = [s.strip() for s in args.protocols.split(",") if s.strip()]
    bad = [p for p in protocols if p not in PROTOCOLS]
    if args.strategies:
        names = [s.strip() for s in args.strategies.split(",") if s.strip()]
        bad += [f"strategy {s!r}" for s in names if s not in STRATEGIES]
    else:
        # naive first: it is the reference every other row is read against.
        names = sorted((s for s in STRATEGIES.names()
                        if not STRATEGIES.get(s).card.not_comparable), key=lambda s: s != "naive")
    if bad:
        print(f"unknown: {', '.join(bad)}; protocols: {', '.join(PROTOCOLS)}; strategies: "
              f"{', '.join(STRATEGIES.names())}", file=sys.stderr)
        return 2
    repeats = 1 if args.quick else args.repeats
    load_before = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if torch.get_num_threads() > 1 and load_before + torch.get_num_threads() > cpus + 0.5:
        # Several intra-op threads on a busy machine make every op wait for a preempted
        # thread: runs slow down up to 10x at random and the ratios mean nothing.
        print(f"warning: load average {load_before:.1f} on {cpus} CPUs with "
              f"{torch.get_num_threads()} torch threads; timings will be noisy — try "
              "--threads 1", file=sys.stderr)

    rows = []
    for pname in protocols:
        p = quick(PROTOCOLS[pname]) if args.quick else PROTOCOLS[pname]
        # Data preparation is done once, outside every clock; both loops use these tensors.
        streams: dict[str, Stream] = {}
        for name in names:
            scenario = scenario_of(name)
            if scenario not in streams:
                streams[scenario] = build_stream(
                    "permuted", source="fashion-mnist", num_tasks=p.num_tasks,
                    train_per_task=p.train_per_task, test_per_task=p.test_per_task,
                    scenario=scenario, seed=SEED)
                warm_up(streams[scenario], p)
            if not args.json:
                print(f"running {pname} {name} ({repeats} x bare+ours)...", file=sys.stderr)
            try:
                rows.append({**measure(name, streams[scenario], p, repeats),
                             "scenario": scenario})
            except LifelongError as e:  # e.g. divergence with the options in OPTIONS
                rows.append({"protocol": pname, "strategy": name, "error": str(e), "ok": False})

    imports = {} if args.no_import_time else (
        import_seconds(1, with_torch=False) if args.quick else import_seconds(5))
    if args.json:
        print(json.dumps({"rows": rows, "import_seconds": imports,
                          "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "cpus": cpus, "load_before": load_before,
                          "load_after": os.getloadavg()[0], "quick": args.quick}, indent=2))
        return 1 if any("error" in r for r in rows) else 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads on {cpus} "
          f"CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; median of "
          f"{repeats} alternating bare/ours runs; ratios are ours/bare")
    print(table(rows))
    for k, v in imports.items():
        print(f"{k}: {v * 1000:.0f} ms (fresh interpreter, minus `python -c pass`)")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
