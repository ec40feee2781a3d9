"""A multilayer perceptron over flattened images, with a (multi-)head output.

Owns `MLP`. The lecture's demo uses three hidden layers of 50 units; GEM uses 2×100; the EWC
paper 2×400.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from lifelong import checks
from lifelong.errors import ConfigError
from lifelong.models import MODELS
from lifelong.models.heads import GrowingHead, MultiHead


@MODELS.register("mlp")
class MLP(nn.Module):
    """Fully connected ReLU network.

    Args:
        hidden: sizes of the hidden layers.
        dropout: dropout probability after each hidden layer (0 = none).
        growing: with one head (domain- and class-IL), a `GrowingHead` that starts empty and
            gains a unit for each class as tasks bring them (opt-in, for LwF / iCaRL-style
            class-incremental learning); off, one head over all classes of the stream. With a
            head per task (task-IL) the heads are already per task and this changes nothing.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        num_heads: int = 1,
        *,
        hidden: list[int] | tuple[int, ...] = (100, 100),
        dropout: float = 0.0,
        growing: bool = False,
    ) -> None:
        super().__init__()
        problems = [*checks.sizes("model 'mlp'", "hidden", hidden),
                    *checks.number("model 'mlp'", "dropout", dropout, low=0.0, high=1.0,
                                   high_open=True, hint="0 = none")]
        if problems:
            raise ConfigError(problems)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        self.features = nn.Sequential(*layers)
        self.head: MultiHead | GrowingHead = (
            GrowingHead(width, num_outputs) if growing and num_heads == 1
            else MultiHead(width, num_outputs, num_heads))

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        out: Tensor = self.head(self.features(x), t)
        return out
