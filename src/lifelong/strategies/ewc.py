"""`ewc`: Elastic Weight Consolidation, and online EWC with `online=true`.

Owns the diagonal Fisher estimate. The penalty, its fast evaluation and the bookkeeping of one
term per task (or one decayed term) live in `_penalty.py`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Task, TensorData
from lifelong.errors import ConfigError
from lifelong.strategies import STRATEGIES
from lifelong.strategies._penalty import Params, QuadraticAnchor
from lifelong.strategies._per_sample import Method, per_sample_gradient_mean

Fisher = Literal["sampled", "empirical"]


@STRATEGIES.register("ewc")
class EWC(QuadraticAnchor):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017) or online EWC (Schwarz et al.).

    Kirkpatrick et al. 2017, PNAS 114(13), Eq. 3: L(θ) = L_B(θ) + Σ_i λ/2 · F_i (θ_i − θ*_A,i)²,
    one such term per past task, with F the diagonal of the Fisher information at θ*_A. With
    ``online=True``, online EWC (Schwarz et al. 2018, "Progress & Compress"): a single
    term F̃ ← γ·F̃ + F_new anchored at the latest θ*, so memory and time stay constant however
    many tasks there are.

    The Fisher diagonal is F_i = E_x E_y [(∂ log p_θ(y|x) / ∂θ_i)²], estimated from per-sample
    gradients (`torch.func.vmap` over `grad`, or its exact closed form for linear layers; see
    `_per_sample.py`), never from the square of a batch gradient (which is not the Fisher).

    Args:
        strength: λ. The default 100 keeps task A on `ewc-permuted` (mnist-10k, plain SGD at
            lr 0.1, where the Fisher's largest entries are ~0.3 and its mean ~1e-3). With plain
            SGD a weight's pull is capped at what SGD can follow (`_penalty.py`), so a λ of
            thousands, as used with Adam elsewhere, does not diverge but adds little: most
            important weights are already at the cap. Kirkpatrick et al. tuned λ per experiment.
        fisher: where y comes from. ``"empirical"``: the true labels (the "empirical Fisher",
            the default: deterministic given the examples, and what Avalanche and most code
            does). ``"sampled"``: y drawn from the model's own p_θ(y|x) with this strategy's
            seeded generator — the Fisher's definition; the two differ most on examples the
            model gets confidently wrong.
        fisher_samples: training examples (a seeded random subset) the Fisher is averaged
            over; None = all of them.
        online: keep one decayed term instead of one per task (online EWC).
        decay: γ of online EWC, in (0, 1]; ignored unless `online`.
    """

    name = "ewc"

    def __init__(self, model: nn.Module, *, strength: float = 100.0,
                 fisher: Fisher = "empirical", fisher_samples: int | None = 1000,
                 online: bool = False, decay: float = 1.0,
                 stiffness_cap: bool = True) -> None:
        super().__init__(model, strength=strength, stiffness_cap=stiffness_cap)
        problems = [
            *checks.number("strategy 'ewc'", "decay", decay, low=0.0, high=1.0, low_open=True,
                           hint="γ of online EWC; 1 = plain sum"),
            *checks.count("strategy 'ewc'", "fisher_samples", fisher_samples,
                          none="all training examples")]
        if fisher not in ("sampled", "empirical"):
            problems.append(f"strategy 'ewc': fisher={fisher!r} must be 'sampled' (labels drawn "
                            "from the model) or 'empirical' (the true labels)")
        if not isinstance(online, bool):
            problems.append(f"strategy 'ewc': online={online!r} must be true or false")
        if problems:
            raise ConfigError(problems)
        self.fisher = fisher
        self.fisher_samples = fisher_samples
        self.online = online
        self.decay = decay

    def importance(self, task: Task) -> Params:
        data = self.examples(task, self.fisher_samples, "fisher-subset")
        if self.fisher == "sampled":
            data = TensorData(data.x, self._sample_labels(data, task), data.t)
        return diagonal_fisher(self.model, data)

    def _sample_labels(self, data: TensorData, task: Task) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logp = torch.cat([F.log_softmax(self.model(data.x[i:i + 4096],
                                                           data.t[i:i + 4096]), 1)
                                  for i in range(0, len(data), 4096)])
        finally:
            self.model.train(was_training)
        # y ~ p_θ(·|x) by the Gumbel-max trick: argmax of log p + Gumbel noise drawn on the CPU
        # by the seeded generator (one draw per class), the same on every device.
        u = torch.rand(logp.shape, generator=self.generator("fisher-labels", task.key),
                       dtype=torch.float64).clamp_min(1e-300)
        return (logp - (-u.log()).log().to(logp)).argmax(1)


def diagonal_fisher(model: nn.Module, data: TensorData, method: Method = "auto") -> Params:
    """F_i = (1/N) Σ_n (∂ log p_θ(y_n | x_n) / ∂θ_i)² over the rows of `data`, using the
    labels `data.y` as given (see `per_sample_gradient_mean` for `method`)."""
    return per_sample_gradient_mean(model, data, _nll, "square", method=method)


def _nll(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")
