"""Output heads: one shared head, or one head per task for the task-incremental scenario.

Owns `MultiHead`. All heads live in one weight tensor, so a batch that mixes tasks (joint
training, replay) costs one matrix product and a gather instead of a Python loop over heads.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class MultiHead(nn.Module):
    """`num_heads` linear heads of `num_outputs` units over the same features.

    With one head the task label is ignored. With several, `forward` needs one task label per
    example (or one int for the whole batch) and returns that head's logits.
    """

    def __init__(self, in_features: int, num_outputs: int, num_heads: int = 1) -> None:
        super().__init__()
        self.in_features, self.num_outputs, self.num_heads = in_features, num_outputs, num_heads
        self.weight = nn.Parameter(torch.empty(num_heads * num_outputs, in_features))
        self.bias = nn.Parameter(torch.empty(num_heads * num_outputs))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: Tensor, t: Tensor | int | None = None) -> Tensor:
        out = nn.functional.linear(h, self.weight, self.bias)
        if self.num_heads == 1:
            return out
        if t is None:
            raise ValueError(
                f"this model has {self.num_heads} task heads and needs the task label; "
                "task labels are given only in the task-incremental scenario"
            )
        out = out.view(len(h), self.num_heads, self.num_outputs)
        if isinstance(t, int):
            return out[:, t]
        return out[torch.arange(len(h), device=h.device), t]
