"""`task-order`: how the order of the tasks changes forgetting and transfer (the lecture's
curriculum question), where the order choosers' picks fall, and the tasks' affinity.

Runs, every one an ordinary stored run (so a stopped study resumes and stored runs are reused):
- the lecture's noisy/clean pair in both orders (noisy digits then clean, and the reverse);
- a 5-task rotated-digits stream (0°, 45°, 90°, 135°, 180°, domain-IL) in all 120 orders
  (`--quick`: a sample of `orders` of them, always with the given and reversed order, drawn
  from the seed);
each with every strategy and the same seed. The report gives the spread of ACC, BWT and FWT
over the orders per strategy, each position's mean final accuracy (does the last task always
win?), a box plot, the task-affinity matrix of the 5 tasks (`lifelong.curriculum`, measured
with the first strategy, MLP and training of the study; a budget of 128 examples in one pass:
four steps) as a heatmap, and where each chooser's order ranks among the orders run.

The rotated stream holds out 10 % of each task's training examples as its validation split
(`stream.validation`): the affinity, and so the choosers' orders, are measured on it, while
every run is scored on the test sets, which the choosers never see.

No paper gives numbers for this protocol: the references are none, and the point is the
spread itself, measured here.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, pstdev
from typing import Any

import torch

from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome
from lifelong.metrics import summary
from lifelong.plots import new_figure, save
from lifelong.seeding import generator

ANGLES = [0.0, 45.0, 90.0, 135.0, 180.0]


@EXPERIMENTS.register("task-order")
class TaskOrder(Experiment):
    name = "task-order"
    summary = ("one stream in many task orders: the spread of ACC/BWT over orders, the "
               "tasks' affinity, and where each order chooser's pick falls")
    strategies = ("naive", "ewc")
    options = {"orders": 0, "budget": 128, "pair_source": "mnist-10k"}
    protocol_note = ("No published numbers: the lecture's point (order changes the result) "
                     "is measured here, on our own protocol.")

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"name": "rotated", "source": "digits", "angles": ANGLES,
                       "validation": 0.1},
            "model": {"name": "mlp", "hidden": [100]},
            "strategies": {"naive": {}, "ewc": {"strength": 3.0, "normalize": False}},
            "train": {"epochs": 2, "batch_size": 32, "optimizer": "sgd", "lr": 0.1},
            "options": {"orders": 0, "budget": 128, "pair_source": "mnist-10k"},
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        return {"options": {"orders": 10, "pair_source": "digits"}, "train": {"epochs": 1}}

    def check_options(self, options: dict[str, Any]) -> list[str]:
        out = []
        for key, low in (("orders", 0), ("budget", 1)):  # pair_source: checked below
            v = options.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                out.append(f"options.{key}={v!r} must be an integer >= {low}"
                           + (" (0 = all orders)" if key == "orders" else ""))
        if not isinstance(options.get("pair_source"), str):
            out.append(f"options.pair_source={options.get('pair_source')!r} must name an image "
                       "source (mnist-10k, digits, fashion-mnist)")
        return out

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        base = dict(config.get("stream", {}))
        n = len(base.get("angles") or []) or int(base.get("num_tasks") or 5)
        wanted = int(config.get("options", {}).get("orders", 0))
        orders = [list(p) for p in itertools.permutations(range(n))]
        if wanted and wanted < len(orders):
            pick = torch.randperm(len(orders) - 2, generator=generator(
                "task-order", int(config.get("seed", 0)) if isinstance(
                    config.get("seed", 0), int) else 0))[:max(wanted - 2, 0)] + 1
            orders = [orders[0], orders[-1], *(orders[i] for i in sorted(pick.tolist()))]
        # The lecture's pair on real MNIST digits, as `forgetting` (on the 8x8 digits the
        # clean task is also good on the noisy one, so the order matters little).
        pair = {"name": "noisy", "noise": "salt-pepper", "level": 0.5,
                "source": config.get("options", {}).get("pair_source", "mnist-10k")}
        return ([{**pair, "order": o} for o in ([0, 1], [1, 0])]
                + [{**base, "order": o} for o in orders])

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        from lifelong.experiments._order_report import affinity_and_choices

        by: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
        for o in outcomes:
            by[(o.config["stream"]["name"], o.label)].append(o)
        lines = [f"{'stream':8s} {'method':8s} {'orders':>6s}  ACC mean ± sd [min, max]"
                 "       BWT mean [min, max]      FWT mean"]
        fig, axes = new_figure(2, width=5.5, height=4.0)
        boxes: dict[str, list[list[float]]] = {"ACC": [], "BWT": []}
        labels = []
        for (stream, label), runs in by.items():
            m = [summary(o.result.matrix) for o in runs]
            acc, bwt = [x["acc"] for x in m], [x["bwt"] for x in m]
            lines.append(f"{stream:8s} {label:8s} {len(runs):6d}  {fmean(acc):.3f} ± "
                         f"{pstdev(acc):.3f} [{min(acc):.3f}, {max(acc):.3f}]   "
                         f"{fmean(bwt):+.3f} [{min(bwt):+.3f}, {max(bwt):+.3f}]   "
                         f"{fmean(x['fwt'] for x in m):+.3f}")
            if stream == "noisy":
                for o, x in zip(runs, m, strict=True):
                    names = " then ".join(k.split("/")[-1] for k in o.result.tasks)
                    lines.append(f"{'':16s} order {names}: ACC {x['acc']:.3f}, "
                                 f"BWT {x['bwt']:+.3f}")
                continue
            boxes["ACC"].append(acc)
            boxes["BWT"].append(bwt)
            labels.append(label)
            lines += _by_position(runs)
        for ax, (name, data) in zip(axes, boxes.items(), strict=True):
            ax.boxplot(data, tick_labels=labels)
            ax.set_ylabel(name)
            ax.set_title(f"{name} over task orders (rotated digits)", fontsize=9)
        text, paths = affinity_and_choices(outcomes, out_dir, options, axes)
        lines += text
        paths.insert(0, save(fig, out_dir / "task-order.png"))
        return "\n".join(lines), paths



def _by_position(runs: Sequence[Outcome]) -> list[str]:
    """Each task's mean final accuracy at each training position (over the orders that put
    it there), and the mean over tasks per position: does the last task always win?"""
    at: dict[tuple[str, int], list[float]] = defaultdict(list)
    for o in runs:
        for p, key in enumerate(o.result.tasks):
            at[(key, p)].append(o.result.matrix[-1][p])
    keys = sorted({k for k, _ in at})
    T = len(runs[0].result.tasks)
    out = [f"{'':16s} final accuracy by training position " + " ".join(
        f"{p + 1:>6d}" for p in range(T))]
    for key in keys:
        out.append(f"{'':16s} {key.split('/')[-1]:>33s} " + " ".join(
            f"{fmean(at[(key, p)]):6.3f}" if at[(key, p)] else f"{'-':>6s}" for p in range(T)))
    out.append(f"{'':16s} {'mean over tasks':>33s} " + " ".join(
        f"{fmean(o.result.matrix[-1][p] for o in runs):6.3f}" for p in range(T)))
    return out
