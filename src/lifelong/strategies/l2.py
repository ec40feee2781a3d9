"""`l2`: the plain L2 pull towards the weights of every earlier task — the baseline that
remembers by refusing to learn.

Owns the Ω = 1 importance (and which weights it covers). The penalty lives in `_penalty.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lifelong.data.task import Task
from lifelong.strategies import STRATEGIES
from lifelong.strategies._penalty import Params, PenaltyState, QuadraticAnchor


@dataclass
class L2State(PenaltyState):
    start: Params = field(default_factory=dict)  # the weights when the current task began


@STRATEGIES.register("l2")
class L2(QuadraticAnchor):
    """L2 pull towards the weights after each past task: EWC with every Fisher entry set to 1.

    λ/2 · Σ_k Σ_i (θ_i − θ*_k,i)², one term per past task. Kirkpatrick et al. 2017 (Fig. 2A)
    use it to show the other failure: old tasks are kept because *every* weight is held, so
    new tasks are learned poorly (intransigence, Chaudhry et al. 2018).

    Ω = 1 for every weight the task changed. Weights it left exactly as they were — the rows of
    another task's head in a multi-head model — carry nothing of it and get Ω = 0; in a
    single-head model this is every weight, the classic baseline.

    Args:
        strength: λ. The default 1.0 already makes L2 clearly intransigent on
            `ewc-permuted` (tasks B and C learned far worse than by SGD or EWC).
    """

    name = "l2"

    def __init__(self, model: nn.Module, *, strength: float = 1.0,
                 stiffness_cap: bool = True) -> None:
        super().__init__(model, strength=strength, stiffness_cap=stiffness_cap)
        self.state: L2State = L2State()

    def before_task(self, task: Task) -> None:
        self.state.start = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def importance(self, task: Task) -> Params:
        live = dict(self.model.named_parameters())
        start = self.state.start
        with torch.no_grad():
            return {n: (p != start[n]).to(p.dtype) if n in start else torch.ones_like(p)
                    for n, p in live.items() if p.requires_grad}
