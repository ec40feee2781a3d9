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
    check_common,
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
) -> Stream:
    """Noisy-then-clean tasks on the same images.

    Args:
        num_tasks: must be 2 (noisy, clean).
        noise: ``"salt-pepper"`` or ``"gaussian"``.
        level: fraction of pixels hit (salt-pepper, in [0, 1]) or the noise std (gaussian).
    """
    problems = check_common("noisy", num_tasks=num_tasks, train_per_task=train_per_task,
                            test_per_task=test_per_task, scenario=scenario,
                            allowed=("domain", "task"))
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
    te = subset(len(src.test_y), test_per_task, seed, f"noisy/{source}", "test")
    tasks = []
    for i, name in enumerate((f"{noise}-{level:g}", "clean")):
        key = f"noisy/{source}/{name}"
        xs = [src.train_x[tr], src.test_x[te]]
        if name != "clean":
            xs = [add_noise(x, noise, level, generator(seed, "noise", key, part))
                  for x, part in zip(xs, ("train", "test"), strict=True)]
        tasks.append(make_task(
            key=key, index=i, scenario=scenario,
            train=(xs[0], src.train_y[tr]), test=(xs[1], src.test_y[te]),
            classes=range(src.num_classes),
        ))
    return make_stream(f"noisy/{source}", scenario, tasks, src.image_shape)
