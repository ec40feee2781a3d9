"""`ewc-surface`: the lecture's two-parameter picture of why EWC works.

A logistic model with exactly two weights learns task 1, then task 2 (`planar` stream: each
task's loss is steep along one direction of the weight plane and nearly flat across it). From
the task-1 optimum, task 2 is trained with SGD (`naive`), L2 and EWC; the report draws the
contours of the task-1 and task-2 losses with the three trajectories, and the diagonal Fisher of
task 1 as an ellipse. SGD walks straight to task 2's optimum and leaves task 1's valley; L2 is
held near the old weights in every direction and never reaches task 2's valley; EWC moves along
the long axis of the Fisher ellipse — the direction task 1 does not care about — until it is in
both valleys.

Owns the trajectory recorder (a callback reading the two weights after each step), the figure
and the table (final weights, losses and accuracies, and how far each method moved along and
across the Fisher's long axis). Why these defaults: task 1 along 0°, task 2 along 135°, so task
2's gradient pulls the first weight down — where task 1's loss is steep — while a move of the
second weight alone reaches task 2's valley. SGD lr 0.5 for 10 epochs reaches the task-1 optimum
before task 2 starts. EWC λ = 10 and L2 λ = 0.3: with these, L2 barely moves towards task 2
(its accuracy stays far below chance) while EWC learns it; a stronger λ only freezes L2 more.
EWC runs at its library defaults otherwise (exact Fisher, proximal step: at this λ the step
follows the same path as the gradient step). L2 is meant to fail task 2 here, so its run gets
the "learned nothing" warning. Measured (seed 0; 2 s): accuracies on tasks 1 / 2 after task 2 —
SGD 0.18 / 0.84, L2 0.84 / 0.19, EWC 0.82 / 0.82; during task 2 EWC moved 5.0 along the
Fisher ellipse's long axis and 0.27 across it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lifelong.callbacks import Callback, Recorder, RunStart, StepEnd, TaskEnd
from lifelong.data.builders import build_stream
from lifelong.data.task import Stream, image_inputs
from lifelong.errors import ConfigError
from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment, Outcome
from lifelong.plots import STRATEGY_STYLE, new_figure, save
from lifelong.strategies._penalty import QuadraticAnchor
from lifelong.strategies.base import Strategy


class Path2D(Recorder):
    """Records the model's two weights at the start and after every step, and the anchor and
    importance a quadratic-penalty strategy holds after task 1. Only reads. Its artifact:
    ``{"points": [[task, w1, w2], ...], "importance": [F1, F2] | None, "anchor": ...}``."""

    key = "path2d"

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.points: list[tuple[int, float, float]] = []  # (task index, w1, w2)
        self.importance: tuple[float, float] | None = None
        self.anchor: tuple[float, float] | None = None

    def _weights(self) -> tuple[float, float]:
        flat = torch.cat([p.detach().flatten() for p in self.strategy.model.parameters()])
        if flat.numel() != 2:
            raise ConfigError(f"ewc-surface needs a model with exactly 2 parameters, this one "
                              f"has {flat.numel()}; use model.name=logistic on a 2-D stream")
        w1, w2 = flat.tolist()
        return float(w1), float(w2)

    def on_run_start(self, event: RunStart) -> None:
        self.points.append((-1, *self._weights()))

    def on_step_end(self, event: StepEnd) -> None:
        self.points.append((event.task_index, *self._weights()))

    def on_task_end(self, event: TaskEnd) -> None:
        s = self.strategy
        if event.task_index == 0 and isinstance(s, QuadraticAnchor) and s.state.importances:
            omega = torch.cat([v.flatten() for v in s.state.importances[0].values()])
            anchor = torch.cat([v.flatten() for v in s.state.anchors[0].values()])
            if omega.numel() == 2:
                self.importance = (float(omega[0]), float(omega[1]))
                self.anchor = (float(anchor[0]), float(anchor[1]))

    def artifact(self) -> dict[str, Any]:
        return {"points": [list(p) for p in self.points],
                "importance": list(self.importance) if self.importance else None,
                "anchor": list(self.anchor) if self.anchor else None}

    def restore(self, value: Any) -> None:
        self.points = [(int(t), float(a), float(b)) for t, a, b in value["points"]]
        imp, anchor = value["importance"], value["anchor"]
        self.importance = (float(imp[0]), float(imp[1])) if imp else None
        self.anchor = (float(anchor[0]), float(anchor[1])) if anchor else None

    @classmethod
    def of(cls, value: Any) -> Path2D:
        """A recorder holding a stored artifact (to draw a stored run)."""
        path = cls.__new__(cls)
        path.restore(value)
        return path


def _grid_losses(stream: Stream, w1: torch.Tensor, w2: torch.Tensor) -> list[torch.Tensor]:
    """Each task's mean training loss at every point of the grid (logistic loss, as trained)."""
    grid = torch.stack([w1.flatten(), w2.flatten()], 1)  # (G, 2)
    out = []
    for task in stream.tasks:
        x = image_inputs(task.train.x, "experiment 'ewc-surface'").flatten(1)
        y = task.train.y.to(torch.float32)
        z = x @ grid.T  # (N, G)
        loss = (F.softplus(z) - y[:, None] * z).mean(0)
        out.append(loss.view_as(w1))
    return out


