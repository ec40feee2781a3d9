"""Shared pieces of the stream builders: option checks, key-seeded subsets, label mapping.

Owns turning per-task raw images and global labels into `Task` values for a scenario. Does not
own any particular transformation (permutation, rotation, split, noise).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from lifelong.data.sources import SourceData, load_source
from lifelong.data.task import SCENARIOS, Scenario, Stream, Task, TensorData
from lifelong.errors import ConfigError
from lifelong.registry import suggest
from lifelong.seeding import generator

EvaluateOn = Literal["test", "validation"]
EVALUATE_ON: tuple[EvaluateOn, ...] = ("test", "validation")


def check_common(
    builder: str,
    *,
    num_tasks: int,
    train_per_task: int | None,
    test_per_task: int | None,
    scenario: str,
    allowed: Sequence[str] = SCENARIOS,
    validation: float = 0.0,
    evaluate_on: str = "test",
) -> list[str]:
    """Problems with the options every builder shares (empty list if none)."""
    problems = []
    if isinstance(validation, bool) or not isinstance(validation, (int, float)) \
            or not 0 <= validation < 1:
        problems.append(f"stream '{builder}': validation={validation!r} must be a share in "
                        "[0, 1) of each task's training examples (0 = none)")
    if evaluate_on not in EVALUATE_ON:
        problems.append(f"stream '{builder}': evaluate_on={evaluate_on!r} is not one of "
                        f"{', '.join(EVALUATE_ON)}{suggest(str(evaluate_on), EVALUATE_ON)}")
    elif evaluate_on == "validation" and not (isinstance(validation, (int, float))
                                              and validation > 0):
        problems.append(f"stream '{builder}': evaluate_on='validation' needs a validation "
                        "split; set validation to a share such as 0.1")
    if not isinstance(num_tasks, int) or num_tasks < 1:
        problems.append(f"stream '{builder}': num_tasks={num_tasks!r} must be an integer >= 1")
    for key, value in (("train_per_task", train_per_task), ("test_per_task", test_per_task)):
        if value is not None and (not isinstance(value, int) or value < 1):
            problems.append(
                f"stream '{builder}': {key}={value!r} must be a positive integer or null (all)"
            )
    if scenario not in allowed:
        problems.append(
            f"stream '{builder}': scenario={scenario!r} is not one of {', '.join(allowed)}"
            f"{suggest(str(scenario), allowed)}"
        )
    return problems


def task_angles(builder: str, angles: list[float] | None, num_tasks: int | None,
                default: Callable[[int], list[float]], default_count: int,
                ) -> tuple[list[float], list[str]]:
    """One angle per task: `angles` as given (then `num_tasks`, if given, must agree), or
    `default(num_tasks or default_count)`. Returns the angles and any problems."""
    if angles is None:
        n = default_count if num_tasks is None else num_tasks
        return (default(n) if isinstance(n, int) and n >= 1 else []), []
    if not angles:
        return [], [f"stream '{builder}': angles=[] gives no task; give one angle per task"]
    if num_tasks is not None and num_tasks != len(angles):
        return [], [f"stream '{builder}': {len(angles)} angles given but num_tasks="
                    f"{num_tasks}; give one angle per task or drop num_tasks"]
    names = [f"{float(a):g}" for a in angles]  # how the angle appears in the task key
    if len(set(names)) != len(names):
        return [], [f"stream '{builder}': angles={list(angles)} repeat an angle (as "
                    f"{names}); each task needs its own"]
    return [float(a) for a in angles], []


# Set by `check_stream`: builders run their option checks, then stop where data would load.
CHECK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("check_only", default=False)


class OptionsChecked(Exception):
    """Raised instead of loading data while only the options are being checked."""


def load(source: str, data_dir: str | None) -> SourceData:
    if CHECK_ONLY.get():
        raise OptionsChecked
    return load_source(source, Path(data_dir) if data_dir else None)


def load_sized(builder: str, source: str, data_dir: str | None, train_per_task: int | None,
               test_per_task: int | None) -> SourceData:
    """Load `source` and check it has enough examples for one task of each size."""
    src = load(source, data_dir)
    raise_if([too_few(builder, "train", train_per_task, len(src.train_y)),
              too_few(builder, "test", test_per_task, len(src.test_y))])
    return src


def subset(n_available: int, n: int | None, *parts: object) -> Tensor:
    """`n` indices out of `n_available`, drawn by a generator seeded from `parts` (all if None)."""
    if n is None or n >= n_available:
        return torch.arange(n_available)
    perm = torch.randperm(n_available, generator=generator("subset", *parts))
    return perm[:n].sort().values


def hold_out(train: Tensor, share: float, *parts: object) -> tuple[Tensor, Tensor]:
    """Split a task's training indices `train` into (kept, held out): a `share` of them, drawn
    by a generator seeded from `parts` (the task's key), so a task's validation examples never
    change with its position in a stream or with other options."""
    n_val = round(share * len(train))
    if n_val == 0:
        return train, train[:0]
    held = torch.zeros(len(train), dtype=torch.bool)
    held[torch.randperm(len(train), generator=generator("validation", *parts))[:n_val]] = True
    return train[~held], train[held]


def too_few(builder: str, part: str, want: int | None, have: int) -> str | None:
    if want is not None and want > have:
        return (
            f"stream '{builder}': {part}_per_task={want} but the source has only {have} "
            f"{part} examples; lower {part}_per_task or choose a larger source"
        )
    return None


def make_task(
    *,
    key: str,
    index: int,
    scenario: Scenario,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    classes: Sequence[int],
    offset: int = 0,
    validation: tuple[Tensor, Tensor] | None = None,
) -> Task:
    """A `Task` from images and global labels.

    In task- and domain-IL labels become task-local (the position of the class in `classes`);
    in class-IL they stay global, shifted by `offset` (used when every task re-uses the same
    ten labels, e.g. permuted digits: task i's classes become 10i..10i+9). `validation`, when
    given, is held out of the training examples (`hold_out`).
    """
    lookup = torch.full((max(classes) + 1,), -1, dtype=torch.int64)
    lookup[torch.tensor(list(classes))] = torch.arange(len(classes))

    def label(y: Tensor) -> Tensor:
        return lookup[y] if scenario != "class" else y + offset

    def data(x: Tensor, y: Tensor) -> TensorData:
        return TensorData(x.contiguous(), label(y), torch.full_like(y, index))

    global_classes = tuple(c + offset for c in classes) if scenario == "class" else tuple(classes)
    return Task(key, index, data(*train), data(*test), global_classes,
                validation=data(*validation) if validation is not None else None)


def make_stream(
    name: str, scenario: Scenario, tasks: Sequence[Task], input_shape: tuple[int, ...]
) -> Stream:
    """A `Stream` whose head sizes follow from the scenario."""
    all_classes = sorted({c for t in tasks for c in t.classes})
    per_task = max(len(t.classes) for t in tasks)
    num_outputs = all_classes[-1] + 1 if scenario == "class" else per_task
    return Stream(name, scenario, tuple(tasks), len(all_classes), num_outputs, input_shape)


def raise_if(problems: Sequence[str | None]) -> None:
    real = [p for p in problems if p]
    if real:
        raise ConfigError(real)
