"""The `noisy` stream: the lecture's forgetting demo. Task 1 is the images under heavy noise,
task 2 the same images clean, same labels.

Owns the two noise models: salt-and-pepper (a fraction `level` of pixels set to 0 or 1 at
random) and Gaussian (additive N(0, level²), clipped to [0, 1]). The noise is drawn once per
task from the task key, so the noisy images are fixed values, not an augmentation.
"""

from __future__ import annotations

from typing import Literal

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

Noise = Literal["salt-pepper", "gaussian"]


def add_noise(x: torch.Tensor, kind: str, level: float, g: torch.Generator) -> torch.Tensor:
    """`x` with noise of `kind` at `level` drawn from `g`."""
    if kind == "gaussian":
        return (x + level * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)
    hit = torch.rand(x.shape, generator=g) < level
    salt = (torch.rand(x.shape, generator=g) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


@STREAMS.register("noisy")
def build_noisy(
    seed: int,
    *,
    source: str = "mnist-10k",
    num_tasks: int = 2,
    train_per_task: int | None = None,
    test_per_task: int | None = None,
    scenario: Scenario = "domain",
    noise: Noise = "salt-pepper",
    level: float = 0.5,
    data_dir: str | None = None,
    validation: float = 0.0,
    evaluate_on: EvaluateOn = "test",
) -> Stream:
    """Noisy-then-clean tasks on the same images.

    Args:
        num_tasks: must be 2 (noisy, clean).
        noise: ``"salt-pepper"`` or ``"gaussian"``.
        level: fraction of pixels hit (salt-pepper, in [0, 1]) or the noise std (gaussian).
        validation: share of each task's training examples held out as its validation
            split (drawn from the task's key; 0 = none), for choosing hyper-parameters.
        evaluate_on: ``"validation"`` scores every task on its validation split in place of
            its test set, which is then never read: how a protocol is tuned without its
            test data.
    """
    problems = check_common("noisy", num_tasks=num_tasks, train_per_task=train_per_task,
                            test_per_task=test_per_task, scenario=scenario,
                            allowed=("domain", "task"), validation=validation,
                            evaluate_on=evaluate_on)
    if num_tasks != 2:
        problems.append(f"stream 'noisy': num_tasks={num_tasks} but this stream has exactly 2 "
                        "tasks (noisy, then clean)")
    if noise not in ("salt-pepper", "gaussian"):
        problems.append(f"stream 'noisy': noise={noise!r} is not 'salt-pepper' or 'gaussian'")
    elif not (0.0 <= level <= (1.0 if noise == "salt-pepper" else 10.0)):
        problems.append(f"stream 'noisy': level={level} is out of range for {noise} noise")
    raise_if(problems)
    src = load_sized("noisy", source, data_dir, train_per_task, test_per_task)
    # Both tasks use the same images: the only difference between them is the noise.
    tr = subset(len(src.train_y), train_per_task, seed, f"noisy/{source}", "train")
    tr, va = hold_out(tr, validation, seed, f"noisy/{source}")
    on_val = evaluate_on == "validation" and validation > 0
    te = (None if on_val
          else subset(len(src.test_y), test_per_task, seed, f"noisy/{source}", "test"))
    tasks = []
    for i, name in enumerate((f"{noise}-{level:g}", "clean")):
        key = f"noisy/{source}/{name}"
        xs = {"train": src.train_x[tr], "validation": src.train_x[va]}
        if te is not None:
            xs["test"] = src.test_x[te]
        if name != "clean":
            xs = {part: add_noise(x, noise, level, generator(seed, "noise", key, part))
                  for part, x in xs.items()}
        val = (xs["validation"], src.train_y[va]) if validation else None
        test = val if on_val and val is not None else (xs["test"], src.test_y[te])
        tasks.append(make_task(
            key=key, index=i, scenario=scenario,
            train=(xs["train"], src.train_y[tr]), test=test, validation=val,
            classes=range(src.num_classes),
        ))
    return make_stream(f"noisy/{source}", scenario, tasks, src.image_shape)
