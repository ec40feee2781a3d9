"""Logistic regression without bias: exactly one weight per input feature.

Owns `Logistic`, the model of the `ewc-surface` picture: on 2-D inputs it has exactly two
parameters, so a task's loss is a surface over the plane of its weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lifelong.errors import ConfigError
from lifelong.models import MODELS


@MODELS.register("logistic")
class Logistic(nn.Module):
    """Logistic regression with no bias: one weight per input feature and nothing else.

    p(y = 1 | x) = σ(w · x), as two logits (−z/2, z/2) with z = w · x, so cross-entropy on
    them is exactly the logistic loss log(1 + e^{∓z}).

    Args:
        init: the starting weights (default all zero: the loss is convex, no random start is
            needed, and the picture starts from the origin).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        num_heads: int = 1,
        *,
        init: list[float] | None = None,
    ) -> None:
        super().__init__()
        width = math.prod(input_shape)
        if num_outputs != 2 or num_heads != 1:
            raise ConfigError(f"model 'logistic' needs two classes and one head, got "
                              f"{num_outputs} outputs and {num_heads} heads; use a 2-class "
                              "domain-incremental stream such as 'planar'")
        if init is not None and len(init) != width:
            raise ConfigError(f"model 'logistic': init has {len(init)} values but the inputs "
                              f"have {width} features")
        start = torch.tensor([float(v) for v in init]) if init is not None else torch.zeros(width)
        self.weight = nn.Parameter(start)

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        z = x.flatten(1) @ self.weight
        return torch.stack((-0.5 * z, 0.5 * z), 1)
