"""The affinity half of `task-order`'s report: measure the 5 tasks' affinity with the study's
first strategy, model and training, draw it, and rank each order chooser's pick among the
orders the study ran."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes

from lifelong.curriculum import CHOOSERS, DEPARTURES, choose, measured_affinity
from lifelong.experiments.base import Outcome
from lifelong.metrics import summary
from lifelong.plots import new_figure, save


def affinity_and_choices(outcomes: Sequence[Outcome], out_dir: Path, options: dict[str, Any],
                         axes: list[Axes]) -> tuple[list[str], list[Path]]:
    runs = [o for o in outcomes if o.config["stream"]["name"] != "noisy"]
    if not runs:
        return [], []
    first = runs[0]
    mine = [o for o in runs if o.label == first.label]
    stream, affinity = measured_affinity(first.config, first.strategy, first.seed,
                                         budget=int(options.get("budget", 128)))
    names = [k.split("/")[-1] for k in affinity.keys]
    lines = [f"task affinity ({first.label}, budget {affinity.budget} examples x "
             f"{affinity.budget_epochs} epochs; accuracies on each task's validation split, "
             "never its test set): transfer[i][j] = accuracy on j after the budget, starting "
             "from i's model, minus from scratch",
             "from / to".rjust(10) + " " + " ".join(f"{n:>7s}" for n in names)]
    for n, row in zip(names, affinity.transfer, strict=True):
        lines.append(f"{n:>10s} " + " ".join(f"{v:+7.3f}" for v in row))
    lines.append("forgetting[i][j] = accuracy on i lost after the budget on j:")
    for n, row in zip(names, affinity.forgetting, strict=True):
        lines.append(f"{n:>10s} " + " ".join(f"{v:+7.3f}" for v in row))
    lines.append("transfer ranked per target (greedy-affinity sums these): the share of the "
                 "other sources that help j less than i does:")
    for n, row in zip(names, affinity.normalised, strict=True):
        lines.append(f"{n:>10s} " + " ".join(f"{v:7.2f}" for v in row))
    lines.append("where this departs from Taskonomy (Zamir et al. 2018):")
    lines += [f"  - {d}" for d in DEPARTURES]
    heat = _heatmap(affinity.transfer, names, f"transfer from task i (row) to task j "
                    f"(column), {first.label}, budget {affinity.budget}", out_dir / "affinity.png")
    acc = {tuple(o.result.tasks): summary(o.result.matrix)["acc"] for o in mine}
    ranked = sorted(acc.values(), reverse=True)
    lines.append(f"order choosers ({first.label}; rank among the {len(acc)} orders run, by ACC):")
    for name in CHOOSERS:
        choice = choose(name, stream, affinity=affinity, seed=first.seed)
        keys = tuple(affinity.keys[i] for i in choice.order)
        if keys in acc:
            rank = ranked.index(acc[keys]) + 1
            axes[0].scatter([1], [acc[keys]], marker="x", zorder=3)
            axes[0].annotate(name, (1, acc[keys]), fontsize=7, xytext=(5, 0),
                             textcoords="offset points")
            where = f"ACC {acc[keys]:.3f}, rank {rank} of {len(acc)}"
        else:
            where = "not among the orders run (run all orders: options.orders=0)"
        lines.append(f"  {name:16s} {list(choice.order)}: {where} — {choice.reason}")
    return lines, [heat]


def _heatmap(matrix: Sequence[Sequence[float]], names: list[str], title: str,
             path: Path) -> Path:
    """A T x T affinity matrix, signed (a task can hurt another): a diverging colour scale
    centred on 0, values printed."""
    fig, (ax,) = new_figure(width=1.8 + 0.9 * len(names), height=1.4 + 0.8 * len(names))
    bound = max(abs(v) for row in matrix for v in row) or 1.0
    im = ax.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("to task j")
    ax.set_ylabel("from task i")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy gained over training from scratch")
    return save(fig, path)
