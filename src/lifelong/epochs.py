"""One task's epochs for one run: `TaskLoop`, the run's optimizer, and `Alone`.

Owns `TaskLoop` (the epochs × batches of one task, handed to `Strategy.train_task`), the
optimizer (`make_optimizer`, `build_optimizer`: fresh per task or kept, with clipping), `Alone`
(how `lifelong.train.fit_members` trains a run of one member) and what a group's epochs share
with them (`set_lr`, `batch_order`, `curve_point`, `divergence`; the group's own are in
`lifelong.group`). Data stays as in-memory tensors sliced by index with a generator seeded from
(seed, task key, epoch): no DataLoader, no global RNG. Does not own the task loop
(`lifelong.train`) or the optimisation step (`lifelong.optim`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lifelong.callbacks import Callback, CurvePoint, EpochEnd, StepEnd
from lifelong.data.task import Stream, Task, TensorData
from lifelong.errors import ConfigError, DivergenceError
from lifelong.evaluate import accuracies
from lifelong.optim import LoopStep
from lifelong.seeding import generator
from lifelong.strategies.base import Strategy

if TYPE_CHECKING:
    from lifelong.train import Member, TrainConfig


class TaskLoop:
    """The epoch loop for one task, handed to `Strategy.train_task`."""

    def __init__(self, strategy: Strategy, stream: Stream, task: Task, cfg: TrainConfig,
                 optimizer: torch.optim.Optimizer, seed: int, callbacks: Sequence[Callback],
                 step0: int) -> None:
        self.strategy, self.stream, self.task, self.cfg = strategy, stream, task, cfg
        self.optimizer, self.seed, self.callbacks = optimizer, seed, callbacks
        self.step_fn = LoopStep(strategy, optimizer)  # what `train_batch` hands its loss to
        self.step = step0  # global step counter, owned here and passed to events
        self.curve: list[CurvePoint] = []
        self.step_callbacks = [cb for cb in callbacks
                               if type(cb).on_step_end is not Callback.on_step_end]

    def run_epochs(self, data: TensorData, epochs: int | None = None) -> None:
        """Train `epochs` (default `cfg.epochs`, or `cfg.steps_per_task` steps where that
        is set: `TrainConfig.passes`) passes over `data`. If the strategy's
        trainable parameters changed since the optimizer was built (a model that grew during
        the task, e.g. Net2Net), a fresh optimizer over the new set is built first."""
        self.refresh_optimizer()
        device = self.strategy.device
        data = data.to(device)
        n, bs = len(data), self.cfg.batch_size
        if n == 0:
            raise ConfigError(f"task {self.task.key} has no training examples")
        passes = ([math.ceil(n / bs)] * epochs if epochs is not None
                  else self.cfg.passes(n))
        model = self.strategy.model
        model.train()
        for epoch, steps in enumerate(passes):
            set_lr(self.optimizer, self.cfg, epoch)
            order = batch_order(n, self.seed, self.task, epoch).to(device)
            step_losses = []
            for i in range(steps):
                idx = order[i * bs:(i + 1) * bs]
                batch = data.batch(idx)
                step_losses.append(self.strategy.train_batch(batch, self.step_fn))
                self.step += 1
                if self.step_callbacks:
                    step_event = StepEnd(self.task.index, self.step)
                    for cb in self.step_callbacks:
                        cb.on_step_end(step_event)
                if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                    self.curve.append(curve_point(self.strategy, self.stream, self.task,
                                                  self.step, self.cfg, self.callbacks))
            losses = torch.stack(step_losses)
            total = float(losses.sum())  # one host sync per epoch
            if not math.isfinite(total):
                raise DivergenceError(divergence(self.strategy, self.stream, self.task, epoch,
                                                 losses, self.cfg))
            event = EpochEnd(self.task.index, epoch, steps, total / steps)
            for cb in self.callbacks:
                cb.on_epoch_end(event)

    def refresh_optimizer(self) -> bool:
        """Rebuild the optimizer if the set of trainable parameters is not the one it holds
        (returns whether it did). Its state (momentum) restarts, as at a new task, except with
        `keep_optimizer`, where the parameters that stay keep theirs."""
        held = [id(p) for group in self.optimizer.param_groups for p in group["params"]]
        if held == [id(p) for p in self.strategy.trainable_parameters()]:
            return False
        self.optimizer = make_optimizer(self.strategy, self.cfg,
                                        self.optimizer if self.cfg.keep_optimizer else None)
        capped, self.step_fn = self.step_fn.capped, LoopStep(self.strategy, self.optimizer)
        self.step_fn.capped = capped
        return True



def set_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epoch: int) -> None:
    """The learning rate of a task's epoch `epoch` under `cfg`'s step schedule, if any."""
    if cfg.lr_decay_every is not None:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(epoch)


def batch_order(n: int, seed: int, task: Task, epoch: int) -> torch.Tensor:
    """The order in which a run visits a task's `n` training examples in epoch `epoch`: drawn
    from (seed, task key, epoch) alone, so a run alone and a member of a group agree."""
    return torch.randperm(n, generator=generator(seed, "batches", task.key, epoch))


def curve_point(strategy: Strategy, stream: Stream, task: Task, step: int, cfg: TrainConfig,
                callbacks: Sequence[Callback]) -> CurvePoint:
    """A learning-curve point at `step` of `task`, sent to `callbacks` (`accuracies` restores
    the training mode itself)."""
    point = CurvePoint(task.index, step, tuple(accuracies(
        strategy, stream, batch_size=cfg.eval_batch_size)))
    for cb in callbacks:
        cb.on_curve_point(point)
    return point


def divergence(strategy: Strategy, stream: Stream, task: Task, epoch: int, losses: torch.Tensor,
               cfg: TrainConfig, who: str = "") -> str:
    """Why a run diverged: where its epoch's step `losses` first became NaN or infinite, and
    what to lower (the strategy's own hint added)."""
    bad = int((~torch.isfinite(losses)).nonzero()[0, 0]) + 1
    hint = strategy.divergence_hint()
    return (f"{who or strategy.name}: loss became {float(losses[bad - 1])} at task "
            f"{task.index + 1}/{len(stream)} ({task.key}), epoch {epoch + 1}, step {bad} "
            f"(lr={cfg.lr}); lower train.lr or the strategy's strength"
            + (f", {hint}" if hint else ""))


def make_optimizer(strategy: Strategy, cfg: TrainConfig,
                   carry: torch.optim.Optimizer | None = None) -> torch.optim.Optimizer:
    """The optimizer over the strategy's trainable parameters, taking over the state
    `carry` holds for any of them (`keep_optimizer` across a change of parameters)."""
    return build_optimizer(list(strategy.trainable_parameters()), cfg, carry)


def build_optimizer(params: Sequence[torch.Tensor], cfg: TrainConfig,
                    carry: torch.optim.Optimizer | None = None,
                    clip: Sequence[Sequence[torch.Tensor]] | None = None
                    ) -> torch.optim.Optimizer:
    """`cfg`'s optimizer over `params` (with `carry`'s state for any of them). With
    `cfg.grad_clip`, it clips the gradient norm of each of `clip` (default: `params` as one;
    a group clips each member's own) before each step, after the strategy's `after_backward`,
    so a projected gradient is clipped as it will be applied."""
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    if carry is not None:
        for p in params:
            if p in carry.state:
                optimizer.state[p] = carry.state[p]
    if cfg.grad_clip is not None:
        limit, sets = float(cfg.grad_clip), [list(params)] if clip is None else clip

        def clip_norms(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            for ps in sets:
                torch.nn.utils.clip_grad_norm_(ps, limit)

        optimizer.register_step_pre_hook(clip_norms)
    return optimizer


class Alone:
    """One member trains by itself: its strategy's `train_task` over a `TaskLoop`, with a
    fresh optimizer per task or, with `keep_optimizer`, one kept (and resumed)."""

    def __init__(self, members: Sequence[Member], cfg: TrainConfig,
                 device: torch.device) -> None:
        if len(members) != 1:
            raise ConfigError(f"{len(members)} members cannot train alone; train a group with "
                              "lifelong.group.fit_group")
        self.member = members[0]
        self.cfg, self.kept = cfg, None  # the optimizer kept across tasks (keep_optimizer)
        resume = self.member.resume
        if cfg.keep_optimizer and resume is not None and resume.optimizer is not None:
            self.kept = make_optimizer(self.member.strategy, cfg)
            self.kept.load_state_dict(resume.optimizer)

    def train(self, tasks: Sequence[Task], step: int) -> tuple[
            int, list[list[CurvePoint]], list[tuple[float, str] | None]]:
        m, (task,) = self.member, tasks
        loop = TaskLoop(m.strategy, m.stream, task, self.cfg,
                        make_optimizer(m.strategy, self.cfg, self.kept), m.seed, m.callbacks,
                        step)
        m.strategy.train_task(task, loop)
        if self.cfg.keep_optimizer:
            self.kept = loop.optimizer
        return loop.step, [loop.curve], [loop.step_fn.capped]

    def optimizer_state(self) -> dict[str, Any] | None:
        return None if self.kept is None else self.kept.state_dict()
