"""The quadratic penalty as a value, and how the training loop follows it.

Owns `Quadratic`: scale · (Σ_i Ω̄_i (θ_i − m_i)² + const) over live parameters, the value a
penalty-family strategy returns from `Strategy.quadratic()` (its terms Σ_k Ω_k (θ − θ*_k)²
folded into one: Ω̄ = Σ_k Ω_k, m = Σ_k Ω_k θ*_k / Ω̄, so a step costs the same whatever the
number of tasks), and the loop's two ways to follow it. Strategies never see the optimizer: the
loop (`lifelong.optim`) reads it and calls `gradients` or `implicit_step` here. Does not own how
Ω is estimated or merged (`lifelong.strategies._penalty` and the methods).

How the penalty is followed (the strategy's `step`). The papers add it to the loss and let the
optimizer follow its gradient (``"gradient"``). With plain SGD a weight whose penalty curvature
k = 2 · scale · Ω̄ exceeds 2(1 + momentum)/lr is overshot by more at every step and the run
diverges, which a large strength does at everyday learning rates. So:

- ``"proximal"``: after the optimizer's step on the task loss alone, an implicit step on the
  quadratic, θ ← (θ + c·m) / (1 + c) with c = η·k, η the optimizer's step size for that weight:
  lr / (1 − momentum) for heavy-ball SGD at rest, lr / (√v̂ + ε) for Adam (its step size along
  each coordinate, v̂ its bias-corrected second moment). Stable for any curvature; with SGD its
  fixed point is the exact objective's stationary point, ∇L_task(θ) + k·Ω̄·(θ − m) = 0
  (proximal gradient method; Parikh & Boyd 2014, §4.2), and with Adam it is the same step in
  Adam's diagonal metric.
- ``"auto"``: proximal with plain SGD, the papers' gradient step with any other optimizer:
  Adam divides each step by a running gradient scale, so a stiff penalty does not make it
  overshoot as SGD does.
- ``cap``: with plain SGD, Ω̄ is capped per weight at (1 + momentum) / (lr · 2 · scale), the
  stiffest pull SGD can follow (the library's earlier default, kept as an option). Above the
  cap the strength stops meaning anything, so the loop reports the fraction capped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lifelong.errors import StateError

Params = dict[str, Tensor]
Step = Literal["auto", "gradient", "proximal"]
STEPS = ("auto", "gradient", "proximal")
Rates = list[float] | list[Tensor]  # the optimizer's step size per parameter (or per weight)


class Quadratic:
    """scale · (Σ_i Ω̄_i (θ_i − m_i)² + const): the terms (`anchors`, `importances`, one dict
    per past task keyed by parameter name) folded for the live parameters of `model`.

    Attributes:
        params: the live parameters the penalty covers, in the order of every list here.
        scale, step, cap: the factor in front, how it is to be followed (module doc), and
            whether SGD's stiffness cap applies.
        who, strength: the strategy's name and strength, for messages.
        names: the parameters' names in the model.
        followed, limit: how the loop followed it at the last step (``"gradient"`` or
            ``"proximal"``; None before the first step) and the cap limit of its gradient:
            SI takes the penalty's pull out of its path integral where it was part of the
            gradient (`pull_at`).
    """

    def __init__(self, model: nn.Module, anchors: list[Params], importances: list[Params], *,
                 scale: float, step: Step, cap: bool, who: str, strength: float) -> None:
        live = dict(model.named_parameters())
        names = list(importances[0])
        if missing := [n for n in names if n not in live]:
            # Dropping them would silently make the penalty zero on those weights.
            raise StateError(
                f"{who}: the penalty holds importances for parameters the model no longer has "
                f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}; the model's "
                f"are {', '.join(list(live)[:4])}{', ...' if len(live) > 4 else ''}). A "
                "wrapper such as torch.compile ('_orig_mod.') or DataParallel ('module.') "
                "renames parameters: build the strategy around the model you train, and keep "
                "it for the whole stream")
        self.names = names
        self.params: list[Tensor] = [live[n] for n in names]
        self.scale, self.step, self.cap = scale, step, cap
        self.who, self.strength = who, strength
        self.followed: Literal["gradient", "proximal"] | None = None
        self.limit = math.inf
        self.centre: list[Tensor] = []
        self.omega: list[Tensor] = []  # Ω̄ = Σ_k Ω_k
        const = 0.0
        with torch.no_grad():
            for n in names:
                omegas = [imp[n] for imp in importances]
                thetas = [a[n] for a in anchors]
                total = torch.stack(omegas).sum(0).clamp_min(0)
                if len(omegas) == 1:
                    centre = thetas[0].clone()
                else:
                    # In float64 so that the constant (which only shifts the loss value) is
                    # not lost to cancellation.
                    o64 = [o.double() for o in omegas]
                    t64 = [t.double() for t in thetas]
                    tot64 = total.double()
                    weighted = sum((o * t for o, t in zip(o64, t64, strict=True)),
                                   torch.zeros_like(tot64))
                    m64 = torch.where(tot64 > 0, weighted / tot64.clamp_min(1e-300), t64[-1])
                    const += float(sum(((o * t * t).sum() for o, t in zip(o64, t64,
                                                                          strict=True)),
                                       torch.zeros((), dtype=torch.float64))
                                   - (tot64 * m64 * m64).sum())
                    centre = m64.to(total.dtype)
                self.centre.append(centre)
                self.omega.append(total)
        self.const = const
        self.sources: tuple[object, ...] = (*anchors, *importances)
        self._weights: dict[float, tuple[list[Tensor], ...]] = {}
        self._prox: dict[tuple[float, ...], tuple[list[Tensor], list[Tensor]]] = {}

    def follows_gradient(self, plain_sgd: bool) -> bool:
        """Whether the loop adds the penalty's gradient (else it takes the implicit step), for
        an optimizer that is plain SGD or not; records the choice in `followed`."""
        gradient = self.step == "gradient" or (self.step == "auto" and (not plain_sgd
                                                                        or self.cap))
        self.followed = "gradient" if gradient else "proximal"
        return gradient

    def weights(self, limit: float = math.inf) -> tuple[list[Tensor], ...]:
        """(r, −r ⊙ m, 2r) with r = √(scale · Ω') and Ω' = min(Ω̄, limit / (2·scale)): the
        per-weight factors of the value and of the gradient, computed once per limit."""
        if limit not in self._weights:
            with torch.no_grad():
                capped = [o.clamp(max=limit / (2 * self.scale)) if math.isfinite(limit) else o
                          for o in self.omega]
                root = [(self.scale * o).sqrt() for o in capped]
                shift = [-r * m for r, m in zip(root, self.centre, strict=True)]
                self._weights[limit] = (root, shift, [2 * r for r in root])
        return self._weights[limit]

    def gradients(self, limit: float = math.inf) -> tuple[Tensor, list[Tensor]]:
        """The value and the gradient 2·scale·Ω'·(θ − m) per parameter at the current
        weights, by three fused `_foreach` passes (Ω' is Ω̄ capped at `limit` / (2·scale))."""
        self.limit = limit
        root, shift, root2 = self.weights(limit)
        with torch.no_grad():
            w = torch._foreach_addcmul(shift, self.params, root)  # r ⊙ θ − r ⊙ m
            norms = torch.stack(torch._foreach_norm(w))
            torch._foreach_mul_(w, root2)  # now the gradient
            value = torch.dot(norms, norms)
        return (value + self.scale * self.const if self.const else value), list(w)

    def pull_at(self, values: list[Tensor]) -> list[Tensor]:
        """The gradient `gradients` gave at the last step, recomputed at the weights `values`
        (aligned with `params`) as it computed it: what the loop added to `.grad` there."""
        root, shift, root2 = self.weights(self.limit)
        with torch.no_grad():
            w = torch._foreach_addcmul(shift, values, root)
            torch._foreach_mul_(w, root2)
        return list(w)

    def value(self) -> Tensor:
        """scale · (Σ Ω̄ (θ − m)² + const), differentiable (for plots and checks; the loop
        uses `gradients`)."""
        total = sum(((o * (p - m).square()).sum() for o, p, m in zip(
            self.omega, self.params, self.centre, strict=True)),
            torch.zeros((), device=self.params[0].device))
        return self.scale * (total + self.const)

    def implicit_step(self, rates: Rates | list[float]) -> None:
        """θ ← θ / (1 + c) + c·m / (1 + c) with c = rate · 2 · scale · Ω̄ per weight: the
        implicit step on the quadratic, `rates` the optimizer's step size per parameter (a
        number, or a tensor per weight); the factors are kept for numbers (once per task)."""
        tensors = [r for r in rates if isinstance(r, Tensor)]
        if tensors:
            factors = self._factors(tensors)
        else:
            key = tuple(float(r) for r in rates)
            if key not in self._prox:
                self._prox[key] = self._factors(list(key))
            factors = self._prox[key]
        with torch.no_grad():
            torch._foreach_mul_(self.params, factors[0])
            torch._foreach_add_(self.params, factors[1])

    def _factors(self, rates: Sequence[float | Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        with torch.no_grad():
            c: list[Tensor] = [2 * self.scale * r * o
                               for r, o in zip(rates, self.omega, strict=True)]
            return ([1 / (1 + ci) for ci in c],
                    [ci * m / (1 + ci) for ci, m in zip(c, self.centre, strict=True)])

    def capped_fraction(self, limit: float) -> float:
        """The fraction of the penalised weights whose Ω̄ exceeds the cap limit / (2·scale)."""
        if not math.isfinite(limit) or not self.omega:
            return 0.0
        with torch.no_grad():
            over = sum(int((o > limit / (2 * self.scale)).sum()) for o in self.omega)
        return over / sum(o.numel() for o in self.omega)

    def cap_warning(self, fraction: float, limit: float) -> str:
        return (f"{self.who}: stiffness_cap held {fraction:.1%} of the penalised weights "
                f"below their importance (strength {self.strength:g}, lr-bound curvature "
                f"{limit:g}); for those weights the penalty is not the paper's and a larger "
                "strength changes nothing. Set stiffness_cap=false, with step=proximal for "
                "stability")
