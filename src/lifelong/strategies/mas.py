"""`mas`: Memory Aware Synapses — importance from how strongly each weight moves the network's
output, measured without labels.

Owns the MAS importance estimate. The penalty lives in `_penalty.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lifelong.data.task import Task, TensorData
from lifelong.strategies import STRATEGIES
from lifelong.strategies._penalty import (
    Params,
    QuadraticAnchor,
    check_samples,
    per_sample_gradient_mean,
    sample_rows,
)


@STRATEGIES.register("mas")
class MAS(QuadraticAnchor):
    """Memory Aware Synapses (Aljundi et al. 2018, ECCV, Eqs. 2–4).

    Ω_ij = (1/N) Σ_n |∂ ‖F(x_n; θ)‖²₂ / ∂θ_ij| (Eq. 4: the gradient of the squared L2 norm of
    the output — here the logits, of the task's own head in a multi-head model), averaged over
    per-sample gradients. The labels are never read, so MAS could even use unlabelled data.
    Importances add up over tasks and the anchor is the latest θ*; the penalty is
    λ · Σ_ij Ω_ij (θ_ij − θ*_ij)² (Eq. 3, no ½).

    Args:
        strength: λ. Aljundi et al. use λ = 1 for object recognition; the default 1.0 also
            keeps old tasks on our permuted-digits streams.
        importance_samples: training examples (a seeded random subset) Ω is averaged over;
            None = all of them.
    """

    name = "mas"
    factor = 1.0
    online = True

    def __init__(self, model: nn.Module, *, strength: float = 1.0,
                 importance_samples: int | None = 1000) -> None:
        super().__init__(model, strength=strength)
        check_samples(self.name, "importance_samples", importance_samples)
        self.importance_samples = importance_samples

    def importance(self, task: Task) -> Params:
        data = sample_rows(task.train.to(self.device), self.importance_samples,
                           self.generator("importance-subset", task.key))
        return output_sensitivity(self.model, data)


def _squared_norm(logits: Tensor, y: Tensor) -> Tensor:
    return logits.square().sum()  # the label `y` is deliberately unused


def output_sensitivity(model: nn.Module, data: TensorData) -> Params:
    """Ω = (1/N) Σ_n |∂ ‖f(x_n)‖² / ∂θ| over the rows of `data` (labels ignored)."""
    return per_sample_gradient_mean(model, data, _squared_norm, torch.abs)
