"""Output heads: one shared head, one head per task for the task-incremental scenario, or one
head that grows as a class-incremental stream brings new classes.

Owns `MultiHead`, `GrowingHead` and `grow_model`. All of `MultiHead`'s heads live in one weight
tensor, so a batch that mixes tasks (joint training, replay) costs one matrix product and a
gather instead of a Python loop over heads. Does not own when a model grows (the loop,
`lifelong.train.fit_stream`, grows it before each task).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.errors import DataError, StateError


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


class GrowingHead(nn.Module):
    """One linear head with a unit for each class seen so far; `grow` adds units for new ones.

    The head of class-incremental methods that start with the first task's classes and add
    output units as tasks bring new ones (LwF, Li & Hoiem 2017, §3; iCaRL, Rebuffi et al. 2017,
    §2.1). Logit column ``c`` is class ``c`` (labels are global class ids), `num_outputs` wide;
    the columns of classes not seen yet hold the dtype's lowest finite value, so softmax gives
    them probability 0, argmax never picks them, and prediction is among the seen classes only.
    (Finite rather than -inf: a product with p = 0, as in a distillation term, stays 0, not nan.)

    Each growth is its own chunk of parameters (`weights.k`, `biases.k`), and the logits are the
    chunks' products side by side. So growth is function-preserving bit for bit: the old
    classes' logits come from the very same matrix products as before (one wider product could
    change the floating-point order of the sum), and the old parameters stay the same objects,
    so anything that holds them (an optimizer, anchors keyed by name) stays valid. The fresh
    optimizer of the next task sees the new chunk through `parameters()`.

    Saved state describes its growth: `classes` (the units' class ids, in arrival order) is a
    buffer, and loading a grown head's state into a fresh one first grows it to the saved chunk
    shapes, so a grown model loads in a new process.

    Args:
        in_features: width of the features.
        num_outputs: the label space (every class id of the stream is below it).
    """

    classes: Tensor

    def __init__(self, in_features: int, num_outputs: int) -> None:
        super().__init__()
        self.in_features, self.num_outputs = in_features, num_outputs
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.register_buffer("classes", torch.zeros(0, dtype=torch.int64))

    @property
    def num_units(self) -> int:
        return int(self.classes.numel())

    def grow(self, classes: Iterable[int], *, generator: torch.Generator) -> int:
        """Add one output unit for each class in `classes` the head does not have yet;
        returns how many were added.

        New units are initialised like `nn.Linear` (uniform in ±1/√in_features), drawn from
        `generator` (never the global RNG) on its device and moved to the head's device.

        Raises:
            DataError: a class id is outside ``0 .. num_outputs - 1``.
        """
        have = set(self.classes.tolist())
        new = [c for c in dict.fromkeys(int(c) for c in classes) if c not in have]
        bad = [c for c in new if not 0 <= c < self.num_outputs]
        if bad:
            raise DataError(f"GrowingHead: classes {bad} are outside the head's label space "
                            f"0..{self.num_outputs - 1}; build the model for this stream")
        if not new:
            return 0
        device = self.classes.device
        bound = 1.0 / math.sqrt(self.in_features)  # nn.Linear's default initialisation
        draw = torch.rand(len(new), self.in_features + 1, generator=generator,
                          device=generator.device)
        draw = (2 * draw - 1) * bound
        dtype = self.weights[0].dtype if len(self.weights) else torch.get_default_dtype()
        self._add_chunk(draw[:, :-1].to(device, dtype), draw[:, -1].to(device, dtype))
        self.classes = torch.cat([self.classes, torch.tensor(new, device=device)])
        return len(new)

    def _add_chunk(self, weight: Tensor, bias: Tensor) -> None:
        trainable = self.weights[0].requires_grad if len(self.weights) else True
        self.weights.append(nn.Parameter(weight, requires_grad=trainable))
        self.biases.append(nn.Parameter(bias, requires_grad=trainable))

    def forward(self, h: Tensor, t: Tensor | int | None = None) -> Tensor:
        """Logits over the whole label space (`t` is ignored: one head for every task)."""
        parts = [nn.functional.linear(h, w, b)
                 for w, b in zip(self.weights, self.biases, strict=True)]
        fill = torch.finfo(h.dtype).min if h.is_floating_point() else 0
        out = h.new_full((len(h), self.num_outputs), fill)
        if not parts:
            return out
        return out.index_copy(1, self.classes, torch.cat(parts, 1) if len(parts) > 1
                              else parts[0])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              ) -> None:
        # A saved head may have grown more than this one: first grow to the saved chunk shapes
        # (values are copied in by the normal load), so a grown model loads into a fresh one.
        saved = 0
        while f"{prefix}weights.{saved}" in state_dict:
            saved += 1
        if saved < len(self.weights):
            raise StateError(f"GrowingHead: saved state has {saved} growth chunks but this "
                             f"head has {len(self.weights)}; load it into a fresh model")
        for k in range(len(self.weights), saved):
            w, b = state_dict[f"{prefix}weights.{k}"], state_dict.get(f"{prefix}biases.{k}")
            if b is None or w.dim() != 2 or w.shape[1] != self.in_features:
                raise StateError(f"GrowingHead: saved chunk {k} has shape {tuple(w.shape)} "
                                 f"(bias {'missing' if b is None else tuple(b.shape)}); "
                                 f"expected (units, {self.in_features}) with a bias")
            self._add_chunk(torch.empty_like(w, device=self.classes.device),
                            torch.empty_like(b, device=self.classes.device))
        saved_classes = state_dict.get(f"{prefix}classes")
        if saved_classes is not None:
            self.classes = torch.empty_like(saved_classes, device=self.classes.device)
        super()._load_from_state_dict(state_dict, prefix, *args)


def grow_model(model: nn.Module, classes: Iterable[int], *, generator: torch.Generator) -> int:
    """Grow every `GrowingHead` of `model` to hold `classes`; returns the units added (0 for a
    model without one, so the loop can call it on any model)."""
    wanted = list(classes)
    return sum(m.grow(wanted, generator=generator) for m in model.modules()
               if isinstance(m, GrowingHead))
