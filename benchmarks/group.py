"""Many seeds at once: G members trained as one vectorised group (`lifelong.group.fit_group`)
against G sequential runs of ours and G bare PyTorch loops, on the protocols of `overhead.py`.

For each strategy: the bare loop of `overhead.py` run G times (one per seed), `fit_stream` run
G times, and `fit_group` with G members, in that order, repeated `--repeats` times (medians).
Members share the protocol's stream (their seeds change the initial weights and the data
order); the targets of the issue that asked for it:
    train_group_vs_bare1 = the group's training seconds / one bare run's  (P1 target: ≤ 2)
    wall_speedup = G bare runs' wall / the group's wall                   (target: ≥ 2)
Training seconds include `after_task` (consolidation), as in `overhead.py`; evaluation (every
task's full test set after every task) is each member's own, so it grows with G: `eval_share`
says how much of the group's wall it is.

Run: ``python benchmarks/group.py [--protocols P1,P2] [--strategies naive,ewc] [--members 5]
[--repeats 3] [--json]``
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifelong import build_model, build_strategy, build_stream, fit_stream  # noqa: E402
from lifelong.data.task import Stream  # noqa: E402
from lifelong.group import Member, fit_group, groupable  # noqa: E402
from lifelong.strategies import STRATEGIES  # noqa: E402
from overhead import (  # noqa: E402
    OPTIONS,
    PROTOCOLS,
    Protocol,
    bare_model,
    bare_run,
    config,
    scenario_of,
    warm_up,
)

DEFAULT = "naive,l2,ewc,si,mas,er,agem,gem,joint"


def strategy(name: str, stream: Stream, seed: int) -> Any:
    return build_strategy(name, build_model("mlp", stream, hidden=[100, 100], seed=seed),
                          **OPTIONS.get(name, {}))


def measure(name: str, stream: Stream, p: Protocol, members: int) -> dict[str, float]:
    seeds = list(range(members))
    gc.collect()
    bare = [bare_run(bare_model(build_model("mlp", stream, hidden=[100, 100], seed=s)),
                     stream, p) for s in seeds]
    gc.collect()
    t = time.perf_counter()
    seq = [fit_stream(strategy(name, stream, s), stream, config(p), seed=s) for s in seeds]
    seq_wall = time.perf_counter() - t
    gc.collect()
    group = [Member(strategy(name, stream, s), stream, s) for s in seeds]
    t = time.perf_counter()
    results = fit_group(group, config(p))
    group_wall = time.perf_counter() - t
    assert [r.matrix for r in results] == [r.matrix for r in seq], "a member's R differs"
    group_train = sum(c.train_seconds for r in results for c in r.costs)
    group_eval = sum(c.eval_seconds for r in results for c in r.costs)
    return {"bare_train_1": statistics.median(b["train"] for b in bare),
            "bare_wall_G": sum(b["wall"] for b in bare), "seq_wall_G": seq_wall,
            "seq_train_G": sum(c.train_seconds for r in seq for c in r.costs),
            "group_wall": group_wall, "group_train": group_train, "group_eval": group_eval}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", default="P1")
    ap.add_argument("--strategies", default=DEFAULT)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    rows = []
    for pname in args.protocols.split(","):
        p = PROTOCOLS[pname]
        for name in args.strategies.split(","):
            if why := groupable(STRATEGIES.get(name)):
                rows.append({"protocol": pname, "strategy": name, "alone": why})
                continue
            stream = build_stream("permuted", source="fashion-mnist", num_tasks=p.num_tasks,
                                  train_per_task=p.train_per_task,
                                  test_per_task=p.test_per_task, scenario=scenario_of(name),
                                  seed=0)
            warm_up(stream, p)
            runs = [measure(name, stream, p, args.members) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            row = {"protocol": pname, "strategy": name, "members": args.members, **med,
                   "train_group_vs_bare1": statistics.median(
                       r["group_train"] / r["bare_train_1"] for r in runs),
                   "wall_speedup_vs_bare": statistics.median(
                       r["bare_wall_G"] / r["group_wall"] for r in runs),
                   "wall_speedup_vs_ours": statistics.median(
                       r["seq_wall_G"] / r["group_wall"] for r in runs),
                   "eval_share": statistics.median(
                       r["group_eval"] / r["group_wall"] for r in runs)}
            rows.append(row)
            if not args.json:
                print(f"{pname} {name:6s} train G/bare1 {row['train_group_vs_bare1']:.2f}x  "
                      f"wall: {row['wall_speedup_vs_bare']:.2f}x faster than {args.members} "
                      f"bare, {row['wall_speedup_vs_ours']:.2f}x than {args.members} of ours; "
                      f"eval {100 * row['eval_share']:.0f}% of the group's wall", flush=True)
    if args.json:
        print(json.dumps({"rows": rows, "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
