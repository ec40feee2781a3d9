"""Figures with matplotlib (Agg backend, no screen), saved atomically as PNG.

Owns the shared figure helpers: saving, the accuracy-matrix heatmap, a palette, grouped bars
and learning curves. Experiment-specific figures live in their experiment module and use these
helpers.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lifelong.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lifelong.callbacks import CurvePoint


# How the EWC paper's three methods are drawn in every figure that compares them.
STRATEGY_STYLE = {"naive": ("SGD (naive)", "tab:blue"), "l2": ("L2", "tab:green"),
                  "ewc": ("EWC", "tab:red")}


def new_figure(ncols: int = 1, *, width: float = 5.0, height: float = 4.0,
               nrows: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save(fig: Figure, path: Path) -> Path:
    """Save `fig` as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def matrix_heatmap(matrix: Sequence[Sequence[float]], title: str, path: Path) -> Path:
    """R as a heatmap: rows init, after 1..T; columns tasks 1..T; values printed."""
    # Wide enough for the colorbar and a wrapped title even with two tasks; smaller cells
    # (and no printed values) for long streams.
    T = len(matrix[0])
    cell = 0.9 if T <= 12 else 0.45
    width = max(4.2, 1.6 + cell * T)
    fig, (ax,) = new_figure(width=width, height=1.4 + cell * 0.66 * len(matrix))
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(T), [f"task {j + 1}" for j in range(T)])
    ax.set_yticks(range(T + 1), ["init"] + [f"after {i}" for i in range(1, T + 1)])
    if T <= 12:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center",
                        color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_title(textwrap.fill(title, width=int(width * 7)), fontsize=10)
    fig.colorbar(im, ax=ax, label="test accuracy")
    return save(fig, path)


def palette(n: int) -> list[tuple[float, float, float, float]]:
    """`n` colours, no two alike up to 20: tab10's for ten or fewer (matplotlib's default
    cycle), tab20's past ten, where the default cycle would repeat."""
    import matplotlib

    listed = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]  # listed(i): its i-th
    return [listed(i % listed.N) for i in range(n)]


def grouped_bars(ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float]],
                 *, errors: Mapping[str, Sequence[float]] | None = None,
                 ylabel: str = "accuracy") -> None:
    """Bars of each series side by side within each group, with their values on top, each
    series in its own colour (`palette`)."""
    n = len(series)
    width = 0.8 / max(n, 1)
    colours = palette(n)
    for k, (name, values) in enumerate(series.items()):
        xs = [g + (k - (n - 1) / 2) * width for g in range(len(groups))]
        err = errors.get(name) if errors else None
        bars = ax.bar(xs, values, width, label=name, yerr=err, capsize=3 if err else 0,
                      color=colours[k])
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def learning_curves(ax: Axes, curve: Sequence[CurvePoint], task: int, label: str,
                    boundaries: Sequence[int] = ()) -> None:
    """Accuracy on `task` against the global step, with task boundaries as dotted lines."""
    ax.plot([p.step for p in curve], [p.accuracies[task] for p in curve], label=label)
    for b in boundaries:
        ax.axvline(b, color="grey", linestyle=":", linewidth=0.8)
