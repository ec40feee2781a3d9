"""`joint`: the upper bound. Training on task k uses the data of all tasks 0..k seen so far.

Owns `task_data` only. This is "cumulative" joint training (each task's model sees every
earlier task's data again), so its matrix stays comparable row by row with the other methods;
its last row is the classic multi-task upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from lifelong.data.task import Task, TensorData
from lifelong.strategies import STRATEGIES
from lifelong.strategies.base import Strategy, StrategyState


@dataclass
class JointState(StrategyState):
    seen: list[str] = field(default_factory=list)  # keys of tasks trained so far


@STRATEGIES.register("joint")
class Joint(Strategy):
    """Joint (multi-task) training on the union of all tasks seen so far."""

    name = "joint"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.state: JointState = JointState()
        # The examples themselves are data, not learned state: they are not in state_dict().
        self._data: list[TensorData] = []

    def task_data(self, task: Task) -> TensorData:
        self._data.append(task.train)
        self.state.seen.append(task.key)
        return TensorData.concat(self._data)
