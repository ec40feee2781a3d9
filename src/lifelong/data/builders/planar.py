"""The `planar` stream: points in the plane labelled by a logistic teacher, one per task — small
enough that the loss of every task over a two-weight model can be drawn as a surface (the
`ewc-surface` picture of the lecture and of Kirkpatrick et al. 2017, Fig. 1).

Owns drawing the synthetic tasks. Task i has inputs x = R(angle_i) · diag(1, narrow) · z with
z ~ N(0, I): long along the unit vector u_i = (cos angle_i, sin angle_i), thin across it. Its
label is y ~ Bernoulli(σ(w*_i · x)) with the teacher w*_i = sharpness · u_i, so the labels are
noisy and the task's loss has a finite optimum near w*_i. The loss is steep along u_i and almost
flat across it (curvature ratio 1/narrow²): each task cares about one direction of the weights
only. A task's key names its angle, and its points are drawn from the key, so `reorder` keeps
tasks unchanged.
"""

from __future__ import annotations

import math

import torch

from lifelong import checks
from lifelong.data.builders import STREAMS
from lifelong.data.builders._common import (
    check_common,
    make_stream,
    make_task,
    raise_if,
    task_angles,
)
from lifelong.data.task import Scenario, Stream
from lifelong.seeding import generator


@STREAMS.register("planar")
def build_planar(
    seed: int,
    *,
    num_tasks: int | None = None,
    train_per_task: int | None = 2000,
    test_per_task: int | None = 2000,
    scenario: Scenario = "domain",
    angles: list[float] | None = None,
    sharpness: float = 3.0,
    narrow: float = 0.1,
) -> Stream:
    """Two-class tasks on 2-D points.

    Args:
        num_tasks: tasks (default: one per angle, 2 without angles); must match `angles`
            when both are given.
        train_per_task, test_per_task: points per task (None = 2000).
        angles: the direction of each task's inputs and teacher, in degrees (default 0 and
            135: the second task pulls the first weight the other way).
        sharpness: ‖w*‖, how confidently the teacher labels (3: about 90 % of the labels
            agree with the side of the boundary a point is on).
        narrow: standard deviation of the inputs across their main direction (the main
            direction has 1).
    """
    chosen, problems = task_angles("planar", angles, num_tasks, lambda n: [0.0, 135.0][:n],
                                   default_count=2)
    count = num_tasks if num_tasks is not None else max(len(chosen), 1)
    problems += check_common("planar", num_tasks=count,
                             train_per_task=train_per_task, test_per_task=test_per_task,
                             scenario=scenario, allowed=("domain", "task"))
    if angles is None and isinstance(num_tasks, int) and num_tasks > 2:
        problems.append(f"stream 'planar': num_tasks={num_tasks} needs one angle per task "
                        "(stream.angles=[0, 135, ...])")
    for key, value in (("sharpness", sharpness), ("narrow", narrow)):
        problems += checks.number("stream 'planar'", key, value, low=0.0, low_open=True)
    raise_if(problems)
    sizes = {"train": train_per_task or 2000, "test": test_per_task or 2000}
    tasks = []
    for i, angle in enumerate(chosen):
        key = f"planar/{angle:g}"
        a = math.radians(angle)
        rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        teacher = sharpness * rotation[:, 0]
        parts = []
        for part, n in sizes.items():
            g = generator(seed, "planar", key, part)
            z = torch.randn(n, 2, generator=g) * torch.tensor([1.0, float(narrow)])
            x = z @ rotation.T
            y = (torch.rand(n, generator=g) < torch.sigmoid(x @ teacher)).long()
            parts.append((x, y))
        tasks.append(make_task(key=key, index=i, scenario=scenario, train=parts[0],
                               test=parts[1], classes=(0, 1)))
    return make_stream("planar", scenario, tasks, (2,))
