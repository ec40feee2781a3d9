"""The teacher of the distillation methods (`lwf`, `icarl`): the model as it was before the
current task, frozen.

Owns taking the snapshot (weights only, so it is learned state that `state_dict` saves and a
resumed run restores) and `Teacher`, which turns the saved weights into a frozen module once
and keeps it while the weights stay the same object. Does not own what is distilled (each
method's own file).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn


def snapshot(model: nn.Module) -> dict[str, Any]:
    """A detached copy of the model's weights and buffers (the teacher of the next task),
    with a growing model's record of its growth (plain values, copied)."""
    return {k: v.detach().clone() if isinstance(v, Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


class Teacher:
    """A frozen module in eval mode built from saved weights; rebuilt only when the weights
    change (a new snapshot, or a state loaded into a fresh strategy)."""

    def __init__(self) -> None:
        self._cached: tuple[dict[str, Any], nn.Module] | None = None

    def module(self, model: nn.Module, weights: dict[str, Any] | None) -> nn.Module | None:
        """The teacher for `weights` (None before the first snapshot), shaped like `model`."""
        if weights is None:
            return None
        if self._cached is None or self._cached[0] is not weights:
            net = copy.deepcopy(model).eval()
            net.load_state_dict(weights)
            net.requires_grad_(False)
            self._cached = (weights, net)
        return self._cached[1]
