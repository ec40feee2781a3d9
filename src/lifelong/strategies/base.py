"""The strategy base: the six hooks a continual-learning method may override.

Owns `Strategy`, `StrategyState` and the state_dict format. A strategy owns the
learning rule; the loop (`lifelong.train`) owns the mechanics: batching, optimizer, NaN checks,
timing and evaluation. Hooks *return* values; the only in-place change allowed is to gradients
in `after_backward`.

Hooks, in the order the loop calls them:
    before_task(task) → task_data(task) → per batch: [forward, loss(batch, logits), backward,
    (the penalty of `quadratic()`), after_backward(), optimizer step, (the penalty's implicit
    step), after_step()] → after_task(task).
Escape hatches: `train_batch` (a different loss around the loop's step, e.g. generative
replay) and `train_task` (a different epoch loop, e.g. Net2Net growth on demand).
`predict(x, t)` decides inference; `remap(fn)` carries learned state over a change of the
model's shape. A strategy that runs another inside (`_wrapper.Wrapper`) forwards every one of
these without listing them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.task import SCENARIOS, Batch, Inputs, Scenario, Task, TensorData
from lifelong.errors import StateError
from lifelong.seeding import derive_seed

if TYPE_CHECKING:
    from lifelong.epochs import TaskLoop
    from lifelong.quadratic import Quadratic


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What a strategy reports about the task it just consolidated, read by the loop once per
    task after `after_task`: numbers recorded with the run (events, store, JSON), e.g.
    net2net's growths, and warnings the loop shows (as
    `LifelongWarning`) and records with the run."""

    values: dict[str, float] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass
class StrategyState:
    """Learned state of a strategy (subclasses add fields). Values: tensors, numbers, lists
    and dicts of them — what `torch.load(weights_only=True)` can read back."""


@dataclass(frozen=True, slots=True)
class Card:
    """What a strategy declares about itself, in one place: `lifelong list`, the generated
    catalogue (docs/methods.md), the loop's checks and warnings, the group loop and the
    benchmarks read it. A subclass inherits its base's card, or sets its own (often
    `dataclasses.replace(Base.card, ...)`). The one-line summary is the class docstring's first
    sentence, the paper it cites there too.

    Attributes:
        family: the kind of method, for the catalogue: baseline, penalty, memory, ...
        scenarios: the scenarios it can run in; the loop refuses the others.
        caveats: scenario → why the method is known to do poorly there (e.g. regularizers in
            class-IL, van de Ven & Tolias 2019); the loop warns once per process.
        not_better_than_naive: scenario → why the method at its defaults is by design no better
            than naive fine-tuning (e.g. L2's intransigent baseline); `lifelong list` shows
            them and the behaviour test (every method must beat naive) leaves them out, with
            `caveats`.
        departures: where the defaults depart from the paper's method, one line each (the
            docstring says why).
        not_comparable: why the method is not comparable with a bare fine-tuning loop, if it
            is not (e.g. joint trains on more data): benchmarks/overhead.py times every
            strategy that leaves it empty and sets no speed target for the others.
        group_note: why the method cannot train in a vectorised group of runs
            (`lifelong.group.groupable`), if it cannot; empty = it can, unless it overrides a
            hook the group loop does not run per member.
    """

    family: str = ""
    scenarios: frozenset[Scenario] = frozenset(SCENARIOS)
    caveats: Mapping[str, str] = dataclasses.field(default_factory=dict)
    not_better_than_naive: Mapping[str, str] = dataclasses.field(default_factory=dict)
    departures: tuple[str, ...] = ()
    not_comparable: str = ""
    group_note: str = ""

    def __post_init__(self) -> None:
        # Read-only views, so no reader can change what a class declares.
        object.__setattr__(self, "scenarios", frozenset(self.scenarios))
        object.__setattr__(self, "caveats", MappingProxyType(dict(self.caveats)))
        object.__setattr__(self, "not_better_than_naive",
                           MappingProxyType(dict(self.not_better_than_naive)))
        unknown = [s for s in (*self.scenarios, *self.caveats, *self.not_better_than_naive)
                   if s not in SCENARIOS]
        if unknown or isinstance(self.departures, str):
            raise TypeError(f"Card: scenarios must be among {SCENARIOS} (got {unknown}) and "
                            "departures a tuple of lines")

    def limits(self) -> dict[str, str]:
        """Scenario → why the method is no better than naive there (by design, or known)."""
        return {**self.not_better_than_naive, **self.caveats}


