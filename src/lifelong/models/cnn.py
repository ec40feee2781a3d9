"""A small convolutional network for 1-channel images, with a (multi-)head output.

Owns `CNN`: conv(3×3)-ReLU-maxpool blocks, then one hidden fully connected layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from lifelong import checks
from lifelong.errors import ConfigError
from lifelong.models import MODELS
from lifelong.models.heads import GrowingHead, MultiHead


@MODELS.register("cnn")
class CNN(nn.Module):
    """Conv blocks then a fully connected layer.

    Args:
        channels: output channels of each conv block (each halves the image side).
        hidden: width of the fully connected layer.
        growing: a `GrowingHead` with one head, as in `MLP` (default off).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        num_heads: int = 1,
        *,
        channels: list[int] | tuple[int, ...] = (32, 64),
        hidden: int = 128,
        growing: bool = False,
    ) -> None:
        super().__init__()
        problems = [*checks.sizes("model 'cnn'", "channels", channels),
                    *checks.sizes("model 'cnn'", "hidden", [hidden])]
        if len(input_shape) != 3:
            problems.append(f"model 'cnn' needs images (channels, height, width), but this "
                            f"stream's inputs have shape {tuple(input_shape)}; use 'mlp'")
        if problems:
            raise ConfigError(problems)
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, int(out), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = int(out), h // 2, w // 2
        if h < 1 or w < 1:
            raise ConfigError(f"cnn: {len(channels)} pooling blocks are too many for "
                             f"{input_shape[1]}x{input_shape[2]} images; list fewer channels "
                              "(one block per entry)")
        layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head: MultiHead | GrowingHead = (
            GrowingHead(hidden, num_outputs) if growing and num_heads == 1
            else MultiHead(hidden, num_outputs, num_heads))

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        out: Tensor = self.head(self.features(x), t)
        return out
