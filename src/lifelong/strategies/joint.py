"""`joint`: the upper bound. Training on task k uses the data of all tasks 0..k seen so far.

Owns `task_data` only. This is "cumulative" joint training (each task's model sees every
earlier task's data again), so its matrix stays comparable row by row with the other methods;
its last row is the classic multi-task upper bound. Keeping every example is what the method
is, so the examples are its learned state: a saved joint run resumes with all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from lifelong.data.task import Inputs, Task, TensorData
from lifelong.strategies import STRATEGIES
from lifelong.strategies.base import Card, Strategy, StrategyState


@dataclass
class JointState(StrategyState):
    seen: list[str] = field(default_factory=list)  # keys of the tasks kept, in order
    x: Inputs | None = None  # their training examples, concatenated in that order
    y: Tensor | None = None
    t: Tensor | None = None


@STRATEGIES.register("joint")
class Joint(Strategy):
    """Joint (multi-task) training on the union of all tasks seen so far."""

    name = "joint"
    card = Card(family="baseline",
                not_comparable="trains on all tasks seen so far (more data than the bare loop)")
    version = 2  # v1 did not keep the examples in its state (it could not resume)

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.state: JointState = JointState()

    def task_data(self, task: Task) -> TensorData:
        st = self.state
        if task.key not in st.seen:  # a task trained again is not added twice
            new = task.train.to(self.device)
            if st.x is not None and st.y is not None and st.t is not None:
                new = TensorData.concat([TensorData(st.x, st.y, st.t), new])
            st.x, st.y, st.t = new.x, new.y, new.t
            st.seen.append(task.key)
        assert st.x is not None and st.y is not None and st.t is not None
        return TensorData(st.x, st.y, st.t)
