"""`mas`: Memory Aware Synapses — importance from how strongly each weight moves the network's
output, measured without labels.

Owns the MAS importance estimate. The penalty lives in `_penalty.py`.
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Task, TensorData
from lifelong.errors import ConfigError
from lifelong.quadratic import Params, Step
from lifelong.strategies import STRATEGIES
from lifelong.strategies._penalty import (
    NORMALIZE_DEPARTURE,
    PROXIMAL_DEPARTURE,
    QuadraticAnchor,
)
from lifelong.strategies._per_sample import Method, per_sample_gradient_mean


@STRATEGIES.register("mas")
class MAS(QuadraticAnchor):
    """Memory Aware Synapses (Aljundi et al. 2018, ECCV, Eqs. 2–4).

    Ω_ij = (1/N) Σ_n |∂ ‖F(x_n; θ)‖²₂ / ∂θ_ij| (Eq. 4: the gradient of the squared L2 norm of
    the output — here the logits, of the task's own head in a multi-head model), averaged over
    per-sample gradients. The labels are never read, so MAS could even use unlabelled data.
    Importances add up over tasks and the anchor is the latest θ*; the penalty is
    λ · Σ_ij Ω_ij (θ_ij − θ*_ij)² (Eq. 3, no ½).

    Args:
        strength: λ, relative to the mean Ω when `normalize` is on (the default). Aljundi et
            al. use λ = 1 on their object-recognition sequences in the absolute form; there Ω
            adds up over tasks and, from the logits' squared norm, has a size set by the
            network's outputs, so that value does not carry over. The default was chosen by
            `lifelong run strength-sweep` (see `ewc.EWC`'s `strength`; the table is in the
            README).
        step: ``"auto"`` (the default): the proximal step with plain SGD, the paper's gradient
            step with Adam or any other optimizer; or ``"proximal"`` or ``"gradient"`` always
            (same objective; see `_penalty.py`).
        normalize: divide each task's Ω by its mean over all weights before it is added (the
            default; a declared departure); ``false`` is Eq. 3 as written.
        stiffness_cap: the earlier per-weight cap (off; see `_penalty.py`).
        importance_samples: training examples (a seeded random subset) Ω is averaged over;
            None = all of them.
    """

    name = "mas"
    card = replace(QuadraticAnchor.card, departures=(PROXIMAL_DEPARTURE, NORMALIZE_DEPARTURE))
    factor = 1.0
    online = True
    version = 2  # v1: strength was the absolute λ (normalize did not exist)

    def __init__(self, model: nn.Module, *, strength: float = 0.01,
                 importance_samples: int | None = 1000,
                 step: Step = "auto", stiffness_cap: bool = False,
                 normalize: bool = True) -> None:
        super().__init__(model, strength=strength, step=step, stiffness_cap=stiffness_cap,
                         normalize=normalize)
        problems = checks.count("strategy 'mas'", "importance_samples", importance_samples,
                                none="all training examples")
        if problems:
            raise ConfigError(problems)
        self.importance_samples = importance_samples

    def importance(self, task: Task) -> Params:
        data = self.examples(task, self.importance_samples, "importance-subset")
        return output_sensitivity(self.model, data)


def _squared_norm(logits: Tensor, y: Tensor) -> Tensor:
    return logits.square().sum(1)  # the label `y` is deliberately unused


def output_sensitivity(model: nn.Module, data: TensorData, method: Method = "auto") -> Params:
    """Ω = (1/N) Σ_n |∂ ‖f(x_n)‖² / ∂θ| over the rows of `data` (labels ignored; see
    `per_sample_gradient_mean` for `method`)."""
    return per_sample_gradient_mean(model, data, _squared_norm, "abs", method=method)
