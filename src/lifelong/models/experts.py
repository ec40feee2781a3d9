"""A network of experts, one per task, each with an autoencoder that recognises its task's
inputs (Expert Gate, Aljundi et al. 2017).

Owns `Autoencoder` (undercomplete, one hidden layer; its reconstruction error is the gate's
score), `Experts` (the experts and their gates, routing by the lowest reconstruction error,
the active expert's forward pass) and the record of its growth saved with its state, so a
model with k experts loads into a freshly built one. Does not own training, relatedness or
which expert a new task copies (the `expert-gate` strategy).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.errors import StateError
from lifelong.models.net2net import blank_linear


class Autoencoder(nn.Module):
    """x ↦ σ(W₂ ReLU(W₁ x)): an undercomplete autoencoder of flattened inputs in [0, 1]."""

    def __init__(self, n_in: int, code: int, generator: torch.Generator) -> None:
        super().__init__()
        self.encode = blank_linear(n_in, code)
        self.decode = blank_linear(code, n_in)
        with torch.no_grad():  # nn.Linear's initialisation, drawn from `generator`
            for layer in (self.encode, self.decode):
                bound = 1 / math.sqrt(layer.in_features)
                for p in layer.parameters():
                    p.copy_((2 * torch.rand(p.shape, generator=generator) - 1) * bound)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = torch.sigmoid(self.decode(torch.relu(self.encode(x.flatten(1)))))
        return out

    def error(self, x: Tensor) -> Tensor:
        """Mean squared reconstruction error of each example."""
        recon: Tensor = self(x)
        return (recon - x.flatten(1)).square().mean(1)


class Experts(nn.Module):
    """Experts (copies of one template network) and their gates. `forward(x, t)` is the
    active expert (the one being trained); `route(x)` picks, per example, the expert whose
    autoencoder reconstructs it best, and `routed(x)` answers with it.

    Args:
        template: the network every expert is a copy of (kept outside the parameters).
        n_in: size of one flattened input.
        code: width of each autoencoder's code.
    """

    def __init__(self, template: nn.Module, n_in: int, *, code: int = 100) -> None:
        super().__init__()
        self._template = [template]  # a list: not registered, not saved, not counted
        self.n_in, self.code = n_in, code
        self.experts = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.labels: list[int] = []  # the task label each expert was trained with
        self.sources: list[int] = []  # the expert each one started from (-1: the template)
        self.active = -1

    def _apply(self, fn: Any, recurse: bool = True) -> Experts:
        # .to(device) and the like reach the template too, so new experts start there.
        self._template[0]._apply(fn, recurse)  # type: ignore[no-untyped-call]
        out: Experts = super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        return out

    @property
    def template(self) -> nn.Module:
        return self._template[0]

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def add(self, label: int, source: int, gate: Autoencoder) -> nn.Module:
        """A new expert, a copy of expert `source` (-1: the template), for task `label`, with
        its trained gate; it becomes the active one."""
        origin = self._template[0] if source < 0 else self.experts[source]
        expert = copy.deepcopy(origin)
        expert.requires_grad_(True)
        self.experts.append(expert)
        self.gates.append(gate)
        self.labels.append(label)
        self.sources.append(source)
        self.active = len(self.experts) - 1
        return expert

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        if self.active < 0:  # nothing learned yet: the template answers
            out: Tensor = self._template[0](x, t)
            return out
        out = self.experts[self.active](x, t)
        return out

    def errors(self, x: Tensor) -> Tensor:
        """(N, experts): each gate's reconstruction error of each example."""
        return torch.stack([gate.error(x) for gate in self.gates], 1)  # type: ignore[operator]

    def route(self, x: Tensor) -> Tensor:
        """The expert of each example: the lowest reconstruction error."""
        return self.errors(x).argmin(1)

    def routed(self, x: Tensor) -> Tensor:
        """Each example answered by its routed expert, with that expert's task label."""
        chosen = self.route(x)
        out: Tensor | None = None
        for k in torch.unique(chosen).tolist():
            rows = (chosen == k).nonzero().squeeze(1)
            logits = self.experts[k](x[rows], self.labels[k])
            if out is None:
                out = logits.new_empty(len(x), logits.shape[1])
            out[rows] = logits
        assert out is not None
        return out

    def get_extra_state(self) -> dict[str, Any]:
        return {"model": "experts", "code": self.code, "labels": list(self.labels),
                "sources": list(self.sources), "active": self.active}

    def set_extra_state(self, state: Any) -> None:
        if state.get("code") != self.code:
            raise StateError(f"saved experts have gates of code {state.get('code')}, these "
                             f"{self.code}; build the strategy with the saved options")
        labels, sources = list(state["labels"]), list(state["sources"])
        if labels[:len(self.labels)] != self.labels:
            raise StateError("saved experts differ from this model's; load them into a "
                             "freshly built model")
        shapes = torch.Generator().manual_seed(0)  # the weights are loaded next
        for label, source in zip(labels[len(self.labels):], sources[len(self.sources):],
                                 strict=True):
            self.add(label, source, Autoencoder(self.n_in, self.code, shapes))
        self.active = int(state["active"])
