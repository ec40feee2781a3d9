"""`l2`: the plain L2 pull towards the weights of every earlier task — the baseline that
remembers by refusing to learn.

Owns the Ω = 1 importance (and which weights it covers). The penalty lives in `_penalty.py`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import nn

from lifelong.data.task import Task
from lifelong.errors import ConfigError
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
        heads: ``"own"`` (the default): a task holds only its own head's rows, as above;
            ``"all"``: every weight, the other tasks' heads included, as Hsu et al.'s code
            (GT-RIPL/Continual-Learning-Benchmark, `agents/regularization.py`: an identity
            importance over all parameters).
        anchor: ``"every"`` (the default): one term per past task; ``"last"``: one term,
            anchored at the weights after the latest task and replaced at each task, as the
            same code (its L2 keeps a single slot).
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
                 normalize: bool = False, heads: Literal["own", "all"] = "own",
                 anchor: Literal["every", "last"] = "every") -> None:
        super().__init__(model, strength=strength, step=step, stiffness_cap=stiffness_cap,
                         normalize=normalize)
        problems = []
        if heads not in ("own", "all"):
            problems.append(f"strategy 'l2': heads={heads!r} must be 'own' (a task holds its "
                            "own head) or 'all' (every weight, as Hsu et al.'s code)")
        if anchor not in ("every", "last"):
            problems.append(f"strategy 'l2': anchor={anchor!r} must be 'every' (one term per "
                            "past task) or 'last' (the weights after the latest task only)")
        if problems:
            raise ConfigError(problems)
        self.heads, self.anchor = heads, anchor

    def importance(self, task: Task) -> Params:
        omega = {n: torch.ones_like(p) for n, p in self.model.named_parameters()
                 if p.requires_grad}
        if self.heads == "all":
            return omega
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

    def after_task(self, task: Task) -> None:
        super().after_task(task)
        if self.anchor == "last":  # one slot: the latest weights, Ω = 1
            self.state.anchors = self.state.anchors[-1:]
            self.state.importances = self.state.importances[-1:]
