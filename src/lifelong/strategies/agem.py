"""`agem`: Averaged GEM — one reference gradient on a memory batch from all past tasks, and a
closed-form projection instead of GEM's quadratic program.

Owns A-GEM's `after_backward`. The memory comes from `_rehearsal.Rehearsal`; the gradient maths
from `_gradients`.
"""

from __future__ import annotations

from torch import nn

from lifelong.strategies import STRATEGIES
from lifelong.strategies._gradients import agem_project, flat_grad, memory_gradient, write_grad
from lifelong.strategies._rehearsal import Rehearsal


@STRATEGIES.register("agem")
class AGEM(Rehearsal):
    """Averaged GEM (Chaudhry et al. 2019, ICLR): one averaged memory constraint, no QP.

    "Efficient Lifelong Learning with A-GEM", §4. GEM's k constraints, one per past task,
    become one on the average memory loss (Eq. 10): ⟨g̃, g_ref⟩ ≥ 0, with g_ref the gradient
    on `memory_batch` examples drawn uniformly, without replacement (the whole memory when
    the batch is as large), from the memories of all past tasks. When g
    violates it, g̃ = g − (gᵀg_ref / g_refᵀg_ref)·g_ref (Eq. 11); otherwise g is kept. No QP
    and no host sync per step.

    Args:
        memory_size: examples kept per task (the paper: 250 on MNIST).
        memory_batch: examples for g_ref each step (the paper: 256).
    """

    name = "agem"

    def __init__(self, model: nn.Module, *, memory_size: int = 256,
                 memory_batch: int = 256) -> None:
        super().__init__(model, memory_size=memory_size, memory_batch=memory_batch)

    def after_backward(self) -> None:
        if not self.state.num_tasks:
            return
        assert self.memory_batch is not None
        params = self.params
        ref = memory_gradient(self.model, params,
                              self.state.sample(self.memory_batch, self.draws()))
        write_grad(params, agem_project(flat_grad(params), ref))
