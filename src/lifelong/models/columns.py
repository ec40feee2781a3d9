"""Progressive columns (Rusu et al. 2016): one fully connected column per task, each layer of a
new column also fed by the layer below in every earlier column.

Owns `Columns`: the columns and their lateral connections, `add_column`, and the record of its
growth saved with its state (a grown model loads into a freshly built one). Does not own
freezing or which column trains (the `pnn` strategy).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.errors import StateError
from lifelong.models.heads import MultiHead
from lifelong.models.mlp import MLP
from lifelong.models.net2net import blank_linear


def _linear(n_in: int, n_out: int, generator: torch.Generator, *, bias: bool = True
            ) -> nn.Linear:
    """`nn.Linear` with its default initialisation (uniform ±1/√n_in) drawn from
    `generator`, so a column added mid-run is seeded by its task, not the global RNG."""
    layer = blank_linear(n_in, n_out, bias=bias)  # no draw from the global RNG
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_((2 * torch.rand(p.shape, generator=generator) - 1) * bound)
    return layer


class Column(nn.Module):
    """One task's column: hidden layers `layers[i]`, lateral maps `laterals[i - 1][j]` from
    layer i − 1 of earlier column j into layer i (i ≥ 1, and into the head), and a head."""

    def __init__(self, widths: list[int], n_in: int, n_out: int, earlier: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        sizes = [n_in, *widths]
        self.layers = nn.ModuleList(_linear(a, b, generator) for a, b in zip(sizes, widths,
                                                                              strict=False))
        self.head = _linear(widths[-1], n_out, generator)
        # Into hidden layer i ≥ 1 and into the head: one map from each earlier column.
        self.laterals = nn.ModuleList(
            nn.ModuleList(_linear(sizes[i], out, generator, bias=False)
                          for _ in range(earlier))
            for i, out in enumerate([*widths[1:], n_out], start=1))

    def forward(self, x: Tensor, below: list[list[Tensor]]) -> tuple[Tensor, list[Tensor]]:
        """Logits and this column's hidden activations, given the earlier columns' hidden
        activations `below[j][i]` (column j, layer i)."""
        acts: list[Tensor] = []
        h = x
        for i, layer in enumerate(self.layers):
            z = layer(h)
            if i:
                for j, lateral in enumerate(self._laterals(i - 1)):
                    z = z + lateral(below[j][i - 1])
            h = torch.relu(z)
            acts.append(h)
        out = self.head(h)
        for j, lateral in enumerate(self._laterals(len(self.layers) - 1)):
            out = out + lateral(below[j][-1])
        return out, acts

    def _laterals(self, k: int) -> list[nn.Module]:
        group = self.laterals[k]
        assert isinstance(group, nn.ModuleList)
        return list(group)


class Columns(nn.Module):
    """Progressive Neural Network (Rusu et al. 2016, arXiv:1606.04671, Eq. 1, with linear
    lateral connections): column k computes h_i^(k) = ReLU(W_i^(k) h_{i-1}^(k) +
    Σ_{j<k} U_i^(k:j) h_{i-1}^(j)). Task label t picks column t; computing it runs columns
    0..t, so the outputs of a column never depend on columns added after it.

    Args:
        n_in: size of one flattened example.
        num_outputs: outputs of each column's head.
        hidden: widths of each column's hidden layers.
    """

    def __init__(self, n_in: int, num_outputs: int, *,
                 hidden: list[int] | tuple[int, ...] = (100, 100)) -> None:
        super().__init__()
        self.n_in, self.num_outputs = n_in, num_outputs
        self.hidden = [int(h) for h in hidden]
        self.options = {"n_in": int(n_in), "num_outputs": int(num_outputs),
                        "hidden": list(self.hidden)}
        self.columns = nn.ModuleList()
        self.growth: list[dict[str, Any]] = []

    @classmethod
    def from_mlp(cls, mlp: MLP) -> Columns:
        """Columns shaped like `mlp` (a `lifelong.models.mlp.MLP`), whose first column is
        that MLP: its hidden layers and its first head (dropout is not carried over)."""
        linears = [m for m in mlp.features if isinstance(m, nn.Linear)]
        head = mlp.head
        out = cls(linears[0].in_features, int(head.num_outputs),
                  hidden=[m.out_features for m in linears])
        column = out.add_column(torch.Generator().manual_seed(0))
        with torch.no_grad():
            for mine, theirs in zip(column.layers, linears, strict=True):
                assert isinstance(mine, nn.Linear)
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
            weight = head.weight if isinstance(head, MultiHead) else head.weights[0]
            bias = head.bias if isinstance(head, MultiHead) else head.biases[0]
            column.head.weight.copy_(weight[:out.num_outputs])
            column.head.bias.copy_(bias[:out.num_outputs])
        return out.to(linears[0].weight.device)

    @property
    def num_columns(self) -> int:
        return len(self.columns)

    def add_column(self, generator: torch.Generator) -> Column:
        """A new column with laterals from every existing one, initialised from `generator`
        (a CPU generator; never the global RNG) and placed where the model is."""
        device = next(self.parameters()).device if len(self.columns) else torch.device("cpu")
        column = Column(self.hidden, self.n_in, self.num_outputs,
                        len(self.columns), generator).to(device)
        self.columns.append(column)
        self.growth.append({"op": "column"})
        return column

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        if t is None:
            raise ValueError("progressive columns need the task label to pick a column; task "
                             "labels are given only in the task-incremental scenario")
        flat = x.flatten(1)
        last = int(t) if isinstance(t, int) else int(t.max())
        if last >= len(self.columns):
            raise ValueError(f"task label {last} has no column (the model has "
                             f"{len(self.columns)}); add one first")
        below: list[list[Tensor]] = []
        outs: list[Tensor] = []
        for column in self.columns[:last + 1]:
            out, acts = column(flat, below)
            below.append(acts)
            outs.append(out)
        if isinstance(t, int):
            return outs[t]
        stacked = torch.stack(outs, 1)
        return stacked[torch.arange(len(x), device=x.device), t]

    def get_extra_state(self) -> dict[str, Any]:
        return {"model": "columns", "options": dict(self.options),
                "growth": [dict(op) for op in self.growth]}

    def set_extra_state(self, state: Any) -> None:
        if state.get("options") != self.options:
            raise StateError(f"saved columns were built with {state.get('options')}, these "
                             f"with {self.options}; build the model with the saved options")
        saved = list(state.get("growth", []))
        if len(saved) < len(self.growth):
            raise StateError(f"saved model has {len(saved)} columns, this one "
                             f"{len(self.growth)}; load it into a freshly built model")
        for _ in saved[len(self.growth):]:  # shapes only: the weights are loaded next
            self.add_column(torch.Generator().manual_seed(0))
