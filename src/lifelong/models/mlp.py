"""A multilayer perceptron over flattened images, with a (multi-)head output, that can grow.

Owns `MLP`: its layers, its growth (`wider`, `deeper`: Net2Net, function-preserving) and the
record of that growth, saved with its state so a grown MLP loads into a freshly built one. The
lecture's demo uses three hidden layers of 50 units; GEM uses 2×100; the EWC paper 2×400.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lifelong import checks
from lifelong.errors import ConfigError, StateError
from lifelong.models import MODELS
from lifelong.models.heads import GrowingHead, MultiHead
from lifelong.models.net2net import blank_linear, identity_layer, widen, wider_mapping


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
        self.options = {"hidden": [int(h) for h in hidden], "dropout": float(dropout),
                        "growing": bool(growing)}
        self.growth: list[dict[str, Any]] = []  # ops applied since construction, in order

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        out: Tensor = self.head(self.features(x), t)
        return out

    # ---------------------------------------------------------------------------- growth
    @property
    def widths(self) -> list[int]:
        """The hidden layers' current widths."""
        return [m.out_features for m in self.features if isinstance(m, nn.Linear)]

    def _positions(self) -> list[int]:
        return [i for i, m in enumerate(self.features) if isinstance(m, nn.Linear)]

    def wider(self, layer: int, width: int, *, generator: torch.Generator,
              noise: float = 0.0) -> Widening:
        """Net2WiderNet on hidden layer `layer` (0-based) to `width` units: the function is
        unchanged with `noise` 0 (see `lifelong.models.net2net.widen`). The grown layers are
        new parameters: build a new optimizer (the loop does when the set changes). Returns
        what changed, for a strategy that keeps per-parameter state (e.g. EWC's anchors)."""
        positions = self._positions()
        if not 0 <= layer < len(positions):
            raise ValueError(f"MLP.wider: no hidden layer {layer} (it has {len(positions)})")
        pos = positions[layer]
        old: nn.Linear = self.features[pos]  # type: ignore[assignment]
        mapping = wider_mapping(old.out_features, width, generator)
        last = layer == len(positions) - 1
        nxt_layer = self.features[positions[layer + 1]] if not last else None
        consumers: list[Tensor] = (_head_weights(self.head) if nxt_layer is None
                                   else [nxt_layer.weight])  # type: ignore[list-item]
        wide, outs = widen(old, consumers, mapping, noise=noise, generator=generator)
        self.features[pos] = wide
        if last:
            _set_head_weights(self.head, outs, width)
        else:
            nxt: nn.Linear = self.features[positions[layer + 1]]  # type: ignore[assignment]
            grown = blank_linear(width, nxt.out_features, device=outs[0].device,
                                 dtype=outs[0].dtype)
            with torch.no_grad():
                grown.weight.copy_(outs[0])
                grown.bias.copy_(nxt.bias)
            grown.requires_grad_(nxt.weight.requires_grad)
            self.features[positions[layer + 1]] = grown
        self.growth.append({"op": "wider", "layer": layer, "width": width})
        cols = (["head.weight"] if isinstance(self.head, MultiHead)
                else [f"head.weights.{k}" for k in range(len(self.head.weights))]) if last \
            else [f"features.{positions[layer + 1]}.weight"]
        return Widening(mapping, (f"features.{pos}.weight", f"features.{pos}.bias"),
                        tuple(cols))

    def deeper(self, layer: int) -> None:
        """Net2DeeperNet: a new hidden layer after hidden layer `layer` (0-based), initialised
        to the identity, with its ReLU; the function is unchanged."""
        positions = self._positions()
        if not 0 <= layer < len(positions):
            raise ValueError(f"MLP.deeper: no hidden layer {layer} (it has {len(positions)})")
        after = positions[layer + 1] if layer + 1 < len(positions) else len(self.features)
        like: nn.Linear = self.features[positions[layer]]  # type: ignore[assignment]
        layers = list(self.features)
        layers[after:after] = [identity_layer(like.out_features, like), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.growth.append({"op": "deeper", "layer": layer})

    def get_extra_state(self) -> dict[str, Any]:
        """What a fresh MLP needs to take this one's weights: its name, construction options
        and growth, in order (plain values: `torch.load(weights_only=True)` reads them)."""
        return {"model": "mlp", "options": dict(self.options),
                "growth": [dict(op) for op in self.growth]}

    def set_extra_state(self, state: Any) -> None:
        # Called by load_state_dict before the layers are loaded: replay the saved growth
        # (shapes only; the weights are copied in afterwards).
        if state.get("options") != self.options:
            raise StateError(f"saved MLP was built with {state.get('options')}, this one with "
                             f"{self.options}; build the model with the saved options")
        saved = list(state.get("growth", []))
        if saved[:len(self.growth)] != self.growth:
            raise StateError(f"saved MLP grew {saved}, this one already grew {self.growth} "
                             "differently; load it into a freshly built model")
        shapes = torch.Generator().manual_seed(0)  # any mapping: the weights are loaded next
        for op in saved[len(self.growth):]:
            if op["op"] == "wider":
                self.wider(int(op["layer"]), int(op["width"]), generator=shapes)
            else:
                self.deeper(int(op["layer"]))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any
                              ) -> None:
        # A state saved before MLPs recorded their growth has no extra state: it never grew.
        state_dict.setdefault(prefix + "_extra_state", {
            "model": "mlp", "options": dict(self.options), "growth": []})
        super()._load_from_state_dict(state_dict, prefix, *args)


class Widening(NamedTuple):
    """What `MLP.wider` changed: unit j of the widened layer copies unit mapping[j]; `rows`
    names its weight and bias (one row per unit), `cols` the consumers' weights (one column
    per unit, divided by the number of copies)."""

    mapping: Tensor
    rows: tuple[str, ...]
    cols: tuple[str, ...]

    def remap(self, name: str, value: Tensor, *, importance: bool) -> Tensor:
        """`value`, a per-parameter quantity of parameter `name` before widening, for the
        widened parameter: an anchor (a weight value) copied as the weights were, or an
        importance (a diagonal curvature): the copies of a unit's incoming weights each see
        1/c of its output weight, so 1/c² of its curvature; a consumer's copied columns see
        the same inputs, so the same curvature."""
        g = self.mapping.to(value.device)
        copies = torch.bincount(g).to(value.dtype)[g]
        if name in self.rows:
            out = value[g]
            return out / copies.view(-1, *[1] * (value.dim() - 1)) ** 2 if importance else out
        if name in self.cols:
            return value[:, g] if importance else value[:, g] / copies
        return value


def _head_weights(head: MultiHead | GrowingHead) -> list[Tensor]:
    """The head's weight matrices whose columns are the last hidden layer's units."""
    return [head.weight] if isinstance(head, MultiHead) else list(head.weights)


def _set_head_weights(head: MultiHead | GrowingHead, weights: list[Tensor], width: int
                      ) -> None:
    """Replace the head's input weight matrices (`width` inputs now), keeping biases and
    outputs. A growing head may have no units yet (e.g. while a saved model is rebuilt: its
    units are loaded after the layers), and then only its input width changes."""
    if isinstance(head, MultiHead):
        head.weight = nn.Parameter(weights[0], requires_grad=head.weight.requires_grad)
    else:
        for k, w in enumerate(weights):
            head.weights[k] = nn.Parameter(w, requires_grad=head.weights[k].requires_grad)
    head.in_features = width
