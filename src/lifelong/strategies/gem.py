"""`gem`: Gradient Episodic Memory — the update is projected so that no past task's memory loss
increases.

Owns GEM's `after_backward`: one reference gradient per past task and, when the step would
raise any of their losses, the small quadratic program. The memory comes from
`_rehearsal.Rehearsal`; the gradient maths from `_gradients`.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from lifelong import checks
from lifelong.errors import ConfigError
from lifelong.strategies import STRATEGIES
from lifelong.strategies._gradients import TaskGradients, flat_grad, gem_project, write_grad
from lifelong.strategies._rehearsal import Rehearsal


@STRATEGIES.register("gem")
class GEM(Rehearsal):
    """Gradient Episodic Memory (Lopez-Paz & Ranzato 2017, NeurIPS, §3): project the update.

    After the backward pass, g_k = ∇ℓ(f_θ, M_k) is computed on the memories M_k of every past
    task k (Eq. 7 as a first-order test). If ⟨g, g_k⟩ ≥ 0 for all k the gradient g is kept;
    otherwise it is replaced by the closest gradient g̃ that satisfies every constraint, from
    the dual QP of Eqs. 10–11 (`_gradients.gem_project`, solved with quadprog as the authors
    do). Past-task gradients are one (k, P) matrix from a single vmapped pass over the
    memories, so all tasks cost one call per step.

    Departure: the paper keeps the last `memory_size` examples of each task's stream; here
    each task's memory is a class-balanced random sample of its training set (a reservoir per
    class, `lifelong.memory`), shared with ER and A-GEM. With a single pass over shuffled
    data the two are samples of the same distribution, but ours keeps every class even when a
    task's last examples happen to miss one.

    Args:
        memory_size: examples kept per task (the paper: 256 on MNIST).
        memory_batch: memories per past task for g_k each step, drawn with replacement;
            null = all of them, as in the paper (k·memory_size examples per step).
        memory_strength: γ, the floor on the dual variables that biases the update towards
            positive backward transfer (the authors use 0.5 on MNIST; 0 = exact projection).
    """

    name = "gem"
    card = replace(Rehearsal.card, departures=(
        "each task's memory is a class-balanced random sample of its training set, not its "
        "last examples",))
    all_memories_allowed = True

    def __init__(self, model: nn.Module, *, memory_size: int = 256,
                 memory_batch: int | None = None, memory_strength: float = 0.5) -> None:
        super().__init__(model, memory_size=memory_size, memory_batch=memory_batch)
        problems = checks.number("strategy 'gem'", "memory_strength", memory_strength, low=0.0,
                                 hint="0 = exact projection; the paper uses 0.5")
        if problems:
            raise ConfigError(problems)
        self.memory_strength = memory_strength
        self._task_gradients: TaskGradients | None = None

    def after_backward(self) -> None:
        if not self.state.num_tasks:
            return
        params = self.params
        if self._task_gradients is None or self._task_gradients.params is not params:
            self._task_gradients = TaskGradients(self.model, params)
        G = self._task_gradients(self.state.per_task(self.memory_batch, self.draws()))
        g = flat_grad(params)
        if bool((G @ g < 0).any()):  # one host sync: the QP runs on the CPU anyway
            write_grad(params, gem_project(g, G, margin=float(self.memory_strength)))
