"""The `rotated` stream: every task is the source rotated by a fixed angle (Lopez-Paz &
Ranzato 2017 use rotations in [0°, 180°)).

Owns rotating images (bilinear, zero fill, with `torch.nn.functional.grid_sample`, no
torchvision) and the angle list. A task's key names its angle, so reordering keeps tasks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lifelong.data.builders import STREAMS
from lifelong.data.builders._common import (
    EvaluateOn,
    check_common,
    hold_out,
    load_sized,
    make_stream,
    make_task,
    raise_if,
    subset,
    task_angles,
)
from lifelong.data.task import Scenario, Stream


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a batch of images (N, C, H, W) about the centre by `degrees`, clockwise as the
    image is displayed (row 0 at the top): at 90° the top-right corner goes bottom-right."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]],
                         dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@STREAMS.register("rotated")
def build_rotated(
    seed: int,
    *,
    source: str = "digits",
    num_tasks: int | None = None,
    train_per_task: int | None = None,
    test_per_task: int | None = None,
    scenario: Scenario = "domain",
    angles: list[float] | None = None,
    max_angle: float = 180.0,
    data_dir: str | None = None,
    validation: float = 0.0,
    evaluate_on: EvaluateOn = "test",
) -> Stream:
    """Rotated tasks.

    Args:
        angles: one angle in degrees per task; default `num_tasks` angles evenly spaced in
            [0, max_angle).
        max_angle: upper end of the default angles.
        validation: share of each task's training examples held out as its validation
            split (drawn from the task's key; 0 = none), for choosing hyper-parameters.
        evaluate_on: ``"validation"`` scores every task on its validation split in place of
            its test set, which is then never read: how a protocol is tuned without its
            test data.
    """
    chosen, problems = task_angles("rotated", angles, num_tasks, lambda n: [
        max_angle * i / n for i in range(n)], default_count=5)
    count = num_tasks if num_tasks is not None else max(len(chosen), 1)
    problems += check_common("rotated", num_tasks=count,
                             train_per_task=train_per_task, test_per_task=test_per_task,
                             scenario=scenario, validation=validation,
                             evaluate_on=evaluate_on)
    raise_if(problems)
    src = load_sized("rotated", source, data_dir, train_per_task, test_per_task)
    tasks = []
    for i, angle in enumerate(chosen):
        key = f"rotated/{source}/{angle:g}"
        tr = subset(len(src.train_y), train_per_task, seed, key, "train")
        tr, va = hold_out(tr, validation, seed, key)
        val = (rotate(src.train_x[va], angle), src.train_y[va]) if validation else None
        if evaluate_on == "validation" and val is not None:
            test = val
        else:
            te = subset(len(src.test_y), test_per_task, seed, key, "test")
            test = (rotate(src.test_x[te], angle), src.test_y[te])
        tasks.append(make_task(
            key=key, index=i, scenario=scenario,
            train=(rotate(src.train_x[tr], angle), src.train_y[tr]), test=test,
            validation=val,
            # In class-IL each task gets its own block of class ids by its position in the
            # stream as built (reorder keeps them with their task).
            classes=range(src.num_classes), offset=src.num_classes * i,
        ))
    return make_stream(f"rotated/{source}", scenario, tasks, src.image_shape)
