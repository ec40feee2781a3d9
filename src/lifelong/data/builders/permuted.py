"""The `permuted` stream: every task is the source with its pixels shuffled by a fixed
permutation (Goodfellow et al. 2013; Kirkpatrick et al. 2017; Lopez-Paz & Ranzato 2017).

Owns drawing each task's permutation and its example subsets from the task key. Default
scenario `domain`: one shared 10-way head; `task` gives a head per task; `class` makes each
task's ten labels new classes (10i..10i+9).
"""

from __future__ import annotations

import torch

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
)
from lifelong.data.task import Scenario, Stream
from lifelong.seeding import generator


@STREAMS.register("permuted")
def build_permuted(
    seed: int,
    *,
    source: str = "digits",
    num_tasks: int = 5,
    train_per_task: int | None = None,
    test_per_task: int | None = None,
    scenario: Scenario = "domain",
    identity_first: bool = False,
    first_task: int = 0,
    data_dir: str | None = None,
    validation: float = 0.0,
    evaluate_on: EvaluateOn = "test",
) -> Stream:
    """Permuted-pixel tasks.

    Args:
        identity_first: keep task 0 unpermuted (the original images), as in the EWC paper.
        first_task: the number of the first task's key: the stream holds tasks
            ``first_task .. first_task + num_tasks - 1`` of a longer one, the same tasks as
            there (each is seeded by its key). E.g. A-GEM's protocol (Chaudhry et al. 2019):
            of 20 tasks, 0-2 tune the hyper-parameters and 3-19 are the stream reported.
        data_dir: folder holding the source's files (default: the usual search path).
        validation: share of each task's training examples held out as its validation
            split (drawn from the task's key; 0 = none), for choosing hyper-parameters.
        evaluate_on: ``"validation"`` scores every task on its validation split in place of
            its test set, which is then never read: how a protocol is tuned without its
            test data.
    """
    raise_if(check_common("permuted", num_tasks=num_tasks, train_per_task=train_per_task,
                          test_per_task=test_per_task, scenario=scenario,
                          validation=validation, evaluate_on=evaluate_on)
             + ([] if isinstance(first_task, int) and not isinstance(first_task, bool)
                and first_task >= 0 else
                [f"stream 'permuted': first_task={first_task!r} must be an integer >= 0 "
                 "(the key number of the stream's first task)"]))
    src = load_sized("permuted", source, data_dir, train_per_task, test_per_task)
    shape = src.image_shape
    pixels = int(torch.tensor(shape).prod())
    tasks = []
    for i in range(num_tasks):
        key = f"permuted/{source}/{first_task + i}"
        if identity_first and first_task + i == 0:
            perm = torch.arange(pixels)
        else:
            perm = torch.randperm(pixels, generator=generator(seed, "permutation", key))
        tr = subset(len(src.train_y), train_per_task, seed, key, "train")
        tr, va = hold_out(tr, validation, seed, key)

        def permute(x: torch.Tensor, perm: torch.Tensor = perm) -> torch.Tensor:
            return x.reshape(len(x), -1)[:, perm].reshape(len(x), *shape)

        val = (permute(src.train_x[va]), src.train_y[va]) if validation else None
        if evaluate_on == "validation" and val is not None:
            test = val
        else:
            te = subset(len(src.test_y), test_per_task, seed, key, "test")
            test = (permute(src.test_x[te]), src.test_y[te])
        tasks.append(make_task(
            key=key, index=i, scenario=scenario,
            train=(permute(src.train_x[tr]), src.train_y[tr]), test=test, validation=val,
            classes=range(src.num_classes), offset=src.num_classes * i,
        ))
    return make_stream(f"permuted/{source}", scenario, tasks, shape)
