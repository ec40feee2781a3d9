"""Training a group of runs at once: G members of one configuration as one vectorised model.

Owns what a group adds to the one task loop (`lifelong.train.fit_members`): `StackedMLP` (the
members' MLPs as weights of shape (G, out, in), run with batched matrix products), the stacked
trainer that takes a task's epochs for all members at once, `fit_group` (that loop with that
trainer, for G members that differ in seed or in a numeric option such as
`strategy.strength`) and `groupable`/`stackable` (what may train so). Chosen by measurement
(benchmarks/group.py; README "Many seeds at once"): `torch.func.vmap` over stacked parameters
pays its own per-call overhead, while batched weights cost one batched product per layer, and
on the CPU with one thread that product (or, for tiny products, `F.linear` per member:
`SMALL_PRODUCT`) gives each member bit for bit the numbers of its own `nn.Linear`.

Each member keeps everything of its own: its strategy object (memories, importances, anchors,
generators), its model, initial weights, data order (its generator of (seed, task key,
epoch)), its stream, R, costs and callbacks. The members' `nn.Parameter`s share storage with
the stacked weights, so a strategy reads and changes its own model as usual: its loss (a
penalty, a replay term) flows into its own parameters' gradients, which are added to the
stacked gradient's slice; `after_backward` (A-GEM's projection) then edits that slice; one
optimizer steps all members (SGD and Adam update element by element, as G optimizers would).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.callbacks import Callback, CurvePoint, EpochEnd, StepEnd
from lifelong.data.task import Batch, Task, image_inputs
from lifelong.epochs import batch_order, build_optimizer, curve_point, divergence, set_lr
from lifelong.errors import ConfigError, DivergenceError
from lifelong.models.heads import MultiHead
from lifelong.optim import LoopStep, plain_sgd, step_sizes
from lifelong.strategies.base import Strategy
from lifelong.train import Member, Progress, RunResult, TrainConfig, fit_members

__all__ = ["Member", "MemberDiverged", "StackedMLP", "fit_group", "groupable", "stackable"]

# The hooks a strategy may override and still train in a group: the loop calls them per member.
# A strategy that replaces the step or the epoch loop (`train_batch`, `train_task`), prediction
# or the trainable set trains alone.
_ALONE = {"train_batch": "its own training step", "train_task": "its own epoch loop",
          "predict": "its own prediction", "trainable_parameters": "it trains part of the model"}


def groupable(strategy: type[Strategy] | Strategy) -> str:
    """Why `strategy` cannot train in a group, or "" if it can (`Card.group_note`, or a
    hook the group loop cannot run per member)."""
    cls = strategy if isinstance(strategy, type) else type(strategy)
    if cls.card.group_note:
        return cls.card.group_note
    own = [f"{why} ({hook})" for hook, why in _ALONE.items()
           if getattr(cls, hook) is not getattr(Strategy, hook)]
    return "; ".join(own)


def stackable(model: nn.Module) -> str:
    """Why `model` cannot be stacked, or "": an MLP of Linear and ReLU layers (no dropout,
    no growing head) with a `MultiHead`."""
    from lifelong.models.mlp import MLP

    if not isinstance(model, MLP):
        return f"model {type(model).__name__} is not an MLP"
    if not isinstance(model.head, MultiHead):
        return ("a growing head adds a chunk of weights per task, and the stacked weights keep "
                "one shape for the whole run")
    if any(not isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU)) for m in model.features):
        return "dropout draws from the global generator, not the member's own"
    return ""


class _BatchedLinear(torch.autograd.Function):
    """G linear layers at once: x (G, B, in), weight (G, out, in), bias (G, out). Its own
    backward writes the weight's gradient straight in the (out, in) layout with one batched
    product (autograd's, through the transposed weight, costs a transposed copy: measured
    1.7 ms against 1.0 ms per step of 5 members on P1's MLP); each member's gradients are bit
    for bit those of its own `nn.Linear`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(1)


# Below this many multiply-adds per member (rows × in × out), PyTorch's CPU `bmm` takes its
# own small-matrix loop instead of the BLAS product `nn.Linear` uses (ATen's
# `bmm_out_or_baddbmm_`), and the two round differently: a run's last, short batch (e.g. 2 of
# 866 joint examples) or a narrow task head (2 outputs of 32 hidden units) then parted a member
# from its own run in the last bits. Such products are tiny: each member runs `F.linear`, the
# very call of its own `nn.Linear`, forward and backward.
SMALL_PRODUCT = 400


def _linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    if x.shape[1] * x.shape[2] * weight.shape[1] < SMALL_PRODUCT:
        return torch.stack([F.linear(x[g], weight[g], bias[g]) for g in range(len(x))])
    out: Tensor = _BatchedLinear.apply(x, weight, bias)  # type: ignore[no-untyped-call]
    return out


class StackedMLP:
    """G MLPs of one shape as stacked weights; each member's parameters become views of them.

    `forward(x, t)` takes (G, B, ...) inputs and (G, B) task labels and returns (G, B, outputs)
    logits, member g's from its own weights."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        names = [n for n, _ in models[0].named_parameters()]
        for m in models:
            if [n for n, _ in m.named_parameters()] != names or stackable(m):
                raise ConfigError(f"models of a group must be MLPs of one shape: "
                                  f"{stackable(m) or 'their parameters differ'}")
        self.models = list(models)
        self.names = names
        self.params: list[Tensor] = []
        # Per stacked tensor, the members' parameters that are its slices.
        self.members = [[m.get_parameter(n) for m in models] for n in names]
        for name in names:
            members = [m.get_parameter(name) for m in models]
            stacked = torch.stack([p.detach() for p in members]).requires_grad_(
                members[0].requires_grad)
            for g, p in enumerate(members):
                p.data = stacked.data[g]  # shares the storage: a step on `stacked` moves p
            self.params.append(stacked)
        head: MultiHead = models[0].head  # type: ignore[assignment]
        self.heads, self.outputs = head.num_heads, head.num_outputs
        self._owners = {id(p): (stacked, g) for stacked, members in
                        zip(self.params, self.members, strict=True)
                        for g, p in enumerate(members)}

    def owner(self, p: Tensor) -> tuple[Tensor, int]:
        """The stacked tensor a member's parameter is a slice of, and the member's index."""
        return self._owners[id(p)]

    def grad_of(self, p: Tensor) -> Tensor:
        """A member's parameter's slice of the stacked gradient (after `merge_grads`)."""
        owner, g = self._owners[id(p)]
        assert owner.grad is not None, "merge_grads first"
        return owner.grad[g]

    def forward(self, x: Tensor, t: Tensor | None) -> Tensor:
        h = x.flatten(2)
        layers = list(zip(self.params[0::2], self.params[1::2], strict=True))
        for weight, bias in layers[:-1]:
            h = F.relu(_linear(h, weight, bias))
        out = _linear(h, *layers[-1])
        if self.heads == 1:
            return out
        if t is None:
            raise ValueError("this model has task heads and needs the task labels")
        g, b = out.shape[:2]
        out = out.view(g, b, self.heads, self.outputs)
        return out[torch.arange(g, device=out.device)[:, None],
                   torch.arange(b, device=out.device)[None, :], t]

    def merge_grads(self, *, views: bool) -> None:
        """Add each member's own gradient (its penalty, its replay term) into its slice of the
        stacked gradient. With `views`, make each member's `.grad` that slice, so its hooks
        (`after_backward`, `after_step`, clipping) see and change the whole gradient; without,
        clear it. Call `clear_member_grads` before the next backward either way."""
        for stacked, members in zip(self.params, self.members, strict=True):
            grad = stacked.grad
            if grad is None:
                grad = stacked.grad = torch.zeros_like(stacked)
            for g, p in enumerate(members):
                if p.grad is not None:
                    grad[g] += p.grad
                    p.grad = None
                if views:
                    p.grad = grad[g]

    def clear_member_grads(self) -> None:
        for members in self.members:
            for p in members:
                p.grad = None


class MemberDiverged(DivergenceError):
    """One member's loss became NaN or infinite; `index` says which."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def fit_group(members: Sequence[Member], train: TrainConfig | None = None, *,
              checkpoint: Callable[[int, Progress], None] | None = None) -> list[RunResult]:
    """Train every member on its stream at once: `lifelong.train.fit_members` (the one task
    loop, so also resume from each `Member.resume`, at one point for all, `checkpoint(g,
    progress)` after each task and the divergence hint) with the stacked trainer. Each member's
    `RunResult` equals its `fit_stream`'s: on the CPU with one intra-op thread (the CLI's
    default and every pool worker's) its R and final `state_dict` bit for bit
    (`tests/test_group.py`); with more threads or on a GPU within float rounding (batched and
    plain products split their sums differently). With plain cross-entropy the epoch losses
    callbacks see (`EpochEnd`) are means of per-example losses, not the fused mean, so may
    differ in the last bits. The group's training time is shared evenly in the costs; each
    task's diagnostics carry ``group_size``.

    Raises:
        ConfigError: members that cannot train together (`groupable`, `stackable`, streams of
            different lengths or sizes), or `keep_optimizer` (the kept state of the stacked
            weights would have to be cut per member to checkpoint it).
        MemberDiverged: a member's loss became NaN or infinite (train the group one by one to
            record the others).
    """
    problems = []
    if train is not None and train.keep_optimizer:
        problems.append("train.keep_optimizer=true: a group cannot yet checkpoint each member's"
                        " share of one kept optimizer; train the runs one by one")
    for m in members:
        if why := groupable(m.strategy) or stackable(m.strategy.model):
            problems.append(f"strategy '{m.strategy.name}' cannot train in a group: {why}")
    return fit_members(members, train, trainer=_Stacked, checkpoint=checkpoint,
                       problems=problems, diagnostics={"group_size": float(len(members))})