# What a strategy declared as class attributes before the card: setting one now is an error,
# not a declaration that silently does nothing.
_MOVED_TO_CARD = {"supports": "scenarios", "caveats": "caveats", "departures": "departures",
                  "not_better_than_naive": "not_better_than_naive",
                  "not_comparable": "not_comparable", "group_note": "group_note"}


class Strategy:
    """Base of every method: plain fine-tuning with cross-entropy.

    Subclasses set `name` and their `card` (what they declare about themselves: scenarios,
    caveats, departures from the paper), declare their hyperparameters as keyword-only
    `__init__` arguments stored under the same names, and keep learned state in `self.state`.
    """

    name: ClassVar[str] = "base"
    card: ClassVar[Card] = Card()
    version: ClassVar[int] = 1
    state: StrategyState

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if old := [n for n in _MOVED_TO_CARD if n in vars(cls)]:
            raise TypeError(f"{cls.__qualname__} sets {', '.join(old)}: declare "
                            + ", ".join(f"{_MOVED_TO_CARD[n]}=..." for n in old)
                            + " in its `card = Card(...)` (lifelong.strategies.base.Card)")

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = StrategyState()
        self.seed = 0
        self._generators: dict[str, torch.Generator] = {}

    # ----------------------------------------------------------------- set-up by the loop
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def attach(self, *, seed: int) -> None:
        """Called by the loop before training: the seed all of this strategy's draws derive
        from. Generators restored by `load_state_dict` for the same seed are kept, so a
        resumed run draws what the uninterrupted one would have."""
        if seed != self.seed:
            self._generators.clear()
        self.seed = seed

    def to(self, device: torch.device) -> None:
        """Move the model and every tensor of the learned state to `device` (the loop calls
        this once per run; a state loaded on the CPU may then train on a GPU)."""
        self.model.to(device)
        for f in dataclasses.fields(self.state):
            setattr(self.state, f.name, _map_tensors(getattr(self.state, f.name),
                                                     lambda t: t.to(device)))

    def generator(self, *parts: object) -> torch.Generator:
        """A CPU generator for one purpose (e.g. ``"memory", task.key``), created on first
        use from the run seed and kept, so its state is saved. CPU, as the loop's batch
        order: draws are the same on every device and a saved state restores on any device;
        move what is drawn (a few indices) to `self.device`."""
        key = repr(parts)
        if key not in self._generators:
            g = torch.Generator()
            g.manual_seed(derive_seed(self.seed, self.name, *parts))
            self._generators[key] = g
        return self._generators[key]

    # ------------------------------------------------------------------------- the hooks
    def before_task(self, task: Task) -> None:
        """Prepare for `task` (e.g. copy a teacher, add a column)."""

    def task_data(self, task: Task) -> TensorData:
        """The examples to train on for `task` (default: its training set)."""
        return task.train

    def loss(self, batch: Batch, logits: Tensor) -> Tensor:
        """The training loss of one batch (default: cross-entropy)."""
        return F.cross_entropy(logits, batch.y)

    def after_backward(self) -> None:
        """Called after `backward`, before the optimizer step; may change gradients in place."""

    def after_step(self) -> None:
        """Called after each optimizer step (e.g. SI's path integral)."""

    def after_task(self, task: Task) -> None:
        """Consolidate after `task` (importance, memories, snapshots)."""

    def task_report(self) -> TaskReport:
        """Observations about the task just learned (called once per task after
        `after_task`; it must not change learning). Default: nothing to report."""
        return TaskReport()

    def divergence_hint(self) -> str:
        """A remedy of this method's own that the loop adds to its `DivergenceError` message
        (e.g. a stable step for a stiff penalty); empty by default."""
        return ""

    def remap(self, fn: Callable[..., Tensor]) -> None:
        """The model changed shape (e.g. Net2Net widened a layer): carry any per-parameter
        learned state over; `fn(name, value, importance=bool)` gives a tensor of parameter
        `name` for the new shape (`lifelong.models.mlp.Widening.remap`). Default: nothing to
        carry (the penalty family carries its anchors and importances)."""

    def predict(self, x: Inputs, t: Tensor | None) -> Tensor:
        """Logits at test time. `t` is given only in the task-incremental scenario."""
        out: Tensor = self.model(x, t)
        return out

    def quadratic(self) -> Quadratic | None:
        """The quadratic penalty the loop adds to this method's loss, as a value (the penalty
        family's importances and anchors, `lifelong.quadratic`), or None (the default): the
        loop follows it as a gradient term or by an implicit step after the optimizer's
        (`lifelong.optim`), so the method never needs to see the optimizer."""
        return None

    # ---------------------------------------------------------------- escape hatches
    def train_batch(self, batch: Batch, step: Callable[[Tensor], Tensor]) -> Tensor:
        """One optimisation step: the loss of `batch`, handed to the loop's `step` (backward,
        the gradient hooks, the penalty, the optimizer); returns what `step` returns, the
        detached loss to report. Override to compute the loss otherwise or to do more around
        the step (e.g. generative replay trains its generator after it)."""
        return step(self.loss(batch, self.model(batch.x, batch.t)))

    def train_task(self, task: Task, loop: TaskLoop) -> None:
        """Train on `task`: by default run the loop's epochs over `task_data(task)`."""
        loop.run_epochs(self.task_data(task))

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the fresh optimizer of each task updates."""
        return (p for p in self.model.parameters() if p.requires_grad)

    # ------------------------------------------------------------------------ state
    def memory_bytes(self) -> int:
        """Bytes the method keeps: the model's parameters and buffers plus every tensor of its
        learned state (episodic memories, anchors and importances, stored data)."""
        seen: dict[int, int] = {}

        def add(t: Tensor) -> Tensor:
            seen[id(t)] = t.numel() * t.element_size()
            return t

        for t in (*self.model.parameters(), *self.model.buffers()):
            add(t)
        for f in dataclasses.fields(self.state):
            _map_tensors(getattr(self.state, f.name), add)
        return sum(seen.values())

    def hparams(self) -> dict[str, Any]:
        """The hyperparameters: keyword-only `__init__` arguments, read from attributes of the
        same name."""
        out: dict[str, Any] = {}
        for cls in type(self).__mro__:
            if "__init__" not in vars(cls):
                continue
            for p in inspect.signature(vars(cls)["__init__"]).parameters.values():
                if p.kind is p.KEYWORD_ONLY:
                    out.setdefault(p.name, getattr(self, p.name))
        return out

    def state_dict(self) -> dict[str, Any]:
        """`{strategy, version, hparams, model, state, rng}` with CPU tensors only."""
        return {
            "strategy": self.name,
            "version": self.version,
            "hparams": _to_cpu(self.hparams()),
            # tensors, plus a growing model's record of its growth (plain values)
            "model": _to_cpu(dict(self.model.state_dict())),
            "state": _to_cpu({f.name: getattr(self.state, f.name)
                              for f in dataclasses.fields(self.state)}),
            "rng": {"seed": self.seed,
                    "generators": {k: g.get_state() for k, g in self._generators.items()}},
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore a `state_dict()`; strict: names any missing or unknown field."""
        expected = {"strategy", "version", "hparams", "model", "state", "rng"}
        if set(sd) != expected:
            raise StateError(f"{self.name}: saved state has fields {sorted(sd)}, expected "
                             f"{sorted(expected)}; was it saved by Strategy.state_dict()?")
        if sd["strategy"] != self.name or sd["version"] != self.version:
            raise StateError(f"saved state is for {sd['strategy']!r} version {sd['version']}, "
                             f"not {self.name!r} version {self.version}; build the matching "
                             "strategy (or save the state again with this version)")
        if sd["hparams"] != _to_cpu(self.hparams()):
            raise StateError(f"{self.name}: saved hyperparameters {sd['hparams']} differ from "
                             f"this strategy's {self.hparams()}; build it with the saved ones")
        fields = {f.name for f in dataclasses.fields(self.state)}
        if set(sd["state"]) != fields:
            raise StateError(f"{self.name}: saved state fields {sorted(sd['state'])} differ "
                             f"from {sorted(fields)}")
        self.model.load_state_dict(sd["model"], strict=True)
        device = self.device
        for name, value in sd["state"].items():
            setattr(self.state, name, _to_device(value, device))
        self.seed = int(sd["rng"]["seed"])
        self._generators.clear()
        for key, gstate in sd["rng"]["generators"].items():
            g = torch.Generator()
            g.set_state(gstate)
            self._generators[key] = g


def _to_cpu(value: Any) -> Any:
    return _map_tensors(value, lambda t: t.detach().cpu().clone())


def _to_device(value: Any, device: torch.device) -> Any:
    # A copy, so the strategy never shares (and later changes in place) the caller's tensors.
    return _map_tensors(value, lambda t: t.detach().to(device, copy=True))


def _map_tensors(value: Any, fn: Any) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value
