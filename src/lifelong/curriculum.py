"""Curricula: measuring how tasks help each other, and choosing a training order from it.

Owns `task_affinity` (a cheap version of Taskonomy's task affinity, Zamir et al. 2018, CVPR:
how much a model trained on task i helps a small budget of training on task j, and how much
that budget costs task i), its result `Affinity`, the order choosers (`CHOOSERS`, `choose`)
and `check_order`, and `measured_affinity` (the affinity of a run config's stream, measured
with its own model, strategy and training). Does not own reordering a stream
(`Stream.reorder`, which keeps every task's key and data) nor the orders a stream option
names without training (`NAMED_ORDERS` in `lifelong.data.builders`, reused here for
``given``, ``reverse`` and ``random``).

Affinity is measured on each task's validation split (`Task.validation`, held out of its
training examples), never on its test set: the orders chosen from it are then scored on the
test sets, and a choice made on them would be tuned to what it is judged on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from lifelong.data.builders import build_stream, resolve_order
from lifelong.data.task import Stream, Task, check_order
from lifelong.errors import ConfigError
from lifelong.evaluate import accuracy
from lifelong.registry import suggest
from lifelong.seeding import generator
from lifelong.strategies.base import Strategy
from lifelong.train import LifelongWarning, TrainConfig, fit_stream

# Where `task_affinity` and `greedy_affinity` depart from Taskonomy (Zamir et al. 2018, §3):
# printed by the `task-order` report beside the matrix.
DEPARTURES = (
    "the whole network trained on task i is fine-tuned on task j's budget (Taskonomy freezes "
    "the source encoder and trains a small readout on it)",
    "targets are compared through ranks of the sources' transfer (an ordinal normalisation "
    "per target); Taskonomy builds a pairwise tournament over per-image wins and takes the "
    "principal eigenvector (AHP)",
    "a source's model is the method's own (with its learned state, e.g. a replay memory), "
    "trained on one task of the stream, not a network trained on a large dataset",
    "the budget on the target is a fixed number of steps (one pass over `budget` examples), "
    "not training on a limited set of the target's data until it converges",
)

# The budget's size: enough examples for several steps (128 at batch 32: four) in one pass, so
# that it measures how a source helps learning the target, not one step's learning rate. More
# passes over fewer examples overfit them and wreck the source's model (measured on the
# `task-order` stream: 20 examples for 10 epochs cost a task up to 0.49 of its own accuracy,
# 128 examples in one pass at most 0.08; the README's task-order notes).
BUDGET = 128
BUDGET_EPOCHS = 1

Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True, slots=True)
class Affinity:
    """What `task_affinity` measured; rows and columns follow `keys` (the stream's order).
    Every accuracy is on the task's validation split, never its test set.

    Attributes:
        keys: the task keys, in stream order.
        solo: solo[i], validation accuracy on task i of a fresh model trained on i alone (θ_i).
        scratch: scratch[j], validation accuracy on j of a fresh model after the budget on j.
        transfer: transfer[i][j] = (accuracy on j of θ_i after the budget on j) − scratch[j].
        forgetting: forgetting[i][j] = solo[i] − accuracy on i of θ_i after the budget on j.
        budget: training examples of the budget.
        budget_epochs: epochs over them (JSON saved before it existed: 1).
    """

    keys: tuple[str, ...]
    solo: tuple[float, ...]
    scratch: tuple[float, ...]
    transfer: Matrix
    forgetting: Matrix
    budget: int
    budget_epochs: int = 1

    def __post_init__(self) -> None:
        t = len(self.keys)
        bad = [name for name in ("solo", "scratch") if len(getattr(self, name)) != t]
        bad += [name for name in ("transfer", "forgetting")
                if len(getattr(self, name)) != t or any(len(r) != t for r in getattr(self, name))]
        if bad:
            raise ConfigError(f"Affinity over {t} tasks: {', '.join(bad)} must have {t} entries "
                              f"(transfer and forgetting {t}×{t}); was it saved by to_json()?")

    @property
    def normalised(self) -> Matrix:
        """transfer normalised per target: normalised[i][j] is the share of the other sources
        i' ∉ {i, j} whose transfer to j is below i's (a tie counts a half), in [0, 1]; the
        diagonal (j continuing on itself, no source) is 0.5, as is every entry of a target
        with a single source.

        Why: Taskonomy (Zamir et al. 2018, §3.3) makes targets comparable with an ordinal
        normalisation per target (AHP over per-image wins), because raw gains are in units
        that differ by target. Ours are accuracies, but targets still differ in headroom
        (what a fresh model reaches on the budget, how far the task can go), so a target with
        a wide spread of gains would dominate a sum over targets. Ranks keep only the order of
        the sources for each target, AHP's ordinal core, without the per-example outputs its
        tournament needs (on 0/1 correctness most pairs of sources would tie).
        """
        t = len(self.keys)
        out = []
        for i in range(t):
            row = []
            for j in range(t):
                others = [self.transfer[k][j] for k in range(t) if k not in (i, j)]
                if i == j or not others:
                    row.append(0.5)
                    continue
                v = self.transfer[i][j]
                below = sum(1.0 if o < v else 0.5 if o == v else 0.0 for o in others)
                row.append(below / len(others))
            out.append(tuple(row))
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        """The fields as plain JSON values (lists and numbers)."""
        return {"keys": list(self.keys), "solo": list(self.solo), "scratch": list(self.scratch),
                "transfer": [list(r) for r in self.transfer],
                "forgetting": [list(r) for r in self.forgetting], "budget": self.budget,
                "budget_epochs": self.budget_epochs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Affinity:
        """The `Affinity` that `to_json` wrote; a `ConfigError` names missing fields."""
        fields = ("keys", "solo", "scratch", "transfer", "forgetting", "budget")
        if missing := [f for f in fields if f not in data]:
            raise ConfigError(f"Affinity JSON lacks {', '.join(missing)}; save it with "
                              "Affinity.to_json()")
        return cls(tuple(map(str, data["keys"])), tuple(map(float, data["solo"])),
                   tuple(map(float, data["scratch"])),
                   tuple(tuple(map(float, r)) for r in data["transfer"]),
                   tuple(tuple(map(float, r)) for r in data["forgetting"]), int(data["budget"]),
                   int(data.get("budget_epochs", 1)))


def task_affinity(stream: Stream, build: Callable[[int], Strategy], cfg: TrainConfig, *,
                  budget: int = BUDGET, budget_epochs: int = BUDGET_EPOCHS,
                  seed: int = 0) -> Affinity:
    """Measure how much each task helps a small budget of training on each other task.

    θ_i is a fresh strategy (``build(seed)``) trained on task i alone with `cfg`. For every
    pair (i, j) a fresh strategy loads θ_i's state and trains `budget_epochs` epochs on the
    budget of j: its first `budget` training examples in an order seeded by (seed, j's key),
    so the budget does not depend on the task's position. That is `budget_epochs` ×
    ⌈budget / cfg.batch_size⌉ optimizer steps (the defaults, 128 examples once at batch 32:
    four; a budget within one batch is a single step). A fresh strategy trained on the same
    budget gives the baseline `scratch[j]`. The diagonal is task i continuing on itself, so it
    is expected to be the largest entry of its column. One-task streams keep each task's
    index, so task-IL heads are the right ones.

    Every accuracy is measured on the tasks' validation splits (`Task.validation`, held out of
    their training examples): the one-task streams trained here carry the validation split in
    place of the test set, so neither this function nor the loop's own evaluations read a
    test set. The orders chosen from the result are scored on the test sets.

    Departures from Taskonomy: `DEPARTURES` (the whole network is fine-tuned; targets are
    compared by rank, `Affinity.normalised`).

    Cost: T full trainings (`cfg.epochs` over each task) plus T² + T budget runs; each run
    also makes the loop's two evaluations of its task, and 2T² + 2T validation evaluations
    come on top. A method's learned state travels with θ_i (e.g. a replay memory of task i
    keeps rehearsing it during the budget on j): what is measured is the method's transfer,
    not only the weights'.

    Raises:
        ConfigError: an empty stream, a task without a validation split, a budget that is not
            in 1..(smallest training set) or budget_epochs below 1; and whatever `fit_stream`
            raises (an unsupported scenario, divergence, a method that cannot train an earlier
            task again such as PNN).
    """
    sizes = [len(task.train) for task in stream.tasks]
    if not sizes or isinstance(budget, bool) or not isinstance(budget, int) or not (
            1 <= budget <= min(sizes)):
        raise ConfigError(f"task_affinity: budget={budget!r} must be an integer from 1 to the "
                          f"smallest task's training examples ({min(sizes, default=0)}) of "
                          f"stream '{stream.name}' ({len(sizes)} tasks); lower it")
    if isinstance(budget_epochs, bool) or not isinstance(budget_epochs, int) \
            or budget_epochs < 1:
        raise ConfigError(f"task_affinity: budget_epochs={budget_epochs!r} must be an integer "
                          ">= 1")
    if missing := [task.key for task in stream.tasks
                   if task.validation is None or not len(task.validation)]:
        raise ConfigError(
            f"task_affinity: task{'s' if len(missing) > 1 else ''} {', '.join(missing)} of "
            f"stream '{stream.name}' {'have' if len(missing) > 1 else 'has'} no validation "
            "split; affinity is measured on examples held out of training, never on the test "
            "set the chosen order is scored on. Build the stream with one: --set "
            "stream.validation=0.1 (in Python build_stream(..., validation=0.1))")
    labels = stream.scenario == "task"
    # Each task with its validation split in place of its test set: the loop's evaluations
    # and ours read only held-out training examples.
    held = [replace(task, test=task.validation, validation=None) for task in stream.tasks
            if task.validation is not None]

    def score(strategy: Strategy, task: Task) -> float:
        return accuracy(strategy, task.test, task_labels=labels, batch_size=cfg.eval_batch_size)

    def train(strategy: Strategy, task: Task, config: TrainConfig) -> Strategy:
        fit_stream(strategy, replace(stream, tasks=(task,)), config, seed=seed)
        return strategy

    def budgeted(task: Task) -> Task:
        order = torch.randperm(len(task.train),
                               generator=generator("affinity-budget", seed, task.key))
        return replace(task, train=task.train.take(order[:budget]))

    short = replace(cfg, epochs=budget_epochs, eval_every=None, measure_train=False)
    tasks, small = held, [budgeted(task) for task in held]
    states, solo = [], []
    for task in tasks:
        strategy = train(build(seed), task, cfg)
        states.append(strategy.state_dict())
        solo.append(score(strategy, task))
    with warnings.catch_warnings():
        # A tiny budget may well leave a model near chance: that is what is measured here, not
        # the mistake the loop's "learned nothing" warning is there to point out.
        warnings.simplefilter("ignore", LifelongWarning)
        scratch = [score(train(build(seed), small[j], short), tasks[j])
                   for j in range(len(tasks))]
        transfer, forgetting = [], []
        for i, state in enumerate(states):
            row_t, row_f = [], []
            for j in range(len(tasks)):
                strategy = build(seed)
                strategy.load_state_dict(state)
                train(strategy, small[j], short)
                row_t.append(score(strategy, tasks[j]) - scratch[j])
                row_f.append(solo[i] - score(strategy, tasks[i]))
            transfer.append(tuple(row_t))
            forgetting.append(tuple(row_f))
    return Affinity(tuple(t.key for t in tasks), tuple(solo), tuple(scratch), tuple(transfer),
                    tuple(forgetting), budget, budget_epochs)


@dataclass(frozen=True, slots=True)
class Choice:
    """A training order (stream positions, to pass to `Stream.reorder`) and why it was chosen."""

    order: tuple[int, ...]
    reason: str


Chooser = Callable[[int, Affinity | None, int], Choice]


def _needs(affinity: Affinity | None, name: str) -> Affinity:
    if affinity is None:
        raise ConfigError(f"order chooser '{name}' needs a measured affinity; pass "
                          "affinity=task_affinity(stream, ...)")
    return affinity


# The orders the stream option `order` names, with no training (`resolve_order`; ``random``
# draws from ``generator("order", seed)``, never the global RNG), and why each is chosen.
_NAMED = {"given": "the stream's own order", "reverse": "the stream's order reversed",
          "random": "a random order from generator('order', {seed})"}


def _named(name: str) -> Chooser:
    def chooser(t: int, affinity: Affinity | None, seed: int) -> Choice:
        return Choice(tuple(resolve_order(name, t, seed)), _NAMED[name].format(seed=seed))
    return chooser


def easy_to_hard(t: int, affinity: Affinity | None, seed: int) -> Choice:
    """Tasks by solo accuracy, highest first (ties: lower position first): a curriculum in
    the sense of Bengio et al. 2009, with difficulty measured by learning each task alone
    (scored on its validation split)."""
    solo = _needs(affinity, "easy-to-hard").solo
    order = sorted(range(len(solo)), key=lambda i: (-solo[i], i))
    return Choice(tuple(order), "tasks by accuracy learned alone, highest first")


def greedy_affinity(t: int, affinity: Affinity | None, seed: int) -> Choice:
    """First the task learned best alone, then each time the task that the tasks chosen so far
    help most, targets compared by rank (`Affinity.normalised`, Taskonomy's per-target
    normalisation in ordinal form): argmax over unchosen j of Σ_{i chosen} normalised[i][j],
    ties broken by the raw summed transfer, then by lower position."""
    a = _needs(affinity, "greedy-affinity")
    if not a.solo:
        return Choice((), "no tasks to order")
    first = max(range(len(a.solo)), key=lambda i: (a.solo[i], -i))
    order = [first]
    ranks = a.normalised
    while len(order) < len(a.solo):
        rest = [j for j in range(len(a.solo)) if j not in order]
        order.append(max(rest, key=lambda j: (sum(ranks[i][j] for i in order),
                                              sum(a.transfer[i][j] for i in order), -j)))
    return Choice(tuple(order), (
        f"starts with task {first} ({a.keys[first]}) because it is learned best alone "
        f"(validation accuracy {a.solo[first]:.3f}); then each next task is the one the tasks "
        "chosen so far help most (summed transfer, ranked per target)"))


CHOOSERS: dict[str, Chooser] = {**{name: _named(name) for name in _NAMED},
                                "easy-to-hard": easy_to_hard, "greedy-affinity": greedy_affinity}


def choose(name: str, stream_or_t: Stream | int, *, affinity: Affinity | None = None,
           seed: int = 0) -> Choice:
    """The order chooser `name` applied to a stream (or a number of tasks).

    Raises:
        ConfigError: unknown chooser; a chooser that needs an affinity got none; the affinity
            was measured on other tasks; the chooser returned no permutation.
    """
    if name not in CHOOSERS:
        raise ConfigError(f"unknown order chooser '{name}'{suggest(name, CHOOSERS)}; valid: "
                          f"{', '.join(CHOOSERS)}")
    if isinstance(stream_or_t, Stream):
        t, keys = len(stream_or_t), tuple(task.key for task in stream_or_t.tasks)
    else:
        t, keys = stream_or_t, None
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ConfigError(f"choose: {t!r} is neither a stream nor a number of tasks")
    if affinity is not None and (len(affinity.keys) != t or keys not in (None, affinity.keys)):
        raise ConfigError(f"the affinity was measured on tasks {list(affinity.keys)}, not on "
                          f"this stream's {t}; measure it on the stream being ordered")
    choice = CHOOSERS[name](t, affinity, seed)
    if problems := check_order(choice.order, t):
        raise ConfigError([f"order chooser '{name}': {p}" for p in problems])
    return choice


def measured_affinity(config: Mapping[str, Any], strategy: str, seed: int, *,
                      budget: int = BUDGET) -> tuple[Stream, Affinity]:
    """A run config's stream in its built order (`order` left out), and its tasks' affinity
    (`task_affinity`) measured with the config's model, strategy and training at `seed`."""
    from lifelong.strategies import strategy_for

    cfg = dict(config)
    s = {k: v for k, v in cfg["stream"].items() if k not in ("name", "order")}
    stream = build_stream(cfg["stream"]["name"], seed=seed, **s)
    affinity = task_affinity(stream, lambda at: strategy_for(cfg, strategy, stream, at),
                             TrainConfig(**cfg["train"]), budget=budget, seed=seed)
    return stream, affinity