def _overrides(strategy: Strategy, hook: str) -> bool:
    return getattr(type(strategy), hook) is not getattr(Strategy, hook)


class _Stacked:
    """The `lifelong.train.Trainer` of a group: each step one forward and backward through the
    `StackedMLP` for every member, each member's own loss, penalty (`LoopStep.penalty`),
    hooks and clipping, and one optimizer step over the stacked weights."""

    def __init__(self, members: Sequence[Member], cfg: TrainConfig,
                 device: torch.device) -> None:
        self.members, self.cfg, self.device = members, cfg, device
        self.stacked = StackedMLP([m.strategy.model for m in members])

    def optimizer_state(self) -> None:
        return None  # a fresh optimizer per task (`keep_optimizer` is refused)

    def train(self, tasks: Sequence[Task], step: int) -> tuple[
            int, list[list[CurvePoint]], list[tuple[float, str] | None]]:
        """The epochs of one task for every member at once (`TaskLoop.run_epochs` for G)."""
        members, stacked, cfg, device = self.members, self.stacked, self.cfg, self.device
        datas = [m.strategy.task_data(t).to(device)
                 for m, t in zip(members, tasks, strict=True)]
        n = len(datas[0])
        if any(len(d) != n for d in datas) or n == 0:
            raise ConfigError("the members' training sets differ in size "
                              f"({[len(d) for d in datas]}); train them one by one "
                              "(--no-vectorize)")
        x = torch.stack([image_inputs(d.x, 'a group') for d in datas])
        y = torch.stack([d.y for d in datas])
        t = torch.stack([d.t for d in datas])
        g_index = torch.arange(len(members), device=device)[:, None]
        heads = stacked.heads > 1
        optimizer = build_optimizer(stacked.params, cfg, clip=[
            list(m.strategy.model.parameters()) for m in members])
        sgd = plain_sgd(optimizer)
        steps_of = [LoopStep(m.strategy, optimizer) for m in members]  # each one's penalty
        curves: list[list[CurvePoint]] = [[] for _ in members]
        steppers = [(g, m) for g, m in enumerate(members) if any(
            type(cb).on_step_end is not Callback.on_step_end for cb in m.callbacks)]
        bs, size = cfg.batch_size, len(members)
        # Only the hooks a member's class overrides are called, and a member's `.grad` is made
        # a view of the stacked gradient only where something reads it.
        penalised = [(g, m) for g, m in enumerate(members) if _overrides(m.strategy,
                                                                         "quadratic")]
        zero = torch.zeros((), device=device)
        backwards = [m for m in members if _overrides(m.strategy, "after_backward")]
        stepping = [m for m in members if _overrides(m.strategy, "after_step")]
        views = bool(backwards or stepping or cfg.grad_clip is not None)
        # Plain cross-entropy for every member: one call over all of them (the same
        # per-member means and gradients as G calls).
        plain = not any(_overrides(m.strategy, "loss") for m in members)
        for m in members:
            m.strategy.model.train()
        for epoch, steps in enumerate(cfg.passes(n)):
            set_lr(optimizer, cfg, epoch)
            order = torch.stack([batch_order(n, m.seed, task, epoch) for m, task
                                 in zip(members, tasks, strict=True)]).to(device)
            losses = []
            for i in range(steps):
                idx = order[:, i * bs:(i + 1) * bs]
                xb, yb, tb = x[g_index, idx], y[g_index, idx], t[g_index, idx]
                optimizer.zero_grad(set_to_none=True)
                if views:
                    stacked.clear_member_grads()
                logits = stacked.forward(xb, tb if heads else None)
                if plain:
                    loss = F.cross_entropy(logits.flatten(0, 1), yb.flatten(),
                                           reduction="none").view(size, -1).mean(1)
                else:
                    loss = torch.stack([m.strategy.loss(Batch(xb[g], yb[g], tb[g]), logits[g])
                                        for g, m in enumerate(members)])
                loss.sum().backward()  # type: ignore[no-untyped-call]
                stacked.merge_grads(views=views)
                implicit = []  # the members whose penalty is followed by an implicit step
                values = [zero] * size  # each one's penalty value, where it joined the gradient
                for g, m in penalised:
                    if (q := m.strategy.quadratic()) is None:
                        continue
                    if not q.follows_gradient(sgd):
                        implicit.append(q)
                        continue
                    values[g] = steps_of[g].penalty(q, [stacked.grad_of(p) for p in q.params])
                for m in backwards:
                    m.strategy.after_backward()
                optimizer.step()  # (clipping each member's gradient first: `build_optimizer`)
                for q in implicit:
                    q.implicit_step(step_sizes(optimizer, q.params,
                                               [stacked.owner(p) for p in q.params]))
                for m in stepping:
                    m.strategy.after_step()
                losses.append(loss.detach() + torch.stack(values) if penalised
                              else loss.detach())
                step += 1
                for g, m in steppers:
                    stepped = StepEnd(tasks[g].index, step)
                    for cb in m.callbacks:
                        cb.on_step_end(stepped)
                if cfg.eval_every and step % cfg.eval_every == 0:
                    for g, m in enumerate(members):
                        curves[g].append(curve_point(m.strategy, m.stream, tasks[g], step, cfg,
                                                     m.callbacks))
            per_step = torch.stack(losses)
            for g, total in enumerate(per_step.sum(0).tolist()):  # one host sync per epoch
                m = members[g]
                if not math.isfinite(total):
                    raise MemberDiverged(g, divergence(
                        m.strategy, m.stream, tasks[g], epoch, per_step[:, g], cfg,
                        who=f"{m.strategy.name} (seed {m.seed})"))
                event = EpochEnd(tasks[g].index, epoch, steps, total / steps)
                for cb in m.callbacks:
                    cb.on_epoch_end(event)
        return step, curves, [s.capped for s in steps_of]
