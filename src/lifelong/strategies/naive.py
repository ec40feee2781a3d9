"""`naive`: plain fine-tuning on each task in turn — the lower bound that forgets.

Owns nothing beyond the base: every hook keeps its default (cross-entropy on the current
task's data only).
"""

from __future__ import annotations

from lifelong.strategies import STRATEGIES
from lifelong.strategies.base import Card, Strategy


@STRATEGIES.register("naive")
class Naive(Strategy):
    """Fine-tuning: train on each new task with no protection of earlier ones."""

    name = "naive"
    card = Card(family="baseline")
