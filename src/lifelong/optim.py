"""The loop's optimisation step: backward, the strategy's gradient hooks, its penalty, the
optimizer's step and the implicit step.

Owns `LoopStep`, the callable the loop hands to `Strategy.train_batch`, and what it reads from
the optimizer: whether it is plain SGD, the stiffest pull SGD can follow, and the step size of
each parameter. A strategy never sees the optimizer; a penalty-family strategy returns its
penalty as a value (`Strategy.quadratic`, `lifelong.quadratic.Quadratic`) and this module
follows it, as a gradient term or as an implicit step after the optimizer's (the choice and the
reasons are in `lifelong.quadratic`). Does not own building the optimizer or the epochs
(`lifelong.epochs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lifelong.quadratic import Quadratic, Rates

if TYPE_CHECKING:
    from lifelong.strategies.base import Strategy


def plain_sgd(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` is heavy-ball SGD (no Nesterov, no dampening), whose step size at
    rest is lr / (1 − momentum)."""
    return type(optimizer) is torch.optim.SGD and not any(
        g.get("nesterov") or g.get("dampening") for g in optimizer.param_groups)


def stiffness_limit(optimizer: torch.optim.Optimizer) -> float:
    """Half the largest curvature plain SGD can follow stably, (1 + momentum) / lr, over its
    parameter groups; infinite for other optimizers (Adam and its kin rescale each step, so a
    stiff penalty does not make them diverge)."""
    if type(optimizer) is not torch.optim.SGD:
        return math.inf
    return min((1.0 + float(g.get("momentum", 0.0))) / float(g["lr"])
               for g in optimizer.param_groups)


def step_sizes(optimizer: torch.optim.Optimizer, params: Sequence[Tensor],
               owners: list[tuple[Tensor, int | None]] | None = None) -> Rates:
    """The step size of `optimizer` for each of `params`: lr / (1 − momentum) for heavy-ball
    SGD (a number per parameter), lr / (√v̂ + ε) for Adam (a tensor per parameter, from its
    current second moment; 0 for a parameter Adam has not stepped yet, which its step has not
    moved either). Where the optimizer holds the parameters stacked (a
    group of runs), `owners` gives each parameter's stacked tensor and its index there."""
    where = owners or [(p, None) for p in params]
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    if plain_sgd(optimizer):
        out: list[float] = []
        for owner, _ in where:
            g = group_of.get(id(owner))
            out.append(0.0 if g is None else
                       float(g["lr"]) / (1.0 - float(g.get("momentum", 0.0))))
        return out
    if type(optimizer) is torch.optim.Adam:
        rates: list[Tensor] = []
        for p, (owner, index) in zip(params, where, strict=True):
            g = group_of.get(id(owner))
            state = optimizer.state.get(owner, {})
            if g is None or "exp_avg_sq" not in state:
                rates.append(torch.zeros_like(p))
                continue
            v = state["exp_avg_sq"] if index is None else state["exp_avg_sq"][index]
            bias = 1 - g["betas"][1] ** float(state["step"])
            rates.append(float(g["lr"]) / ((v / bias).sqrt() + float(g["eps"])))
        return rates
    raise ValueError(f"the implicit step needs the step size of {type(optimizer).__name__}, "
                     "which the loop knows only for SGD and Adam")


class LoopStep:
    """One optimisation step of `strategy` with `optimizer`, called with the strategy's loss:
    zero the gradients, backward, add the penalty's gradient (where it is followed so),
    `after_backward`, the optimizer's step, the implicit step on the penalty (where it is
    followed so), `after_step`. Returns the loss to report: the strategy's, plus the penalty's
    value where it joined the gradient. One per task and optimizer (`TaskLoop`), so the
    stiffness cap's fraction is counted per task (`capped`)."""

    def __init__(self, strategy: Strategy, optimizer: torch.optim.Optimizer) -> None:
        self.strategy, self.optimizer = strategy, optimizer
        self.sgd = plain_sgd(optimizer)
        self.capped: tuple[float, str] | None = None  # fraction and warning, once per task

    def __call__(self, loss: Tensor) -> Tensor:
        s, opt = self.strategy, self.optimizer
        q = s.quadratic()
        gradient = q is not None and q.follows_gradient(self.sgd)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        reported = loss.detach()
        if q is not None and gradient:
            reported = reported + self.penalty(q)
        s.after_backward()
        opt.step()
        if q is not None and not gradient:
            q.implicit_step(step_sizes(opt, q.params))
        s.after_step()
        return reported

    def penalty(self, q: Quadratic, grads: list[Tensor] | None = None) -> Tensor:
        """Add the penalty's gradient, capped at the stiffness SGD can follow where `q.cap`
        (counted once per task in `capped`), into its parameters' `.grad` or into `grads` (a
        group's slices of its stacked gradient); returns the penalty's value."""
        return add_penalty_gradient(q, self._limit(q), grads)

    def _limit(self, q: Quadratic) -> float:
        if not q.cap:
            return math.inf
        limit = stiffness_limit(self.optimizer)
        if self.capped is None:
            fraction = q.capped_fraction(limit)
            self.capped = (fraction, q.cap_warning(fraction, limit) if fraction else "")
        return limit


def add_penalty_gradient(q: Quadratic, limit: float = math.inf,
                         grads: list[Tensor] | None = None) -> Tensor:
    """Add the penalty's gradient into each parameter's `.grad` (or into `grads`, aligned with
    `q.params`); returns the penalty's value."""
    value, pull = q.gradients(limit)
    targets = grads if grads is not None else [p.grad for p in q.params]
    reached, added = [], []
    for p, g, w in zip(q.params, targets, pull, strict=True):
        if g is None:  # a weight this batch's loss does not reach (another task's head)
            p.grad = w
        else:
            reached.append(g)
            added.append(w)
    if reached:
        torch._foreach_add_(reached, added)
    return value
