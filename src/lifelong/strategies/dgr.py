"""`dgr`: deep generative replay — a VAE learns the inputs of every task so far, and the solver
trains on the new task plus samples of the previous generator, labelled by the previous solver.

Owns the two-model step (`train_batch`: the solver's step, then the generator's), the replay
(sampling, labels hard or soft) and the generator's time, reported per task. The VAE is
`lifelong.models.vae`'s; the frozen copies are `_teacher`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong import checks
from lifelong.data.task import Batch, Task, image_inputs
from lifelong.errors import ConfigError
from lifelong.models.vae import VAE
from lifelong.seeding import derive_seed
from lifelong.strategies import STRATEGIES
from lifelong.strategies._teacher import Teacher, snapshot
from lifelong.strategies.base import Card, Strategy, StrategyState, TaskReport
from lifelong.strategies.lwf import distillation, multi_head


@dataclass
class DGRState(StrategyState):
    generator: dict[str, Any] | None = None  # the VAE after the last task
    previous_generator: dict[str, Any] | None = None  # the VAE before this task (replays)
    previous_solver: dict[str, Any] | None = None  # the solver before this task (labels)
    tasks: int = 0  # tasks learned
    heads: list[int] = field(default_factory=list)  # task labels learned (task-IL)
    outputs: list[int] = field(default_factory=list)  # shared-head outputs learned


@STRATEGIES.register("dgr")
class DGR(Strategy):
    """Deep Generative Replay (Shin et al. 2017): the old solver labels a VAE's replayed inputs.

    Shin, Lee, Kim & Kim 2017, "Continual Learning with Deep Generative Replay" (NeurIPS,
    arXiv:1705.08690), with the VAE generator and the loss weighting of van de Ven & Tolias
    (2018, arXiv:1809.10635; 2019, "Three scenarios for continual learning",
    arXiv:1904.07734).

    Each step trains the solver on the batch and on as many replayed inputs, drawn from the
    generator as it was before the task and labelled by the solver as it was before the task:
    loss = (1/k)·CE(new) + (1 − 1/k)·CE(replay) on the k-th task (each task so far weighs the
    same). Then the generator takes one Adam step on the same mix, the negative ELBO on the
    batch and on the replayed inputs, so it models the inputs of every task seen: it trains as
    long as the solver, as in van de Ven & Tolias. Labels are the previous solver's argmax
    (Shin et al.) or, with `distill`, its softened outputs (van de Ven & Tolias' "DGR+distill":
    KL at temperature T, times T², over the outputs learned before and this task's new
    labels, which the soft targets give probability 0). Which outputs label a replay: in
    task-IL a past task drawn uniformly per sample and its head; otherwise the shared head's
    outputs that earlier tasks trained (their labels). No task data is stored.

    Args:
        latent: size of the VAE's latent code (van de Ven & Tolias: 100).
        width: width of each hidden layer of the VAE (encoder and decoder; theirs: 400).
        layers: hidden layers of the VAE's encoder, mirrored by its decoder (theirs: 2).
        generator_lr: Adam's learning rate for the generator.
        distill: soft targets instead of hard labels for the replayed inputs.
        temperature: T of the soft targets (van de Ven & Tolias: 2).
    """

    name = "dgr"
    card = Card(family="generative replay", caveats={"domain": (
        "with hard labels (the paper's), replayed images of earlier input distributions that "
        "the VAE draws poorly, e.g. permuted pixels, get the previous solver's argmax, often "
        "wrong, and at a short training budget replay then does no better than fine-tuning "
        "(the behaviour test: 3 permuted mnist-10k tasks, 10 epochs); soft targets "
        "(strategy.distill=true) or more epochs do")}, departures=(
        "a VAE generator, as van de Ven & Tolias 2018 (Shin et al. used a WGAN-GP)",
        "replay weighs 1 - 1/k and the new task 1/k on the k-th task (van de Ven & Tolias' "
        "weighting), not a mixing ratio r chosen per experiment as in Shin et al.",
        "the VAE is smaller by default (one hidden layer of 400, a 32-d code; van de Ven & "
        "Tolias: two hidden layers of 400 and a 100-d code, strategy.layers=2 "
        "strategy.latent=100)",
        "in task-IL each replayed input is labelled by one past task's head, drawn uniformly; "
        "van de Ven & Tolias label every replayed input by every past head and average the "
        "losses over past tasks",
        "a fresh Adam optimizer for the generator at every task (van de Ven & Tolias keep "
        "one Adam state for it across tasks; the solver's is kept with "
        "train.keep_optimizer=true)"))

    def __init__(self, model: nn.Module, *, latent: int = 32, width: int = 400,
                 layers: int = 1, generator_lr: float = 1e-3, distill: bool = False,
                 temperature: float = 2.0) -> None:
        super().__init__(model)
        who = "strategy 'dgr'"
        problems = [*checks.count(who, "latent", latent, hint="size of the VAE's code"),
                    *checks.count(who, "width", width, hint="VAE hidden layer width"),
                    *checks.count(who, "layers", layers, hint="VAE hidden layers"),
                    *checks.number(who, "generator_lr", generator_lr, low=0.0, low_open=True,
                                   hint="Adam's learning rate for the VAE"),
                    *checks.number(who, "temperature", temperature, low=0.0, low_open=True,
                                   hint="T of the soft targets")]
        if problems:
            raise ConfigError(problems)
        self.latent, self.width, self.layers = latent, width, layers
        self.generator_lr = generator_lr
        self.distill, self.temperature = distill, temperature
        self.state: DGRState = DGRState()
        self.vae: VAE | None = None
        self._old_vae, self._old_solver = Teacher(), Teacher()
        self._optimizer: torch.optim.Optimizer | None = None
        self._key = ""
        self._columns = torch.zeros(0, dtype=torch.int64)  # old outputs, then this task's new
        self._seconds = 0.0
        self._last_generator_loss: Tensor | None = None

    # ------------------------------------------------------------------ the generator
    def build_generator(self, input_shape: tuple[int, ...]) -> VAE:
        """The VAE for these inputs: the saved one if there is one, else a fresh one
        initialised from the run seed (not the global RNG)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.name, "generator-init"))
            vae = VAE(input_shape, latent=self.latent, hidden=(self.width,) * self.layers)
        if self.state.generator is not None:
            vae.load_state_dict(self.state.generator)
        return vae.to(self.device)

    def sample(self, n: int, generator: torch.Generator) -> Tensor | None:
        """`n` inputs from the current generator (None before the first task); for pictures
        of what the model remembers. Draws only from `generator`."""
        if self.vae is None:
            return None
        with torch.no_grad():
            return self.vae.sample(n, generator)

    def before_task(self, task: Task) -> None:
        images = image_inputs(task.train.x, f"strategy '{self.name}' (its generator draws images)")
        VAE.check_range(images)
        self._key, self._seconds = task.key, 0.0
        labels = [int(v) for v in torch.unique(task.train.y).tolist()]
        self._columns = torch.tensor(
            [*self.state.outputs, *(c for c in labels if c not in self.state.outputs)])
        self.vae = self.build_generator(tuple(images.shape[1:]))
        if self.state.tasks:
            self.state.previous_generator = snapshot(self.vae)
            self.state.previous_solver = snapshot(self.model)
        self._optimizer = torch.optim.Adam(self.vae.parameters(), lr=self.generator_lr)

    def after_task(self, task: Task) -> None:
        assert self.vae is not None
        self.state.generator = snapshot(self.vae)
        # The frozen copies served this task; the next one takes fresh copies of the current
        # models, so between tasks DGR keeps one VAE, no data.
        self.state.previous_generator = self.state.previous_solver = None
        self.state.tasks += 1
        self.state.heads = sorted({*self.state.heads, task.label})
        self.state.outputs = sorted({*self.state.outputs,
                                     *(int(v) for v in torch.unique(task.train.y).tolist())})

    def task_report(self) -> TaskReport:
        return TaskReport(values={"generator_seconds": self._seconds})

    def divergence_hint(self) -> str:
        bad = self._last_generator_loss
        if bad is not None and not bool(torch.isfinite(bad)):
            return (f"the generator's loss became {float(bad)}: lower strategy.generator_lr "
                    f"(now {self.generator_lr}) or strategy.latent ({self.latent})")
        return ""

    # ------------------------------------------------------------------------- a step
    def replay(self, n: int) -> tuple[Batch, Tensor] | None:
        """`n` replayed inputs with their task labels and hard labels, and the previous
        solver's logits over the outputs that label them (None on the first task)."""
        assert self.vae is not None
        old_vae = self._old_vae.module(self.vae, self.state.previous_generator)
        solver = self._old_solver.module(self.model, self.state.previous_solver)
        if not isinstance(old_vae, VAE) or solver is None:
            return None
        draws = self.generator("replay", self._key)
        with torch.no_grad():
            x = old_vae.sample(n, draws)
            if multi_head(self.model) is not None:  # task-IL: a past task per sample
                pick = torch.randint(len(self.state.heads), (n,), generator=draws)
                t = torch.tensor(self.state.heads, device=x.device)[pick.to(x.device)]
                logits = solver(x, t)
                y = logits.argmax(1)
            else:
                t = torch.zeros(n, dtype=torch.int64, device=x.device)
                outputs = torch.tensor(self.state.outputs, device=x.device)
                logits = solver(x, t)[:, outputs]
                y = outputs[logits.argmax(1)]
        return Batch(x, y, t), logits

    def train_batch(self, batch: Batch, step: Callable[[Tensor], Tensor]) -> Tensor:
        assert self.vae is not None and self._optimizer is not None
        start = time.perf_counter()
        replayed = self.replay(len(batch.y))
        self._seconds += time.perf_counter() - start
        share = 1.0 / (self.state.tasks + 1)  # the new task's weight: 1/k on the k-th task
        loss = self.loss(batch, self.model(batch.x, batch.t))
        if replayed is not None:
            mem, target = replayed
            logits = self.model(mem.x, mem.t)
            if self.distill:
                if multi_head(self.model) is None:
                    # The previous solver's outputs, and probability 0 for this task's new
                    # labels: the student learns that a replayed input is none of them.
                    logits = logits[:, self._columns.to(logits.device)]
                    target = F.pad(target, (0, logits.shape[1] - target.shape[1]),
                                   value=torch.finfo(target.dtype).min)
                old = self.temperature ** 2 * distillation(logits, target, self.temperature)
            else:
                old = F.cross_entropy(logits, mem.y)
            loss = share * loss + (1 - share) * old
        reported = step(loss)  # the solver's step, by the loop
        start = time.perf_counter()
        g_loss = self._generator_step(cast(Tensor, batch.x),
                                      None if replayed is None else cast(Tensor, replayed[0].x),
                                      share)  # images: `before_task` checked
        self._seconds += time.perf_counter() - start
        return reported + 0.0 * g_loss  # a non-finite generator loss stops the run too

    def _generator_step(self, x: Tensor, old: Tensor | None, share: float) -> Tensor:
        assert self.vae is not None and self._optimizer is not None
        draws = self.generator("vae-noise", self._key)
        noise = torch.randn(len(x) + (0 if old is None else len(old)), self.latent,
                            generator=draws).to(x.device)
        self._optimizer.zero_grad(set_to_none=True)
        loss = self.vae.loss(x, noise[:len(x)])
        if old is not None:
            loss = share * loss + (1 - share) * self.vae.loss(old, noise[len(x):])
        loss.backward()  # type: ignore[no-untyped-call]
        self._optimizer.step()
        self._last_generator_loss = loss.detach()
        return self._last_generator_loss
