"""`pnn`: Progressive Neural Networks — a new column per task, earlier columns frozen, so old
tasks cannot be forgotten.

Owns turning the run's MLP into progressive columns (the MLP is the first column), adding a
column for each new task, freezing the others and training only the task's column. The
columns and their lateral connections are `lifelong.models.columns`'.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from lifelong.data.task import Inputs, Task
from lifelong.errors import ConfigError
from lifelong.models.columns import Columns
from lifelong.models.mlp import MLP
from lifelong.strategies import STRATEGIES
from lifelong.strategies.base import Card, Strategy


@STRATEGIES.register("pnn")
class PNN(Strategy):
    """Progressive Neural Networks (Rusu et al. 2016, arXiv:1606.04671, §2).

    The run's MLP becomes the first column. Before each new task a column of the same shape is
    added, with lateral connections from the layer below in every earlier column (Eq. 1), and
    only that column (with its laterals) trains; earlier columns are frozen, so the outputs
    for earlier tasks stay bit-identical and nothing is forgotten, at the cost of a model that
    grows with every task (quadratically in its laterals). The task label picks the column,
    so PNN needs task-incremental learning.

    A column that has later columns is never trained again: the later columns read its
    activations through their laterals, so training it would silently change every later
    task's outputs. A task whose label has a column with columns after it (a returning task
    label, or a model of task i loaded and trained on an earlier task j < i, as
    `lifelong.curriculum.task_affinity` does) is refused with a `ConfigError`.

    Departures: linear lateral connections (the paper's MLP adapters add a learned scale and
    a dimension-reducing layer before a non-linearity), and no dropout in the columns.
    """

    name = "pnn"
    card = Card(family="expansion", scenarios=frozenset({"task"}), departures=(
        "linear lateral connections (the paper's adapters: a learned scale and a "
        "dimension-reducing projection with a non-linearity)",
        "columns without dropout, whatever model.dropout says"))

    def __init__(self, model: nn.Module) -> None:
        super().__init__(Columns.from_mlp(model) if isinstance(model, MLP) else model)
        self._current = 0

    def columns(self) -> Columns:
        if not isinstance(self.model, Columns):
            raise ConfigError(f"strategy 'pnn' grows an MLP into columns, and the model is a "
                              f"{type(self.model).__name__}; use model.name=mlp")
        return self.model

    def before_task(self, task: Task) -> None:
        cols = self.columns()
        if task.label < cols.num_columns - 1:
            raise ConfigError(
                f"strategy 'pnn': task {task.key} (label {task.label}) already has column "
                f"{task.label}, and columns {task.label + 1}..{cols.num_columns - 1} were added "
                "after it and read it through their lateral connections; training it again "
                "would change every later task's outputs. PNN trains only its newest column: "
                "give the task a new label (a new column), or train it in a fresh PNN")
        while cols.num_columns <= task.label:
            cols.add_column(self.generator("column", cols.num_columns))
        self._current = task.label
        for k, column in enumerate(cols.columns):
            column.requires_grad_(k == task.label)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return iter(self.columns().columns[self._current].parameters())

    def predict(self, x: Inputs, t: Tensor | None) -> Tensor:
        # A task without a column yet (the R matrix's entries above the diagonal, for forward
        # transfer) is answered by the newest column: what the model would say today.
        cols = self.columns()
        if t is not None:
            t = torch.clamp(t, max=cols.num_columns - 1)
        out: Tensor = cols(x, t)
        return out
