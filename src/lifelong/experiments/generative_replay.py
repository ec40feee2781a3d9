"""`generative-replay`: "we cannot keep the old data" — deep generative replay (`dgr`, and its
soft-target variant) against naive, joint and experience replay holding the same number of
bytes, on split digits in class-IL and on permuted digits, with pictures of what the
generator remembers after each task.

Owns the protocol, the byte-matched replay budget (`er_memory_size`), the observer that samples
the generator after every task (a fixed generator of its own, so the run is unchanged), the
table (ACC, BWT, memory kept, time), the published numbers and the figures: ACC per stream and
method, and per DGR run a grid of samples (rows = after task 1, 2, ...).

Protocol: 5 tasks (split: 2 digits each, class-IL; permuted: 5 permutations of 1600 images,
domain-IL), MLP
2×400 solver, plain SGD lr 0.1, batch 32, 10 epochs; DGR's VAE has one hidden layer of 400 and
a 32-d code (van de Ven & Tolias' MLP VAE, smaller). ER keeps as many bytes of examples in all
as one VAE has in parameters: what DGR carries from task to task instead of data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

import torch

from lifelong.callbacks import Callback, Recorder, TaskEnd
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Reference, mean_acc
from lifelong.metrics import summary
from lifelong.plots import grouped_bars, new_figure, save
from lifelong.strategies.base import Strategy

HSU = ("Hsu et al. 2018, Re-evaluating continual learning scenarios, Table 2 (split MNIST, "
       "class-IL, 60k training images, MLP 2x400)")
VDV = ("van de Ven & Tolias 2019, Three scenarios for continual learning (arXiv:1904.07734), "
       "Table 4 (split MNIST, class-IL, 60k training images, MLP 2x400, 2000 iterations/task)")
SAMPLES = 10  # images per row of the grid
# Pixels of one image per source, to size ER's byte-matched memory before any data loads; a
# source not listed is taken as 28x28.
PIXELS = {"digits": 64}


def vae_parameters(pixels: int, latent: int, width: int) -> int:
    """Parameters of `lifelong.models.vae.VAE` with one hidden layer of `width`."""
    encoder = pixels * width + width + width * 2 * latent + 2 * latent
    decoder = latent * width + width + width * pixels + pixels
    return encoder + decoder


def er_memory_size(pixels: int, num_tasks: int, *, latent: int = 32, width: int = 400) -> int:
    """Examples per task for ER so that all its memories (float32 pixels plus two int64
    labels each) take about the bytes of one float32 VAE."""
    per_example = 4 * pixels + 16
    return max(1, round(4 * vae_parameters(pixels, latent, width) / per_example / num_tasks))


class SampleGrid(Recorder):
    """After every task, `SAMPLES` images from the strategy's generator, drawn from this
    observer's own generator (the strategy's draws are untouched). Its artifact: one nested
    list of pixel values (4 decimals) per task learned."""

    key = "samples"

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.rows: list[torch.Tensor] = []

    def on_task_end(self, event: TaskEnd) -> None:
        sample = getattr(self.strategy, "sample", None)
        images = sample(SAMPLES, torch.Generator().manual_seed(0)) if sample else None
        if images is not None:
            self.rows.append(images.detach().cpu())

    def artifact(self) -> list[Any]:
        return [torch.round(r, decimals=4).tolist() for r in self.rows]

    def restore(self, value: Any) -> None:
        self.rows = [torch.tensor(r, dtype=torch.float32) for r in value]


@EXPERIMENTS.register("generative-replay")
class GenerativeReplay(Experiment):
    name = "generative-replay"
    summary = ("deep generative replay (dgr, dgr distill) vs naive, joint and ER with the "
               "same bytes, split digits class-IL and permuted; grids of generated samples")
    strategies = ("naive", "joint", "er", "dgr")
    options = {"streams": ["split", "permuted"]}
    references = (
        Reference("DGR ACC, split MNIST, class-IL", 0.912, HSU, "dgr distill=false/split/acc"),
        Reference("DGR ACC, split MNIST, class-IL", 0.9079, VDV, "dgr distill=false/split/acc"),
        Reference("DGR+distill ACC, split MNIST, class-IL", 0.9179, VDV,
                  "dgr distill=true/split/acc"),
        Reference("offline (joint) ACC, split MNIST, class-IL", 0.975, HSU, "joint/split/acc"),
    )
    protocol_note = (
        "Split MNIST class-IL as Hsu et al. and van de Ven & Tolias (5 tasks of 2 digits, MLP "
        "2x400 solver, MLP VAE), but: the source is mnist-10k (8000 training images, about "
        "1600 per task instead of 12000); plain SGD lr 0.1 for the solver, 10 epochs of batch "
        "32 (about 500 steps per task, where they train 2000 iterations with Adam); the VAE "
        "takes one Adam step per solver step and has one hidden layer of 400 (theirs: two); "
        "replay weighs 1 - 1/k on the k-th task as van de Ven & Tolias. ER holds, in all, the "
        "bytes of one VAE in examples. No published numbers are quoted for the permuted "
        "stream (different task counts in the papers).")
    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"source": "mnist-10k", "num_tasks": 5},
            "model": {"name": "mlp", "hidden": [400, 400]},
            "train": {"epochs": 10, "batch_size": 32, "optimizer": "sgd", "lr": 0.1},
            "options": dict(self.options),
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        return {"stream": {"source": "digits", "train_per_task": None},
                "model": {"hidden": [100, 100]},
                "train": {"epochs": 20}}

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        names = config.get("options", {}).get("streams", self.options["streams"])
        base = {k: v for k, v in config.get("stream", {}).items() if k != "name"}
        self._budget = er_memory_size(PIXELS.get(str(base.get("source")), 784),
                                      int(base.get("num_tasks", 5)))
        out = []
        for name in [names] if isinstance(names, str) else names:
            if name == "split":
                out.append({"name": "split", "classes_per_task": 2, "scenario": "class",
                            **base})
            else:  # as many training images per task as a split task has (about 1600)
                out.append({"name": name, "train_per_task": 1600, **base})
        return out

    def check_options(self, options: dict[str, Any]) -> list[str]:
        names = options.get("streams")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or any(
                n not in ("split", "permuted", "rotated") for n in names):
            return [f"options.streams={names!r} must list streams of split, permuted, rotated"]
        return []

    def strategy_variants(self, name: str, options: dict[str, Any],
                          experiment_options: dict[str, Any]) -> list[dict[str, Any]]:
        if name == "dgr" and "distill" not in options:  # DGR and DGR+distill
            return [{**options, "distill": False}, {**options, "distill": True}]
        if name == "er" and "memory_size" not in options:
            return [{**options, "memory_size": getattr(self, "_budget", 170)}]
        return [dict(options)]

    def callbacks(self, run_id: str, strategy: Strategy) -> list[Callback]:
        return [SampleGrid(strategy)]

    # ------------------------------------------------------------------------- results
    @staticmethod
    def _kind(o: Outcome) -> str:
        return str(o.config["stream"]["name"])

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        return mean_acc(outcomes, lambda o: f"{o.label}/{self._kind(o)}")

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        rows: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
        for o in outcomes:
            rows[self._kind(o), o.label].append(o)
        lines = [f"{'stream':9s} {'method':18s} {'ACC':>6s} {'BWT':>7s} {'kept MB':>8s} "
                 f"{'train s':>8s} {'generator s':>11s}"]
        series: dict[str, dict[str, float]] = defaultdict(dict)
        for (kind, label), runs in rows.items():
            m = [summary(o.result.matrix) for o in runs]
            kept = fmean(o.result.costs[-1].state_bytes - _model_bytes(o) for o in runs) / 2 ** 20
            train = fmean(sum(c.train_seconds for c in o.result.costs) for o in runs)
            gen = [sum(d.get("generator_seconds", 0.0) for d in o.result.diagnostics)
                   for o in runs]
            acc = fmean(x["acc"] for x in m)
            series[label][kind] = acc
            lines.append(f"{kind:9s} {label:18s} {acc:6.3f} {fmean(x['bwt'] for x in m):+7.3f} "
                         f"{kept:8.2f} {train:8.1f} "
                         f"{(f'{fmean(gen):.1f}' if any(gen) else '-'):>11s}")
        kinds = list(dict.fromkeys(self._kind(o) for o in outcomes))
        fig, (ax,) = new_figure(width=max(6.0, 2.2 * len(kinds) * len(series) / 3), height=4)
        grouped_bars(ax, kinds, {k: [v.get(s, math.nan) for s in kinds]
                                 for k, v in series.items()}, ylabel="ACC (final)")
        ax.set_ylim(0, 1.1)
        figures = [save(fig, out_dir / "generative_replay.png")]
        for o in outcomes:
            samples = o.result.artifacts.get("samples")
            if samples:
                figures.append(_sample_grid([torch.tensor(r) for r in samples],
                                            f"{o.label}, {self._kind(o)}",
                                            out_dir / f"samples_{o.run_id}.png"))
        return "\n".join(lines), figures


def _model_bytes(o: Outcome) -> int:
    """Bytes of the solver's parameters (float32), so "kept" is what the method adds."""
    return 4 * o.result.costs[-1].parameters


def _sample_grid(rows: list[torch.Tensor], title: str, path: Path) -> Path:
    """One row of generated images per task learned (row k: after task k)."""
    fig, axes = new_figure(SAMPLES, width=0.8, height=0.9, nrows=len(rows))
    for k, images in enumerate(rows):
        for j in range(SAMPLES):
            ax = axes[k * SAMPLES + j]
            image = images[j].reshape(images[j].shape[-2:]) if images[j].dim() > 1 else images[j]
            ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"after {k + 1}", fontsize=7)
    fig.suptitle(f"generated samples: {title}", fontsize=9)
    return save(fig, path)
