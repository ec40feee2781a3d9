"""`generative-replay`: "we cannot keep the old data" — deep generative replay (`dgr`, and its
soft-target variant) against naive, joint, experience replay holding the same number of bytes
and iCaRL, on split MNIST in van de Ven & Tolias' protocol (and on permuted MNIST on request),
with pictures of what the generator remembers after each task.

Owns the protocol, the byte-matched replay budget (`er_memory_size`), the observer that samples
the generator after every task (a fixed generator of its own, so the run is unchanged), the
table (ACC, BWT, memory kept, time), the published numbers and the figures: ACC per stream and
method, and per DGR run a grid of samples (rows = after task 1, 2, ...).

Protocol by default: van de Ven & Tolias 2019 ("Three scenarios for continual learning",
arXiv:1904.07734) on split MNIST, read from the paper's table (via /work/shared/REFERENCES.md)
and the authors' released code (GMvandeVen/continual-learning at commit 86802a8, April 2019,
the code of the paper's first version): the full 60k/10k MNIST, 5 tasks of 2 digits in the
task-, domain- and class-incremental scenarios; an MLP with 2 hidden layers of 400 (their
`--fc-layers 3`); Adam (betas 0.9, 0.999) lr 0.001, batch 128, 2000 iterations per task
(`main.py`/`_compare.py` defaults `--lr 0.001 --batch 128 --iters 2000`); DGR's VAE with 2
hidden layers of 400 and a 100-d code (`--g-z-dim 100`, generator layers and units as the
solver's), trained with the solver's optimizer settings for as many iterations (`--g-iters`,
`--lr-gen` default to the solver's); replayed batches as large as the current one, weighted
1 - 1/k against 1/k for the k-th task (`train.py`: `rnt=1./task`); distillation temperature
2 (`--temp 2.`); iCaRL with a budget of 2000 exemplars, herding, normalised features and
nearest-mean classification (`_compare.py`). The 2000 iterations are `train.steps_per_task`.
ER keeps as many bytes of examples in all as one VAE has in parameters: what DGR carries from
task to task instead of data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import torch

from lifelong.callbacks import Callback, Recorder, TaskEnd
from lifelong.data.task import SCENARIOS
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome, Reference, mean_acc
from lifelong.metrics import summary
from lifelong.plots import grouped_bars, new_figure, save
from lifelong.strategies.base import Strategy

HSU = ("Hsu et al. 2018, Re-evaluating continual learning scenarios, Table 2 (split MNIST, "
       "class-IL, 60k training images, MLP 2x400, 4 epochs per task)")
VDV = ("van de Ven & Tolias 2019, Three scenarios for continual learning (arXiv:1904.07734v1), "
       "split MNIST table (60k training images, MLP 2x400, Adam lr 0.001, batch 128, 2000 "
       "iterations/task)")
SAMPLES = 10  # images per row of the grid
# Pixels of one image per source, to size ER's byte-matched memory before any data loads; a
# source not listed is taken as 28x28.
PIXELS = {"digits": 64}
# Training images per source, so a permuted task gets as many as a split task of the same
# source; a source not listed keeps the permuted builder's own default.
TRAIN_IMAGES = {"mnist": 60000, "fashion-mnist": 60000, "mnist-10k": 8000}
# The protocol's VAE (van de Ven & Tolias: as the solver, 2 hidden layers of 400; code 100).
VAE_LAYERS, VAE_WIDTH, VAE_LATENT = 2, 400, 100
# van de Ven & Tolias 2019's split MNIST numbers, as fractions: method -> (our label,
# {scenario: value}); a cell the source leaves blank is absent. "(rounded)" marks values the
# transcription gives to one decimal only.
PUBLISHED: dict[str, tuple[str, dict[str, float]]] = {
    "None (fine-tuning)": ("naive", {"task": 0.872, "domain": 0.592, "class": 0.1990}),
    "DGR": ("dgr distill=false", {"task": 0.9950, "domain": 0.9572, "class": 0.9079}),
    "DGR+distill": ("dgr distill=true", {"task": 0.9961, "domain": 0.9683, "class": 0.9179}),
    "iCaRL (budget 2000)": ("icarl", {"class": 0.9457}),
}
ROUNDED = {("None (fine-tuning)", "task"), ("None (fine-tuning)", "domain")}


def vae_parameters(pixels: int, latent: int, width: int, layers: int = 1) -> int:
    """Parameters of `lifelong.models.vae.VAE` with `layers` hidden layers of `width`."""
    hidden = (layers - 1) * (width * width + width)
    encoder = pixels * width + width + hidden + width * 2 * latent + 2 * latent
    decoder = latent * width + width + hidden + width * pixels + pixels
    return encoder + decoder


def er_memory_size(pixels: int, num_tasks: int, *, latent: int = VAE_LATENT,
                   width: int = VAE_WIDTH, layers: int = VAE_LAYERS) -> int:
    """Examples per task for ER so that all its memories (float32 pixels plus two int64
    labels each) take about the bytes of one float32 VAE."""
    per_example = 4 * pixels + 16
    return max(1, round(4 * vae_parameters(pixels, latent, width, layers) / per_example
                        / num_tasks))


def _references() -> tuple[Reference, ...]:
    out = [Reference(f"{method} ACC, split MNIST, {scenario}-IL", value,
                     VDV + (" (rounded)" if (method, scenario) in ROUNDED else ""),
                     f"{ours}/split-{scenario}/acc")
           for method, (ours, values) in PUBLISHED.items()
           for scenario, value in values.items()]
    out += [Reference("DGR ACC, split MNIST, class-IL", 0.912, HSU,
                      "dgr distill=false/split-class/acc"),
            Reference("offline (joint) ACC, split MNIST, class-IL", 0.975, HSU,
                      "joint/split-class/acc")]
    return tuple(out)


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
    summary = ("deep generative replay (dgr, dgr distill) vs naive, joint, ER with the same "
               "bytes and iCaRL on split MNIST in van de Ven & Tolias' protocol (2000 "
               "iterations per task), beside their table; grids of generated samples")
    strategies = ("naive", "joint", "er", "dgr", "icarl")
    options = {"streams": ["split"], "scenarios": list(SCENARIOS)}
    references = _references()
    protocol_note = (
        "Split MNIST as van de Ven & Tolias 2019 (full 60k/10k MNIST, 5 tasks of 2 digits, "
        "MLP 2x400, Adam lr 0.001, batch 128, 2000 iterations per task, a VAE with 2 hidden "
        "layers of 400 and a 100-d code trained as long as the solver, replay weighted "
        "1 - 1/k, distillation at T = 2, iCaRL with 2000 exemplars, the solver's Adam kept "
        "across tasks), but: DGR's generator gets a fresh Adam at each task (theirs keeps "
        "one over all tasks); batches are drawn "
        "pass after pass with the last batch of a pass smaller (theirs drop it); the loss "
        "on the current task and on replays is over all 10 outputs in class-IL (theirs over "
        "the classes seen so far); in task-IL a replayed input is labelled by one past "
        "task's head drawn at random (theirs: by every past head, losses averaged); iCaRL's "
        "targets for the old classes are sigmoid(old logits) as Rebuffi et al. (their code "
        "divides the old logits by T = 2 there) and its binary cross-entropy is summed over "
        "classes (theirs: averaged); the distillation loss sums over classes (the authors' code of "
        "April 2019 averaged it over classes as well, a scale changed in May 2019); no "
        "number is quoted for the permuted stream (options.streams) or ER. Hsu et al.'s "
        "DGR trained 4 epochs per task with their own settings.")

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"source": "mnist", "num_tasks": 5},
            "model": {"name": "mlp", "hidden": [400, 400]},
            "train": {"steps_per_task": 2000, "batch_size": 128, "optimizer": "adam",
                      "lr": 0.001, "keep_optimizer": True},
            "strategies": {"dgr": {"latent": VAE_LATENT, "width": VAE_WIDTH,
                                   "layers": VAE_LAYERS, "temperature": 2.0},
                           "icarl": {"memory_size": 2000}},
            "options": dict(self.options),
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        # The embedded 8x8 digits, a tenth of the steps and a narrower VAE: seconds per run.
        return {"stream": {"source": "digits", "train_per_task": None},
                "model": {"hidden": [100, 100]},
                "train": {"steps_per_task": 100},
                "strategies": {"dgr": {"width": 100, "latent": 32}}}

    def stream_variants(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        options = config.get("options", {})
        names = options.get("streams", self.options["streams"])
        scenarios = options.get("scenarios", self.options["scenarios"])
        base = {k: v for k, v in config.get("stream", {}).items()
                if k not in ("name", "scenario")}
        dgr = config.get("strategies", {}).get("dgr") or {}
        source = str(base.get("source"))
        self._budget = er_memory_size(
            PIXELS.get(source, 784), int(base.get("num_tasks", 5)),
            latent=int(dgr.get("latent", VAE_LATENT)), width=int(dgr.get("width", VAE_WIDTH)),
            layers=int(dgr.get("layers", VAE_LAYERS)))
        out = []
        for name in [names] if isinstance(names, str) else names:
            if name == "split":
                out += [{"name": "split", "classes_per_task": 2, **base, "scenario": s}
                        for s in ([scenarios] if isinstance(scenarios, str) else scenarios)]
            else:  # as many training images per task as a split task has
                per_task = TRAIN_IMAGES.get(source, 0) // int(base.get("num_tasks", 5))
                out.append({"name": name, **({"train_per_task": per_task} if per_task else {}),
                            **base})
        return out

    def check_options(self, options: dict[str, Any]) -> list[str]:
        problems = []
        names = options.get("streams")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or any(
                n not in ("split", "permuted", "rotated") for n in names):
            problems.append(f"options.streams={names!r} must list streams of split, permuted, "
                            "rotated")
        scenarios = options.get("scenarios")
        scenarios = [scenarios] if isinstance(scenarios, str) else scenarios
        if not isinstance(scenarios, list) or not scenarios or any(
                s not in SCENARIOS for s in scenarios):
            problems.append(f"options.scenarios={scenarios!r} must list scenarios of "
                            f"{', '.join(SCENARIOS)} (those of the split stream)")
        return problems

    def runs_on(self, strategy: str, stream: dict[str, Any]) -> bool:
        # A method defined for some scenarios only (iCaRL: class-IL) runs where it can.
        from lifelong.strategies import STRATEGIES

        return stream.get("scenario") in STRATEGIES.get(strategy).card.scenarios

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
        """"split-class", "split-task", "split-domain", or the stream's name (permuted)."""
        stream = o.config["stream"]
        name = str(stream["name"])
        return f"{name}-{stream['scenario']}" if name == "split" else name

    @staticmethod
    def _method(o: Outcome) -> str:
        """The run's label, but DGR always with its `distill` value (also when one variant
        was chosen with --set strategies.dgr.distill=..., where the label is plain "dgr"),
        so it meets its published row."""
        if o.strategy == "dgr" and o.label == "dgr":
            return f"dgr distill={str(bool(o.config['strategy'].get('distill'))).lower()}"
        return o.label

    def ours(self, outcomes: Sequence[Outcome]) -> dict[str, float]:
        return mean_acc(outcomes, lambda o: f"{self._method(o)}/{self._kind(o)}")

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        rows: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
        for o in outcomes:
            rows[self._kind(o), self._method(o)].append(o)
        seeds = len({o.seed for o in outcomes})
        published = {(f"split-{scenario}", ours): value
                     for ours, values in PUBLISHED.values() for scenario, value in values.items()}
        lines = [f"{'stream':12s} {'method':18s} {'ACC':>6s} {'± std' if seeds > 1 else '':>6s} "
                 f"{'BWT':>7s} {'kept MB':>8s} {'train s':>8s} {'generator s':>11s} "
                 f"{'vdV 2019':>8s}"]
        series: dict[str, dict[str, float]] = defaultdict(dict)
        for (kind, label), runs in rows.items():
            m = [summary(o.result.matrix) for o in runs]
            kept = fmean(o.result.costs[-1].state_bytes - _model_bytes(o) for o in runs) / 2 ** 20
            train = fmean(sum(c.train_seconds for c in o.result.costs) for o in runs)
            gen = [sum(d.get("generator_seconds", 0.0) for d in o.result.diagnostics)
                   for o in runs]
            accs = [x["acc"] for x in m]
            acc = fmean(accs)
            spread = f"{stdev(accs):.3f}" if len(accs) > 1 else ""  # sample std over seeds
            theirs = published.get((kind, label))
            series[label][kind] = acc
            lines.append(f"{kind:12s} {label:18s} {acc:6.3f} {spread:>6s} "
                         f"{fmean(x['bwt'] for x in m):+7.3f} {kept:8.2f} {train:8.1f} "
                         f"{(f'{fmean(gen):.1f}' if any(gen) else '-'):>11s} "
                         f"{(f'{theirs:.4f}' if theirs is not None else '-'):>8s}")
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