def _loss_at(stream: Stream, w: tuple[float, float]) -> list[float]:
    t = torch.tensor([[w[0]]]), torch.tensor([[w[1]]])
    return [float(v) for v in _grid_losses(stream, *t)]


@EXPERIMENTS.register("ewc-surface")
class EWCSurface(Experiment):
    name = "ewc-surface"
    summary = ("two weights, two tasks: loss contours with the SGD, L2 and EWC paths from the "
               "task-1 optimum, and task 1's Fisher as an ellipse")
    strategies = ("naive", "l2", "ewc")
    protocol_note = ("A teaching picture (the lecture's; Kirkpatrick et al. 2017, Fig. 1 draw "
                     "it as a schematic), not a published measurement: there are no reference "
                     "numbers. The tasks are synthetic 2-D logistic-regression problems.")

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"name": "planar", "angles": [0.0, 135.0], "train_per_task": 2000,
                       "test_per_task": 2000},
            "model": {"name": "logistic"},
            "strategies": {"naive": {}, "l2": {"strength": 0.3},
                           "ewc": {"strength": 10.0, "fisher_samples": None,
                                   "normalize": False}},
            "train": {"epochs": 10, "batch_size": 32, "optimizer": "sgd", "lr": 0.5},
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        return {"stream": {"train_per_task": 1000, "test_per_task": 1000},
                "train": {"epochs": 10}}

    def callbacks(self, run_id: str, strategy: Strategy) -> list[Callback]:
        return [Path2D(strategy)]

    def report(self, outcomes: Sequence[Outcome], out_dir: Path,
               options: dict[str, Any]) -> tuple[str, list[Path]]:
        first = outcomes[0]
        cfg = dict(first.config["stream"])
        stream = build_stream(cfg.pop("name"), seed=first.seed, **cfg)
        paths = {o.strategy: Path2D.of(o.result.artifacts["path2d"]) for o in outcomes
                 if "path2d" in o.result.artifacts and o.seed == first.seed}
        # The ellipse is EWC's Fisher (L2's Ω = 1 would draw a circle).
        fisher = paths.get("ewc") if "ewc" in paths and paths["ewc"].importance else None
        lines = [f"{'':12s} {'w1':>7s} {'w2':>7s} {'loss 1':>7s} {'loss 2':>7s} "
                 f"{'acc 1':>6s} {'acc 2':>6s} {'moved along':>11s} {'moved across':>12s}"]
        for o in outcomes:
            if o.seed != first.seed or o.strategy not in paths:
                continue
            pts = paths[o.strategy].points
            end = pts[-1][1:]
            start = next((p[1:] for p in reversed(pts) if p[0] == 0), pts[0][1:])
            along, across = _moves(start, end, fisher.importance if fisher else None)
            losses = _loss_at(stream, end)
            R = o.result.matrix[-1]
            lines.append(f"{o.strategy:12s} {end[0]:7.2f} {end[1]:7.2f} {losses[0]:7.3f} "
                         f"{losses[1]:7.3f} {R[0]:6.3f} {R[-1]:6.3f} {along:11.2f} "
                         f"{across:12.2f}")
        lines.append("moved along / across: distance travelled during task 2 along the long "
                     "(flat for task 1) and the short axis of task 1's Fisher ellipse")
        return "\n".join(lines), [self._figure(stream, paths, fisher, out_dir)]

    def _figure(self, stream: Stream, paths: dict[str, Path2D], fisher: Path2D | None,
                out_dir: Path) -> Path:
        from matplotlib.patches import Ellipse

        xs = [p[1] for path in paths.values() for p in path.points] or [0.0]
        ys = [p[2] for path in paths.values() for p in path.points] or [0.0]
        pad = 0.25 * max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
        lo1, hi1, lo2, hi2 = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
        w1, w2 = torch.meshgrid(torch.linspace(lo1, hi1, 160), torch.linspace(lo2, hi2, 160),
                                indexing="xy")
        losses = _grid_losses(stream, w1, w2)
        fig, axes = new_figure(len(losses), width=5.4, height=5.0)
        for k, (ax, loss) in enumerate(zip(axes, losses, strict=True)):
            low, high = float(loss.min()), float(loss.max())
            # Dense near the minimum, where the valleys are: low + (high − low) · s², s ∈ [0, 1].
            levels = [low + (high - low) * s * s for s in torch.linspace(0, 1, 16).tolist()]
            cs = ax.contourf(w1, w2, loss, levels=levels,
                             cmap="Blues_r" if k == 0 else "Oranges_r", alpha=0.85)
            fig.colorbar(cs, ax=ax, label=f"task {k + 1} loss", shrink=0.8)
            other = losses[1 - k] if len(losses) == 2 else None
            if other is not None:  # the other task's valley: within 0.1 nats of its minimum
                edge = float(other.min()) + 0.1
                ax.contourf(w1, w2, other, levels=[float(other.min()), edge], colors="none",
                            hatches=["///"])
                ax.contour(w1, w2, other, levels=[edge], colors="k", linestyles="--",
                           linewidths=0.8)
            for name, path in paths.items():
                label, color = STRATEGY_STYLE.get(name, (name, None))
                task1 = [(a, b) for t, a, b in path.points if t <= 0]
                task2 = [(a, b) for t, a, b in path.points if t >= 1]
                if task1 and name == next(iter(paths)):
                    ax.plot(*zip(*task1, strict=True), color="grey", linewidth=1.0,
                            label="task 1 training (shared)")
                if task2:
                    ax.plot(*zip(*[task1[-1], *task2], strict=True), color=color,
                            linewidth=2.0, label=f"{label} on task 2")
                    ax.plot(*task2[-1], marker="o", color=color, markersize=6)
            if fisher is not None and fisher.importance and fisher.anchor:
                ax.plot(*fisher.anchor, marker="*", color="k", markersize=12,
                        label="task-1 optimum θ*")
                # A contour {Δθ : Σ F_i Δθ_i² = c} of the EWC penalty: its semi-axes go as
                # 1/√F_i, long along the weight task 1 cares little about. c is chosen so the
                # long semi-axis spans 40 % of the plot.
                inv = [1 / math.sqrt(max(f, 1e-12)) for f in fisher.importance]
                scale = 0.4 * min((hi1 - lo1) / inv[0], (hi2 - lo2) / inv[1])
                ax.add_patch(Ellipse(fisher.anchor, 2 * scale * inv[0], 2 * scale * inv[1],
                                     fill=False, edgecolor="k", linewidth=1.6,
                                     label="EWC penalty contour (task-1 Fisher)"))
            ax.set_xlim(lo1, hi1)
            ax.set_ylim(lo2, hi2)
            ax.set_aspect("equal")
            ax.set_xlabel("weight w1")
            ax.set_ylabel("weight w2")
            ax.set_title(f"task {k + 1} loss; hatched: task {2 - k}'s valley" if other is not None
                         else f"task {k + 1} loss")
            if k == 0:
                ax.legend(loc="lower left", fontsize=7)
        return save(fig, out_dir / "ewc_surface.png")


def _moves(start: tuple[float, ...], end: tuple[float, ...],
           importance: tuple[float, float] | None) -> tuple[float, float]:
    """|Δ| along the weight with the smaller Fisher (the flat direction of task 1) and along
    the other one (plain w2 and w1 when there is no Fisher)."""
    d = [abs(e - s) for s, e in zip(start, end, strict=True)]
    flat = 1 if importance is None or importance[1] <= importance[0] else 0
    return d[flat], d[1 - flat]
