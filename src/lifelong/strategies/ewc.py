"""`ewc`: Elastic Weight Consolidation, and online EWC with `online=true`.

Owns the diagonal Fisher estimate. The penalty, its fast evaluation and the bookkeeping of one
term per task (or one decayed term) live in `_penalty.py`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
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

Fisher = Literal["exact", "sampled", "empirical"]


@STRATEGIES.register("ewc")
class EWC(QuadraticAnchor):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017) or online EWC (Schwarz et al.).

    Kirkpatrick et al. 2017, PNAS 114(13), Eq. 3: L(θ) = L_B(θ) + Σ_i λ/2 · F_i (θ_i − θ*_A,i)²,
    one such term per past task, with F the diagonal of the Fisher information at θ*_A. With
    ``online=True``, online EWC (Schwarz et al. 2018, "Progress & Compress"): a single
    term F̃ ← γ·F̃ + F_new anchored at the latest θ*, so memory and time stay constant however
    many tasks there are.

    The Fisher diagonal is F_i = E_x E_{y~p_θ(·|x)} [(∂ log p_θ(y|x) / ∂θ_i)²], the inner
    expectation over the model's own predictions, computed from per-sample gradients
    (`torch.func.vmap` over `grad`, or its exact closed form for linear layers; see
    `_per_sample.py`), never from the square of a batch gradient (which is not the Fisher).

    Args:
        strength: λ, relative to the mean Fisher when `normalize` is on (the default): the
            pull on a weight of average importance. Kirkpatrick et al. tuned λ per experiment,
            so there is no paper value to keep: the default was chosen by `lifelong run
            strength-sweep` on validation streams that are neither benchmark's, permuted and
            split, by the rule its module doc states (the table is in the README, "Defaults").
        normalize: divide each task's Fisher by its mean over all weights before it is stored
            (the default; a declared departure). The Fisher's size follows the stream and the
            training, not only the weights' importance: after a split task that a small head
            fits almost perfectly it is orders of magnitude smaller than after a permuted task,
            and no single absolute λ served both kinds of stream. ``false`` is Eq. 3 as written,
            with `strength` the paper's λ.
        fisher: how the expectation over y is taken; van de Ven 2025 ("On the computation of
            the Fisher information in continual learning", ICLR blogpost track) compares the
            three. ``"exact"`` (the default): summed over every class y (of the example's own
            head), weighted by p_θ(y|x) — the definition itself, at one backward pass per
            class. ``"sampled"``: one y per example drawn from p_θ(y|x) with this strategy's
            seeded generator, as Kirkpatrick et al. do: an unbiased but noisy estimate of the
            exact value. ``"empirical"``: the true labels (the "empirical Fisher", what
            Avalanche and much other code computes): a different quantity, furthest from the
            Fisher on examples the model gets confidently wrong.
        fisher_samples: training examples (a seeded random subset) the Fisher is averaged
            over; None = all of them.
        online: keep one decayed term instead of one per task (online EWC).
        decay: γ of online EWC, in (0, 1]; ignored unless `online`. The penalty on a new
            task is γ·F̃ (Schwarz et al. 2018).
        step: ``"auto"`` (the default): the proximal step with plain SGD, the paper's gradient
            step with Adam or any other optimizer; or ``"proximal"`` or ``"gradient"`` always.
            Departure from the paper's optimizer, not its objective: the proximal step takes
            the quadratic implicitly, which has the same stationary point and never diverges
            with plain SGD, where the gradient step diverges at large strengths
            (`_penalty.py`). Adam rescales each step, so it follows the gradient step stably.
        stiffness_cap: the earlier per-weight cap (off; see `_penalty.py`).
    """

    name = "ewc"
    card = replace(QuadraticAnchor.card, departures=(PROXIMAL_DEPARTURE, NORMALIZE_DEPARTURE))
    version = 2  # v1: strength was the absolute λ (normalize did not exist)

    def __init__(self, model: nn.Module, *, strength: float = 0.003,
                 fisher: Fisher = "exact", fisher_samples: int | None = 1000,
                 online: bool = False, decay: float = 1.0,
                 step: Step = "auto", stiffness_cap: bool = False,
                 normalize: bool = True) -> None:
        super().__init__(model, strength=strength, step=step, stiffness_cap=stiffness_cap,
                         normalize=normalize)
        problems = [
            *checks.number("strategy 'ewc'", "decay", decay, low=0.0, high=1.0, low_open=True,
                           hint="γ of online EWC; 1 = plain sum"),
            *checks.count("strategy 'ewc'", "fisher_samples", fisher_samples,
                          none="all training examples")]
        if fisher not in ("exact", "sampled", "empirical"):
            problems.append(f"strategy 'ewc': fisher={fisher!r} must be 'exact' (every label, "
                            "weighted by the model's probabilities), 'sampled' (labels drawn "
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
        if self.fisher == "exact":
            return exact_fisher(self.model, data)
        if self.fisher == "sampled":
            data = data.with_labels(self._sample_labels(data, task))
        return diagonal_fisher(self.model, data)

    def _sample_labels(self, data: TensorData, task: Task) -> Tensor:
        logp = _log_probs(self.model, data)
        # y ~ p_θ(·|x) by the Gumbel-max trick: argmax of log p + Gumbel noise drawn on the CPU
        # by the seeded generator (one draw per class), the same on every device.
        u = torch.rand(logp.shape, generator=self.generator("fisher-labels", task.key),
                       dtype=torch.float64).clamp_min(1e-300)
        return (logp - (-u.log()).log().to(logp)).argmax(1)


def exact_fisher(model: nn.Module, data: TensorData, method: Method = "auto") -> Params:
    """F_i = (1/N) Σ_n Σ_y p_θ(y|x_n) (∂ log p_θ(y|x_n) / ∂θ_i)² over the rows of `data`: the
    expectation over the model's own predictions taken exactly, over the classes of each
    example's head (`data.y` is not read; see `per_sample_gradient_mean` for `method`).

    p_θ(y|x) comes from an eval-mode pass and is held fixed: it weights the squared gradients,
    it is not differentiated."""
    probs = _log_probs(model, data).exp()
    return per_sample_gradient_mean(model, data, _nll, "square", weights=probs, method=method)


def diagonal_fisher(model: nn.Module, data: TensorData, method: Method = "auto") -> Params:
    """F_i = (1/N) Σ_n (∂ log p_θ(y_n | x_n) / ∂θ_i)² over the rows of `data`, using the
    labels `data.y` as given: the empirical Fisher for true labels, a sampled one for labels
    drawn from the model (see `per_sample_gradient_mean` for `method`)."""
    return per_sample_gradient_mean(model, data, _nll, "square", method=method)


def _log_probs(model: nn.Module, data: TensorData, chunk: int = 4096) -> Tensor:
    """log p_θ(·|x) of every row, in eval mode (as the gradients are taken), without a graph."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = (data.slice(i, i + chunk) for i in range(0, len(data), chunk))
            return torch.cat([F.log_softmax(model(p.x, p.t), 1) for p in parts])
    finally:
        model.train(was_training)


def _nll(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")
