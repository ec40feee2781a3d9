"""Evaluation: the accuracy of a strategy on every task of a stream.

Owns `accuracies` (one row of the accuracy matrix R). The evaluator decides what the model may
see: task labels reach `Strategy.predict` only in the task-incremental scenario, so no method
can use them where the scenario forbids it. Does not own the metrics computed from R
(`lifelong.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lifelong.data.task import Stream, Task
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
    device = strategy.device
    correct = []
    sizes = []
    try:
        with torch.inference_mode():
            for task in tasks if tasks is not None else stream.tasks:
                data = task.test
                hits = torch.zeros((), dtype=torch.int64, device=device)
                for start in range(0, len(data), batch_size):
                    x = data.x[start:start + batch_size].to(device, non_blocking=True)
                    y = data.y[start:start + batch_size].to(device, non_blocking=True)
                    t = (data.t[start:start + batch_size].to(device)
                         if stream.scenario == "task" else None)
                    hits += (strategy.predict(x, t).argmax(1) == y).sum()
                correct.append(hits)
                sizes.append(len(data))
    finally:
        model.train(was_training)
    counts = torch.stack(correct).tolist() if correct else []
    return [c / n if n else 0.0 for c, n in zip(counts, sizes, strict=True)]
