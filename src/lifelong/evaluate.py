"""Evaluation: the accuracy of a strategy on every task of a stream.

Owns `accuracies` (one row of the accuracy matrix R) and `accuracy` (on any examples, e.g. to
decide whether a task was learned). The evaluator decides what the model may
see: task labels reach `Strategy.predict` only in the task-incremental scenario, so no method
can use them where the scenario forbids it. Does not own the metrics computed from R
(`lifelong.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lifelong.data.task import Stream, Task, TensorData
from lifelong.strategies.base import Strategy


def accuracies(
    strategy: Strategy,
    stream: Stream,
    *,
    tasks: Sequence[Task] | None = None,
    batch_size: int = 2048,
) -> list[float]:
    """Test accuracy on each task (all of `stream` by default), in stream order.

    Runs in inference mode with the model in eval mode (restored afterwards); one host sync
    for the whole row.
    """
    model = strategy.model
    was_training = model.training
    model.eval()
    correct = []
    sizes = []
    try:
        with torch.inference_mode():
            for task in tasks if tasks is not None else stream.tasks:
                correct.append(_hits(strategy, task.test, stream.scenario == "task", batch_size))
                sizes.append(len(task.test))
    finally:
        model.train(was_training)
    counts = torch.stack(correct).tolist() if correct else []
    return [c / n if n else 0.0 for c, n in zip(counts, sizes, strict=True)]


def accuracy(strategy: Strategy, data: TensorData, *, task_labels: bool,
             batch_size: int = 2048) -> float:
    """Accuracy of `strategy.predict` on `data` (e.g. a task's training set), with the task
    labels given to `predict` only if `task_labels`; eval mode and inference mode as
    `accuracies`."""
    model = strategy.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            hits = int(_hits(strategy, data, task_labels, batch_size))
    finally:
        model.train(was_training)
    return hits / len(data) if len(data) else 0.0


def _hits(strategy: Strategy, data: TensorData, task_labels: bool, batch_size: int) -> Tensor:
    """Correct predictions on `data`, as a tensor on the model's device (no host sync)."""
    device = strategy.device
    hits = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, len(data), batch_size):
        part = data.slice(start, start + batch_size).to(device, non_blocking=True)
        t = part.t if task_labels else None
        hits += (strategy.predict(part.x, t).argmax(1) == part.y).sum()
    return hits
