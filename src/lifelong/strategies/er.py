"""`er`: experience replay — every step also trains on a batch drawn from the episodic memory.

Owns the replay loss. The memory (per-task slots, class-balanced reservoir) and its filling at
the end of each task come from `_rehearsal.Rehearsal`.
"""

from __future__ import annotations

from torch import Tensor, nn

from lifelong.data.task import Batch
from lifelong.strategies import STRATEGIES
from lifelong.strategies._rehearsal import Rehearsal


@STRATEGIES.register("er")
class ER(Rehearsal):
    """Experience replay (Chaudhry et al. 2019): a memory batch joins every training step.

    "On Tiny Episodic Memories in Continual Learning", arXiv:1902.10486 (ER with reservoir
    memories, here filled per task and class-balanced).

    Each step's batch B is joined by a batch M of `memory_batch` examples drawn uniformly from
    the memories of all past tasks, and the loss is the mean over the joint batch:
    (|B|·ℓ(B) + |M|·ℓ(M)) / (|B| + |M|). The memories go through the model with their own task
    labels, so in task-IL each one is scored by its own head; in domain- and class-IL the
    shared head scores them all. On the first task the memory is empty and this is plain
    cross-entropy.

    Args:
        memory_size: examples kept per task.
        memory_batch: memories replayed per step (the paper uses the training batch size, 10).
    """

    name = "er"

    def __init__(self, model: nn.Module, *, memory_size: int = 256,
                 memory_batch: int = 10) -> None:
        super().__init__(model, memory_size=memory_size, memory_batch=memory_batch)

    def loss(self, batch: Batch, logits: Tensor) -> Tensor:
        current = super().loss(batch, logits)
        if not self.state.num_tasks:
            return current
        assert self.memory_batch is not None
        mem = self.state.sample(self.memory_batch, self.draws())
        replay = super().loss(mem, self.model(mem.x, mem.t))
        n, m = len(batch.y), len(mem.y)
        return (n * current + m * replay) / (n + m)
