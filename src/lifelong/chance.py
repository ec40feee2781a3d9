"""Telling a task that was learned no better than chance.

Owns the chance level of a task (what a model that learned nothing scores) and the warning the
loop raises when the accuracy on the task just learned is at or below it: the loss stayed
finite, so no `DivergenceError` told the user, yet training did nothing useful. Does not own
raising or recording the warning (`lifelong.train`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lifelong.data.task import Stream, Task
    from lifelong.strategies.base import Strategy
    from lifelong.train import TrainConfig

# How far above chance an accuracy must be to count as "learned something": a little more than
# the noise of a guess on a few hundred test examples.
CHANCE_MARGIN = 0.02


def chance_level(stream: Stream, task: Task) -> float:
    """The accuracy on `task` of a model that learned nothing: the higher of always predicting
    the most frequent class of its test set and guessing among the classes the model chooses
    from (`stream.num_outputs`: a head's width in task- and domain-IL, every class seen or not
    in class-IL, where the frequent-class rule is the higher one)."""
    y = task.test.y
    frequent = float(torch.bincount(y).max()) / len(y) if len(y) else 0.0
    return max(frequent, 1.0 / max(stream.num_outputs, 1))


def chance_warning(strategy: Strategy, stream: Stream, position: int, cfg: TrainConfig,
                   accuracy: float) -> str | None:
    """A warning when the accuracy on the task just learned (`stream.tasks[position]`) is no
    better than chance: training did nothing useful (the loss stayed finite, so no
    DivergenceError told the user)."""
    task = stream.tasks[position]
    if not len(task.test):
        return None
    chance = chance_level(stream, task)
    if accuracy > chance + CHANCE_MARGIN:
        return None
    lr = ("train.lr too high" if cfg.lr > 1 else "train.lr too high or too low")
    strength = strategy.hparams().get("strength")
    budget = ("epochs", cfg.epochs) if cfg.steps_per_task is None else (
        "steps_per_task", cfg.steps_per_task)
    causes = [f"{lr} ({cfg.lr})", f"too little training (train.{budget[0]}={budget[1]})"]
    options = ["train.lr=...", f"train.{budget[0]}=..."]
    if isinstance(strength, (int, float)) and strength > 0:
        causes.insert(1, f"strategy.strength too large ({strength})")
        options.insert(1, "strategy.strength=...")
    where = "below" if accuracy < chance - CHANCE_MARGIN else "at"
    return (f"{strategy.name}: accuracy on task {position + 1}/{len(stream)} ({task.key}) "
            f"right after learning it is {accuracy:.3f}, {where} chance ({chance:.3f}): the "
            f"model learned nothing — likely {', '.join(causes[:-1])} or {causes[-1]}; try "
            + " or ".join(f"--set {o}" for o in options))
