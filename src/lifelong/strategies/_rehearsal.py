"""The base of methods that keep an episodic memory: `er`, `gem`, `agem`.

Owns what they share: the `memory_size` / `memory_batch` options and their checks, the memory
as learned state (`lifelong.memory.EpisodicMemory`), filling it with each finished task, the
generator for per-step memory draws, and the list of trainable parameters the gradient methods
work on. Does not own how the memories are used (each method's own file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Task
from lifelong.errors import ConfigError
from lifelong.memory import EpisodicMemory
from lifelong.strategies.base import Card, Strategy


class Rehearsal(Strategy):
    """A strategy with `memory_size` slots per past task, filled at the end of each task.

    Args:
        memory_size: examples kept per task (class-balanced reservoir over its training set).
        memory_batch: memories used per training step (each method says how).
    """

    card = Card(family="memory")
    state: EpisodicMemory
    # Whether memory_batch may be None ("all memories", GEM's paper setting).
    all_memories_allowed: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, memory_size: int, memory_batch: int | None) -> None:
        super().__init__(model)
        who = f"strategy '{self.name}'"
        problems = [
            *checks.count(who, "memory_size", memory_size, hint="examples kept per task"),
            *checks.count(who, "memory_batch", memory_batch,
                          none="all memories" if self.all_memories_allowed else None,
                          hint="memories used per step")]
        if problems:
            raise ConfigError(problems)
        self.memory_size, self.memory_batch = memory_size, memory_batch
        self.state = EpisodicMemory()
        self._task_key: str | None = None
        self._params: list[nn.Parameter] | None = None

    def before_task(self, task: Task) -> None:
        self._task_key = task.key
        self._params = None  # the trainable set may change between tasks

    @property
    def params(self) -> list[nn.Parameter]:
        """The trainable parameters, listed once per task (not once per step)."""
        if self._params is None:
            self._params = list(self.trainable_parameters())
        return self._params

    def remap(self, fn: Callable[..., Tensor]) -> None:
        """The model changed shape: its parameters are new objects, so list them again (the
        memories hold examples, not per-parameter values: nothing else to carry)."""
        self._params = None

    def draws(self) -> torch.Generator:
        """The generator of this task's per-step memory draws (seeded by the task key)."""
        return self.generator("memory", self._task_key)

    def after_task(self, task: Task) -> None:
        """Store `memory_size` examples of the task just learned."""
        self.state.add(task.key, task.train, slots=self.memory_size,
                       generator=self.generator("memory-fill", task.key), device=self.device)

