"""Net2Net (Chen, Goodfellow & Shlens 2016, ICLR, "Net2Net: Accelerating Learning via
Knowledge Transfer"): make a trained network wider or deeper without changing its function.

Owns the two operators on fully connected layers: `wider_mapping` and `widen` (Net2WiderNet,
§3.2: new units copy the incoming weights of a random existing unit, and the outgoing weights
of a copied unit are divided among its copies) and `identity_layer` (Net2DeeperNet, §3.3: a
layer initialised to the identity, exact after a ReLU because its inputs are already ≥ 0).
Which layer grows, and recording it, is the model's (`lifelong.models.mlp.MLP.wider` and
`deeper`); when to grow is a strategy's (`net2net`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import skip_init


def blank_linear(n_in: int, n_out: int, *, bias: bool = True,
                 device: torch.device | None = None, dtype: torch.dtype | None = None
                 ) -> nn.Linear:
    """An `nn.Linear` whose values the caller sets: not initialised, so nothing is drawn from
    the global RNG (layers added to a trained model are seeded by the run, or copied)."""
    layer: nn.Linear = skip_init(  # type: ignore[no-untyped-call]
        nn.Linear, n_in, n_out, bias=bias, device=device or torch.device("cpu"), dtype=dtype)
    return layer


def wider_mapping(old: int, new: int, generator: torch.Generator) -> Tensor:
    """Chen et al.'s g: unit j of the wider layer copies unit g(j) of the old one; the first
    `old` units are themselves, the others copy units drawn uniformly (from `generator`)."""
    if new < old:
        raise ValueError(f"wider: {new} units is not wider than {old}")
    extra = torch.randint(old, (new - old,), generator=generator, device=generator.device)
    return torch.cat([torch.arange(old, device=generator.device), extra]).cpu()


def widen(layer: nn.Linear, consumers: list[Tensor], mapping: Tensor, *, noise: float,
          generator: torch.Generator) -> tuple[nn.Linear, list[Tensor]]:
    """`layer` with one output unit per entry of `mapping` (unit j a copy of unit mapping[j]),
    and each consumer weight matrix (its columns are `layer`'s units) with its columns copied
    the same way and divided by the number of copies of their unit, so the consumers' outputs
    are unchanged. `noise` > 0 adds noise of that many standard deviations of the layer's
    weights to the copied units' incoming weights (Chen et al.'s symmetry breaking; it then
    changes the function slightly); 0 keeps the function exactly."""
    g = mapping.to(layer.weight.device)
    with torch.no_grad():
        weight, bias = layer.weight[g].clone(), layer.bias[g].clone()
        if noise > 0 and len(g) > layer.out_features:
            fresh = slice(layer.out_features, None)
            scale = noise * float(layer.weight.std())
            jitter = torch.randn(weight[fresh].shape, generator=generator,
                                 device=generator.device)
            weight[fresh] += scale * jitter.to(weight)
        wide = blank_linear(layer.in_features, len(g), device=weight.device,
                            dtype=weight.dtype)
        wide.weight.copy_(weight)
        wide.bias.copy_(bias)
        copies = torch.bincount(g, minlength=layer.out_features).to(weight.dtype)
        outs = [(w[:, g] / copies[g]).detach().clone() for w in consumers]
    wide.requires_grad_(layer.weight.requires_grad)
    return wide, outs


def identity_layer(width: int, like: nn.Linear) -> nn.Linear:
    """A `width` × `width` linear layer equal to the identity (bias 0), on `like`'s device
    and dtype: placed after a ReLU it changes nothing, as ReLU(I·h) = h for h ≥ 0."""
    layer = blank_linear(width, width, device=like.weight.device, dtype=like.weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(width, dtype=like.weight.dtype))
        layer.bias.zero_()
    return layer
