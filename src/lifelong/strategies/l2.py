"""`l2`: the plain L2 pull towards the weights of every earlier task — the baseline that
remembers by refusing to learn.

Owns the Ω = 1 importance (and which weights it covers). The penalty lives in `_penalty.py`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from lifelong.data.task import Task
from lifelong.models.heads import MultiHead
from lifelong.quadratic import Params, Step
from lifelong.strategies import STRATEGIES
from lifelong.strategies._penalty import QuadraticAnchor


@STRATEGIES.register("l2")
class L2(QuadraticAnchor):
    """L2 pull towards the weights after each past task: EWC with every Fisher entry set to 1.

    λ/2 · Σ_k Σ_i (θ_i − θ*_k,i)², one term per past task. Kirkpatrick et al. 2017 (Fig. 2A)
    use it to show the other failure: old tasks are kept because *every* weight is held, so
    new tasks are learned poorly (intransigence, Chaudhry et al. 2018).

    Ω = 1 for every trainable weight, as in the classic baseline — except, in a multi-head
    (task-incremental) model, the rows of the heads of other tasks: the task never used them,
    so they carry nothing of it and stay free for the tasks they belong to.

    Args:
        strength: λ. The default 1.0 is deliberately intransigent: it is the lecture's
            baseline (Kirkpatrick et al. Fig. 2A), which keeps old tasks by failing to learn new
            ones, and it loses to naive fine-tuning on ACC. `lifelong run strength-sweep` shows
            the whole range: below 0.01 L2 is naive fine-tuning, above 0.1 it cannot learn.
        step: ``"gradient"`` (the default), ``"proximal"`` or ``"auto"`` (see `_penalty.py`).
        stiffness_cap: the earlier per-weight cap (off; see `_penalty.py`).
        normalize: off: Ω = 1 has no scale to take out (on, it would only rescale a
            multi-head model's penalty by the share of weights its heads leave unheld).
    """

    name = "l2"
    card = replace(QuadraticAnchor.card, not_better_than_naive={s: (
        "at its default strength L2 holds every weight and learns new tasks poorly: the "
        "lecture's intransigent baseline (Kirkpatrick et al. 2017, Fig. 2A), which loses to "
        "naive fine-tuning on ACC; below strength 0.01 it is naive fine-tuning") for s in (
        "task", "domain", "class")})
    version = 2  # v1 kept the weights at the task's start to hold only the weights it moved

    def __init__(self, model: nn.Module, *, strength: float = 1.0,
                 step: Step = "gradient", stiffness_cap: bool = False,
                 normalize: bool = False) -> None:
        super().__init__(model, strength=strength, step=step, stiffness_cap=stiffness_cap,
                         normalize=normalize)

    def importance(self, task: Task) -> Params:
        omega = {n: torch.ones_like(p) for n, p in self.model.named_parameters()
                 if p.requires_grad}
        for where, m in self.model.named_modules():
            if isinstance(m, MultiHead) and m.num_heads > 1:
                rows = torch.zeros(m.num_heads, m.num_outputs, device=self.device)
                rows[task.label] = 1.0  # the output rows of this task's head
                for n in ("weight", "bias"):
                    key = f"{where}.{n}" if where else n
                    if key in omega:
                        w = omega[key]
                        omega[key] = w * rows.view(-1, *([1] * (w.dim() - 1)))
        return omega
