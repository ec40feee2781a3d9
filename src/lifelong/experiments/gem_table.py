"""`gem-table`: GEM's comparison (Lopez-Paz & Ranzato 2017, Fig. 1) — ACC, BWT and FWT of
naive fine-tuning, EWC, experience replay, GEM, A-GEM and joint training on MNIST permutations
and MNIST rotations.

Owns the protocol's defaults, the two streams (through `stream_variants`), the table (mean ±
std over seeds) and the figure: per stream, the three metrics as grouped bars, and the accuracy
on the first task as more tasks are learned (the right-hand panels of GEM's Fig. 1).

GEM's protocol, and where ours differs:
- 20 tasks × 1000 training examples, an MLP with two hidden layers of 100 units, plain SGD
  (lr 0.1), batch 10, a single pass; 256 memories per task; GEM's margin γ = 0.5. As GEM.
- Source `mnist`, the official 60k/10k split: each task draws its 1000 training examples from
  the 60k training images and is tested on all 10k test images, as GEM did.
- Rotations: 20 angles evenly spaced in [0°, 180°) (GEM: random angles in that range).
- Memories: a class-balanced random sample of each task's training set (the `gem` strategy's
  declared departure; GEM kept each task's last examples).
- EWC at the library's defaults (λ = 3, exact Fisher, proximal step). Not tuned on this
  table: `lifelong run strength-sweep --set stream.num_tasks=20` on validation seeds (100,
  101; permuted and rotated, whose tasks differ from this table's seeds 0-2) chose the same
  λ = 3 as the 5-task sweep behind the default (the largest gain over naive on both streams;
  λ = 1 is better on permutations alone, λ = 30 on rotations alone); that sweep ran on
  `mnist-10k` (8000 training images) and was not repeated on the full set. With plain SGD at
  lr 0.1 the paper's gradient step diverges there from λ = 10 on (the penalty summed over 20
  tasks); the proximal step does not. Included only when `ewc` is registered.
- `joint` is cumulative: each task trains on all data seen so far; its last row is the
  multi-task reference.

The A-GEM rows are a guide, not a target: A-GEM's protocol (`lifelong run agem-permuted`)
shares the single pass and batch 10 but not the rest: 20 tasks of which the first 3 only tune
the hyper-parameters and 17 are reported, each task's whole 55k training split, an MLP 2x256,
250 memories per task and learning rates chosen per method. GEM keeps one constraint per past task
where A-GEM keeps one averaged constraint; the README gives the measurements that locate A-GEM's
gap to GEM on this protocol there (a larger reference batch barely helps; GEM without its
margin loses much of its lead). `--quick` (digits, 5 tasks, 64 memories) takes seconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Reference
from lifelong.metrics import summary
from lifelong.plots import grouped_bars, new_figure, save

METHODS = ("naive", "ewc", "er", "gem", "agem", "joint")
METRICS = ("acc", "bwt", "fwt")
AGEM_PAPER = ("Chaudhry et al. 2019 (A-GEM), permuted MNIST, average accuracy: 20 tasks, the "
              "first 3 for tuning and 17 reported, one pass over each task's 55k training "
              "images, MLP 2x256, batch 10, learning rates per method — another protocol")
GEM_PAPER = "Lopez-Paz & Ranzato 2017, Fig. 1 (MNIST permutations, 20 tasks x 1000)"


@EXPERIMENTS.register("gem-table")
class GEMTable(Experiment):
    name = "gem-table"
    summary = ("GEM Fig. 1: ACC/BWT/FWT of naive, EWC, ER, GEM, A-GEM and joint on MNIST "
               "permutations and rotations (20 tasks x 1000, MLP 2x100, batch 10, one pass)")
    strategies = METHODS
    options = {"streams": ["permuted", "rotated"]}
    references = (
        Reference("gem ACC, MNIST permutations", 0.83, GEM_PAPER, "gem/permuted/acc"),
        Reference("naive (VAN) ACC, permuted", 0.4795, AGEM_PAPER, "naive/permuted/acc"),
        Reference("ewc ACC, permuted", 0.6835, AGEM_PAPER, "ewc/permuted/acc"),
        Reference("gem ACC, permuted", 0.9030, AGEM_PAPER, "gem/permuted/acc"),
        Reference("agem ACC, permuted", 0.8912, AGEM_PAPER, "agem/permuted/acc"),
        Reference("joint (multi-task) ACC, permuted", 0.9538, AGEM_PAPER,
                  "joint/permuted/acc"),
    )
    protocol_note = (
        "GEM's protocol (20 tasks x 1000 examples, MLP 2x100, SGD lr 0.1, batch 10, one pass, "
        "256 memories per task, margin 0.5) on the official MNIST split: training examples "
        "drawn from the 60k training images, each task tested on the 10k test images, as GEM. "
        "Where ours differs: rotation angles are evenly spaced in [0, 180) rather than random; "
        "each task's memories are a class-balanced random sample, not its last examples; EWC "
        "runs at strength 3 in the paper's form (normalize=false; exact Fisher, proximal "
        "step), the value chosen on a validation stream (lifelong run strength-sweep on "
        "mnist-10k), not on this table. The "
        "A-GEM numbers use another protocol (20 tasks, the first 3 for tuning and 17 reported; "
        "each task's whole 55k training split; MLP 2x256; 250 memories per task; learning "
        "rates per method; see lifelong run agem-permuted), so they are a guide, not a "
        "target.")

    def defaults(self) -> dict[str, Any]:
        per: dict[str, dict[str, Any]] = {
            "naive": {}, "ewc": {"strength": 3.0, "normalize": False},
            "er": {"memory_size": 256, "memory_batch": 10},
            "gem": {"memory_size": 256, "memory_batch": None, "memory_strength": 0.5},
            "agem": {"memory_size": 256, "memory_batch": 256},
            "joint": {},
        }
        return {
            "stream": {"source": "mnist", "num_tasks": 20, "train_per_task": 1000,
                       "test_per_task": None, "scenario": "domain"},
            "model": {"name": "mlp", "hidden": [100, 100]},
            "strategies": {n: opts for n, opts in per.items() if n in self.strategies},
            "train": {"epochs": 1, "batch_size": 10, "optimizer": "sgd", "lr": 0.1},
            "options": dict(self.options),
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        # The embedded 8x8 digits, 5 tasks, smaller memories: seconds, and GEM still forgets
        # far less than naive.
        small = {"memory_size": 64}
        return {"stream": {"source": "digits", "num_tasks": 5, "train_per_task": 1000},
                "strategies": {"er": small, "gem": small, "agem": {**small, "memory_batch": 64}}}

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        names = config.get("options", {}).get("streams", self.options["streams"])
        base = {k: v for k, v in config.get("stream", {}).items() if k != "name"}
        return [{"name": n, **base} for n in ([names] if isinstance(names, str) else names)]

    # ------------------------------------------------------------------------- results
    @staticmethod
    def _grouped(outcomes: Sequence[Outcome]) -> dict[str, dict[str, list[Outcome]]]:
        """stream builder name → strategy → outcomes (one per seed), in run order."""
        out: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
        for o in outcomes:
            out[o.config["stream"]["name"]][o.strategy].append(o)
        return out

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        return {f"{method}/{stream}/{m}": fmean(summary(o.result.matrix)[m] for o in runs)
                for stream, by in self._grouped(outcomes).items()
                for method, runs in by.items() for m in METRICS}

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        grouped = self._grouped(outcomes)
        seeds = len({o.seed for o in outcomes})
        pm = " ± std" if seeds > 1 else ""
        lines = [f"{'stream':10s} {'method':7s} " + " ".join(
            f"{m.upper() + pm:>15s}" for m in METRICS) + f" {'train s':>8s}"]
        fig, axes = new_figure(len(grouped), width=7.0, height=4.2, nrows=2)
        for col, (stream, by) in enumerate(grouped.items()):
            means: dict[str, list[float]] = {}
            stds: dict[str, list[float]] = {}
            for method, runs in by.items():
                values = [[summary(o.result.matrix)[m] for o in runs] for m in METRICS]
                means[method] = [fmean(v) for v in values]
                stds[method] = [stdev(v) if len(v) > 1 else 0.0 for v in values]  # sample std
                cells = " ".join(f"{mu:+15.3f}" if seeds == 1 else f"{mu:+8.3f} ± {sd:.3f}"
                                 for mu, sd in zip(means[method], stds[method], strict=True))
                secs = fmean(sum(c.train_seconds for c in o.result.costs) for o in runs)
                lines.append(f"{stream:10s} {method:7s} {cells} {secs:8.1f}")
            top, bottom = axes[col], axes[len(grouped) + col]
            grouped_bars(top, [m.upper() for m in METRICS], means,
                         errors=stds if seeds > 1 else None, ylabel="accuracy / transfer")
            top.axhline(0.0, color="black", linewidth=0.6)
            source = next(iter(by.values()))[0].config["stream"]["source"]
            top.set_title(f"{stream} {source} ({len(next(iter(by.values()))[0].result.matrix[0])}"
                          f" tasks, {seeds} seed{'s' * (seeds > 1)})")
            for method, runs in by.items():
                first = [fmean(o.result.matrix[i][0] for o in runs)
                         for i in range(1, len(runs[0].result.matrix))]
                bottom.plot(range(1, len(first) + 1), first, marker=".", label=method)
            bottom.set_xticks(range(1, len(runs[0].result.matrix)))
            bottom.set_xlabel("tasks learned")
            bottom.set_ylabel("accuracy on task 1")
            bottom.set_ylim(0, 1.02)
            bottom.legend(fontsize=8)
        return "\n".join(lines), [save(fig, out_dir / "gem_table.png")]
