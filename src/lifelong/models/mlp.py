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
from lifelong.models.heads import MultiHead


@MODELS.register("mlp")
class MLP(nn.Module):
    """Fully connected ReLU network.

    Args:
        hidden: sizes of the hidden layers.
        dropout: dropout probability after each hidden layer (0 = none).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        num_heads: int = 1,
        *,
        hidden: list[int] | tuple[int, ...] = (100, 100),
        dropout: float = 0.0,
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
        self.head = MultiHead(width, num_outputs, num_heads)

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        out: Tensor = self.head(self.features(x), t)
        return out
