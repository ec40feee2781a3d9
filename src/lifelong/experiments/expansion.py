"""`expansion`: when a small network runs out of room — a fixed narrow MLP (naive, EWC) against
models that grow: Progressive Networks (a column per task), Expert Gate (an expert per task)
and Net2Net growth only when a task cannot be learned.

Owns the protocol (10 permuted tasks, task-incremental so every method, PNN included, runs on
the same stream; a narrow MLP), the observer that measures Expert Gate's routing accuracy on
the test sets after each task (without task labels), the table (ACC, BWT, parameters after the
first and the last task, growths, routing) and the figure: average accuracy over the tasks
seen against the parameter count, after each task, one line per method.

What it shows: the fixed model forgets (naive) or stops learning (EWC fills its few weights);
PNN and Expert Gate forget nothing by construction and grow with every task (PNN also grows
its lateral connections); Net2Net on demand (with EWC, and with GEM, inside) grows only at the
tasks the network does not learn to its threshold, so it ends far smaller.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

import torch

from lifelong.callbacks import Callback, Recorder, RunStart, TaskEnd
from lifelong.data.task import Stream
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Reference, mean_acc
from lifelong.metrics import summary
from lifelong.plots import new_figure, save
from lifelong.strategies.base import Strategy

AGEM = ("Chaudhry et al. 2019, Efficient Lifelong Learning with A-GEM (ICLR), permuted MNIST, "
        "PROG-NN row (authors' output): 20 tasks, 3 for tuning and 17 reported, one pass over "
        "each task's 55k training images, batch 10, columns of 2x256")
GATE = ("Aljundi et al. 2017, Expert Gate (CVPR), {where}: share of test images sent to the "
        "right expert; natural-image tasks (scenes, birds, flowers...) seen through AlexNet "
        "features pretrained on ImageNet, not pixels")


class Routing(Recorder):
    """After each task, the share of each seen task's test images the strategy routes to that
    task (for strategies with a `route(x)`, i.e. Expert Gate); no task label is used. Its
    artifact: one list per task learned, the routing accuracy on each task seen so far."""

    key = "routing"

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.stream: Stream | None = None
        self.after: list[list[float]] = []  # after task i: accuracy per task 0..i

    def on_run_start(self, event: RunStart) -> None:
        self.stream = event.data

    def on_task_end(self, event: TaskEnd) -> None:
        route = getattr(self.strategy, "route", None)
        if route is None or self.stream is None:
            return
        with torch.no_grad():
            self.after.append([
                float((route(t.test.to(self.strategy.device).x).cpu() == t.label).float().mean())
                for t in self.stream.tasks[:event.task_index + 1]])

    def artifact(self) -> list[list[float]]:
        return [list(r) for r in self.after]

    def restore(self, value: Any) -> None:
        self.after = [[float(a) for a in r] for r in value]


@EXPERIMENTS.register("expansion")
class Expansion(Experiment):
    name = "expansion"
    summary = ("a narrow MLP on 10 permuted tasks: fixed (naive, EWC) vs growing (PNN, "
               "Expert Gate, Net2Net on demand); accuracy against parameter count per task")
    strategies = ("naive", "ewc", "pnn", "expert-gate", "net2net")
    references = (
        Reference("PNN ACC, permuted MNIST (A-GEM's PROG-NN)", 0.9355, AGEM, "pnn/acc"),
        Reference("Expert Gate routing, 6 tasks (autoencoder gate, mean)", 0.976,
                  GATE.format(where="Table 3"), "expert-gate/routing"),
        Reference("Expert Gate routing, 3 tasks", 0.992, GATE.format(where="§4.1"),
                  "expert-gate/routing"),
    )
    protocol_note = (
        "10 permuted mnist-10k tasks (1000 training images each, from 8000; tested on 500 of "
        "2000), task-incremental (a head per task, so PNN can pick its column), MLP with one "
        "hidden layer of 20 units, 5 epochs of SGD lr 0.1, batch 32. The A-GEM paper's PROG-NN "
        "number is for 17 reported permuted-MNIST tasks of 55k training images each with 2x256 "
        "columns, one pass: a guide to what PNN reaches with room, not a target. Expert Gate's "
        "gate accuracies are for natural-image tasks whose images the gate sees as AlexNet "
        "features (ImageNet-pretrained), not for pixels of permuted digits: a guide to what a good"
        " gate does, not a target. In task-IL Expert Gate answers with the labelled task's expert;"
        " the routing column says how its gate would do without labels. Progressive Networks' own "
        "paper (Rusu et al. 2016) has no MNIST number (its experiments are reinforcement "
        "learning); Net2Net's (Chen et al. 2016) only quotable figure is an ImageNet accuracy of a"
        " deepened Inception network, with no speed-up number; Sodhani et al. grow recurrent "
        "networks on sequence curricula. None of them is compared here.")

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"name": "permuted", "source": "mnist-10k", "num_tasks": 10,
                       "train_per_task": 1000, "test_per_task": 500, "scenario": "task"},
            "model": {"name": "mlp", "hidden": [20]},
            # EWC in the paper's form at the strength its README numbers were measured with.
            "strategies": {"ewc": {"strength": 3.0, "normalize": False}},
            "train": {"epochs": 5, "batch_size": 32, "optimizer": "sgd", "lr": 0.1},
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        return {"stream": {"source": "digits", "num_tasks": 5, "train_per_task": None,
                           "test_per_task": None},
                "model": {"hidden": [10]}}

    def strategy_variants(self, name: str, options: dict[str, Any],
                          experiment_options: dict[str, Any]) -> list[dict[str, Any]]:
        # Growth on demand with each retention method it offers (Sodhani et al.: EWC or GEM),
        # unless the user picked one.
        if name == "net2net" and "retention" not in options:
            return [{**options, "retention": "ewc"}, {**options, "retention": "gem"}]
        return [dict(options)]

    def callbacks(self, run_id: str, strategy: Strategy) -> list[Callback]:
        return [Routing(strategy)]

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        """ACC per method (mean over seeds), and Expert Gate's routing accuracy after the last
        task, averaged over the tasks and the seeds."""
        out = mean_acc(outcomes, lambda o: o.label)
        routed = [fmean(o.result.artifacts["routing"][-1]) for o in outcomes
                  if o.strategy == "expert-gate" and o.result.artifacts.get("routing")]
        if routed:
            out["expert-gate/routing"] = fmean(routed)
        return out

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        by: dict[str, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            by[o.label].append(o)
        lines = [f"{'method':22s} {'ACC':>6s} {'BWT':>7s} {'params, task 1':>15s} "
                 f"{'params, last':>13s} {'growths':>8s} {'routing':>8s}"]
        fig, (ax,) = new_figure(width=6.5, height=4.5)
        for label, runs in by.items():
            m = [summary(o.result.matrix) for o in runs]
            grew = fmean(sum(d.get("growths", 0.0) for d in o.result.diagnostics)
                         for o in runs)
            routed = [o.result.artifacts["routing"][-1] for o in runs
                      if o.result.artifacts.get("routing")]
            routing = f"{fmean(fmean(r) for r in routed):8.3f}" if routed else f"{'-':>8s}"
            first, last = runs[0].result.costs[0].parameters, runs[0].result.costs[-1].parameters
            lines.append(f"{label:22s} {fmean(x['acc'] for x in m):6.3f} "
                         f"{fmean(x['bwt'] for x in m):+7.3f} {first:15,d} {last:13,d} "
                         f"{grew:8.1f} {routing}")
            R, params = runs[0].result.matrix, [c.parameters for c in runs[0].result.costs]
            seen = [fmean(R[i + 1][:i + 1]) for i in range(len(params))]
            ax.plot(params, seen, marker="o", markersize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("parameters after each task (log)")
        ax.set_ylabel("average accuracy over the tasks seen")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
        source = outcomes[0].config["stream"]["source"] if outcomes else "?"
        ax.set_title(f"permuted {source}: accuracy vs size as tasks arrive (seed "
                     f"{outcomes[0].seed if outcomes else '?'})", fontsize=9)
        return "\n".join(lines), [save(fig, out_dir / "expansion.png")]
