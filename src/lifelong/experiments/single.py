"""`single`: one strategy on one stream, configured entirely by `--set`.

    lifelong run single --set stream.name=permuted --set stream.source=digits \
        --set strategy.name=naive

`--strategies a,b` runs several strategies on the same stream. The report is each run's
accuracy matrix and metrics (printed by the CLI) and its heatmap.
"""

from __future__ import annotations

from typing import Any

from lifelong.experiments import EXPERIMENTS
from lifelong.experiments.base import Experiment


@EXPERIMENTS.register("single")
class Single(Experiment):
    name = "single"
    summary = "one strategy on one stream, everything set with --set"
    protocol_note = "No published numbers: this is the building block for your own runs."

    def defaults(self) -> dict[str, Any]:
        return {
            "stream": {"name": "permuted", "source": "digits", "num_tasks": 5},
            "model": {"name": "mlp", "hidden": [100, 100]},
            "strategy": {},
            "train": {"epochs": 3, "batch_size": 32, "optimizer": "sgd", "lr": 0.1},
            "seed": 0,
        }

    def quick(self) -> dict[str, Any]:
        return {"stream": {"num_tasks": 3}, "train": {"epochs": 1}}
