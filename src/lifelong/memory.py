"""Episodic memory: a fixed number of slots per task, filled by class-balanced reservoir
sampling and held on the model's device as part of a strategy's learned state.

Owns `EpisodicMemory` (the buffer; a `StrategyState`, so `Strategy.state_dict()` saves it and
`load_state_dict()` restores it on the model's device), `reservoir` (Vitter's Algorithm R,
vectorised) and `class_quotas` (how a task's slots are shared among its classes); and
`ClassMemory`, iCaRL's exemplar sets under one total budget shared by all classes seen, filled
by `herding` or at random. Does not own how a method uses its memories — a replay loss (`er`),
gradient constraints (`gem`, `agem`), nearest-mean classification (iCaRL) — nor any model: herding
takes features (or a function computing them) from the caller.

Layout: the examples of all tasks are stored back to back in one tensor per field (`x`, `y`,
`t`), task after task, `count[k]` of them for task `keys[k]`. Uniform draws over the whole
memory are then one `randint` and one index, and when every task filled its slots the per-task
view is a free `reshape` (GEM's one-gradient-per-task pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lifelong.data.task import Batch, Inputs, TensorData, map_inputs
from lifelong.strategies.base import StrategyState


def reservoir(n: int, k: int, generator: torch.Generator) -> Tensor:
    """Positions of the items Algorithm R (Vitter 1985) keeps from a stream of `n` items in a
    reservoir of `k` slots, in slot order.

    Item i < k fills slot i; item i ≥ k draws j uniform in {0..i} and replaces slot j if
    j < k. Every item ends up kept with probability k/n. The draws for all items are made at
    once; the sequential "last writer wins" is a scatter of the largest item index per slot.
    """
    device = generator.device
    if n <= k:
        return torch.arange(n, device=device)
    i = torch.arange(k, n, device=device)
    u = torch.rand(n - k, generator=generator, device=device, dtype=torch.float64)
    j = (u * (i + 1)).long()  # uniform in {0..i}
    hit = j < k
    winner = torch.full((k,), -1, dtype=torch.int64, device=device)
    winner.scatter_reduce_(0, j[hit], i[hit], reduce="amax")
    return torch.where(winner >= 0, winner, torch.arange(k, device=device))


def distinct(size: int, n: int, generator: torch.Generator) -> Tensor:
    """`n` ≤ `size` distinct positions in range(size), every n-subset (and order) equally
    likely.

    A small batch from a large memory draws `n` positions and redraws the repeats until none
    is left (the procedure treats all positions alike, so every subset is equally likely),
    costing O(n) instead of the O(size) of a full permutation; a batch that is a large part of
    the memory takes the head of a permutation."""
    if 4 * n > size:
        return torch.randperm(size, generator=generator)[:n]
    idx = torch.randint(size, (n,), generator=generator)
    while True:
        values, order = idx.sort()
        repeat = torch.zeros(n, dtype=torch.bool)
        repeat[order[1:]] = values[1:] == values[:-1]  # every copy but the first of a value
        redraw = int(repeat.sum())
        if not redraw:
            return idx
        idx[repeat] = torch.randint(size, (redraw,), generator=generator)


def uniform(size: int, n: int, generator: torch.Generator) -> Tensor:
    """`n` positions drawn uniformly from range(size): without replacement (`distinct`) when
    `n` fits, with replacement beyond that — a memory's replay batch."""
    return (distinct(size, n, generator) if n <= size
            else torch.randint(size, (n,), generator=generator))


def class_quotas(counts: list[int], slots: int) -> list[int]:
    """Slots per class: as equal as possible, a class never getting more than it has; slots a
    small class cannot use go to the others (water filling). Leftover single slots go to the
    classes in label order. The quotas sum to min(slots, sum(counts))."""
    quota = [0] * len(counts)
    left = slots
    open_ = [c for c, n in enumerate(counts) if n > 0]
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        for rank, c in enumerate(open_):
            give = min(counts[c] - quota[c], share + (rank < extra))
            quota[c] += give
            left -= give
        open_ = [c for c in open_ if quota[c] < counts[c]]
    return quota


class PerTask(NamedTuple):
    """Memories laid out one row per task: `x` (k, b, ...), `y` and `t` (k, b), and `weight`
    (k, b), 1 for a real example and 0 for padding (a task holding fewer than b)."""

    x: Inputs
    y: Tensor
    t: Tensor
    weight: Tensor


@dataclass
class _Groups(StrategyState):
    """Examples kept in groups (a task's, a class's) stored back to back: `count[k]` rows of
    group k, in one tensor per field (None while empty). What both memories share: the
    layout, appending a group, cutting groups to their first rows, uniform draws."""

    count: list[int] = field(default_factory=list)
    x: Inputs | None = None
    y: Tensor | None = None
    t: Tensor | None = None

    def __len__(self) -> int:
        return sum(self.count)

    def data(self) -> TensorData:
        """All stored examples, group after group (e.g. to train on beside a new task, as
        iCaRL does)."""
        assert self.x is not None and self.y is not None and self.t is not None, "empty"
        return TensorData(self.x, self.y, self.t)

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        """`n` examples drawn uniformly from all groups (every stored example equally likely,
        whatever its group): without replacement whenever `n` fits in the memory (a batch as
        large as the memory is then the whole memory), with replacement beyond that."""
        data = self.data()
        return data.batch(uniform(len(self), n, generator).to(data.y.device))

    def _append(self, *groups: TensorData) -> None:
        """Store each of `groups` as a new last group (one copy of the memory for all)."""
        self.count.extend(len(g) for g in groups)
        parts = list(groups)
        if self.x is not None and self.y is not None and self.t is not None:
            parts.insert(0, TensorData(self.x, self.y, self.t))
        rows = TensorData.concat(parts) if len(parts) > 1 else parts[0]
        self.x, self.y, self.t = rows.x, rows.y, rows.t

    def _keep_first(self, quota: list[int]) -> None:
        """Keep the first `quota[k]` rows of each group k (`count` becomes `quota`; a group
        cut to 0 stays listed for the caller to remove with its own bookkeeping)."""
        if self.x is not None and self.y is not None and self.t is not None:
            keep = torch.zeros(len(self), dtype=torch.bool, device=self.y.device)
            start = 0
            for n, kept in zip(self.count, quota, strict=True):
                keep[start:start + kept] = True
                start += n
            kept_rows = TensorData(self.x, self.y, self.t).take(keep)
            self.x, self.y, self.t = kept_rows.x, kept_rows.y, kept_rows.t
        self.count = list(quota)


@dataclass
class EpisodicMemory(_Groups):
    """The memories of past tasks (Lopez-Paz & Ranzato 2017, §3: "episodic memory M_k" per
    task), a fixed budget of slots per task.

    Attributes:
        keys: the tasks stored, in the order they were added.
        count: examples stored for each task (≤ the slots it was given).
        x, y, t: the examples, task after task (None while empty).
    """

    keys: list[str] = field(default_factory=list)

    @property
    def num_tasks(self) -> int:
        return len(self.keys)

    def add(self, key: str, data: TensorData, *, slots: int, generator: torch.Generator,
            device: torch.device | None = None) -> None:
        """Store up to `slots` examples of task `key`, chosen by a reservoir per class with
        `class_quotas` slots each (class-balanced), offered in `data`'s order. A task added
        again replaces its earlier memories. The choice is made where `generator` lives (the
        CPU); only the chosen rows are copied to `device` (default: where `data` is)."""
        if key in self.keys:
            self._drop(self.keys.index(key))
        y = data.y.to(generator.device)
        labels, per_class = torch.unique(y, return_counts=True)  # sorted labels
        quotas = class_quotas([int(n) for n in per_class.tolist()], slots)
        chosen = []
        for label, quota in zip(labels, quotas, strict=True):
            where = (y == label).nonzero().squeeze(1)
            chosen.append(where[reservoir(len(where), quota, generator)])
        idx = torch.cat(chosen).sort().values.to(data.y.device)  # keep the task's own order
        self._append(data.take(idx).to(data.y.device if device is None else device))
        self.keys.append(key)

    def _drop(self, k: int) -> None:
        self._keep_first([0 if j == k else n for j, n in enumerate(self.count)])
        del self.keys[k], self.count[k]

    def per_task(self, n: int | None, generator: torch.Generator) -> PerTask:
        """Each task's memories as one row: all of them (`n` None; rows padded to the longest,
        padding weighted 0), or `n` per task drawn uniformly with replacement."""
        data = self.data()
        k, most = self.num_tasks, max(self.count)
        device = data.y.device
        if n is None and min(self.count) == most:  # every row full: a free view
            return PerTask(map_inputs(data.x, lambda v: v.view(k, most, *v.shape[1:])),
                           data.y.view(k, most), data.t.view(k, most),
                           torch.ones(k, most, device=device))
        count = torch.tensor(self.count, device=device)[:, None]
        start = count.cumsum(0) - count
        if n is None:
            slot = torch.arange(most, device=device).expand(k, most)
            weight = (slot < count).float()
            slot = torch.minimum(slot, count - 1)  # padding repeats the row's last example
        else:
            u = torch.rand(k, n, generator=generator).to(device)
            slot = torch.minimum((u * count).long(), count - 1)  # u·count < count, bar rounding
            weight = torch.ones(k, n, device=device)
        rows = data.batch(start + slot)  # a (k, n) index: rows in a (k, n, ...) layout
        return PerTask(rows.x, rows.y, rows.t, weight)


Selection = Literal["herding", "random"]
FEATURE_CHUNK = 4096  # rows per pass when herding computes the features itself


def herding(features: Tensor, m: int) -> Tensor:
    """Positions of `m` exemplars (at most all rows) chosen by herding, in selection order.

    iCaRL's Algorithm 4 (Rebuffi et al. 2017): with φ the L2-normalised features and μ their
    mean, the k-th exemplar is p_k = argmin_x ‖μ − (φ(x) + Σ_{j<k} φ(p_j)) / k‖, so the mean of
    the first k exemplars tracks μ as closely as one greedy step allows and any prefix of the
    list is itself a good exemplar set (what lets a shrinking quota keep a prefix). An example
    is chosen at most once (the algorithm as printed may repeat one; the authors' code and
    later implementations do not). Ties go to the lower position. Runs where `features` are.
    """
    return herding_groups([features], m)[0]


def herding_groups(groups: list[Tensor], m: int) -> list[Tensor]:
    """`herding` on each feature tensor of `groups` (e.g. one per class), all groups at once:
    each step is one batched product for every group, not one Python step per group."""
    # k²·‖μ − (S + φ_i)/k‖² = ‖kμ − S‖² − 2 (kμ − S)·φ_i + ‖φ_i‖², with S the sum of the chosen:
    # the first term is the same for every i, so a matrix-vector product per step decides.
    # (‖φ_i‖² is 1, or 0 for an all-zero feature row, which normalising leaves at 0.) Groups
    # are padded to the largest; padding rows count as taken. In the features' precision
    # (float32 for a float32 model): exact ties are as rare as in the direct formula.
    device = groups[0].device
    dtype = groups[0].dtype if groups[0].is_floating_point() else torch.get_default_dtype()
    sizes = torch.tensor([len(g) for g in groups], device=device)
    phi = torch.zeros(len(groups), int(sizes.max()), groups[0][0].numel(), device=device,
                      dtype=dtype)
    for j, g in enumerate(groups):
        phi[j, :len(g)] = F.normalize(g.flatten(1).to(dtype), dim=1)
    mu = phi.sum(1) / sizes[:, None]
    # ‖φ_i‖², and +inf once row i is taken (padding rows from the start): a taken row's gap is
    # then inf without a mask pass per step.
    sq = phi.square().sum(2)
    sq.masked_fill_(torch.arange(phi.shape[1], device=device)[None] >= sizes[:, None],
                    torch.inf)
    total = torch.zeros_like(mu)
    rows = torch.arange(len(groups), device=device)
    wanted = [min(m, len(g)) for g in groups]
    chosen = torch.zeros(len(groups), max(wanted), dtype=torch.int64, device=device)
    # The step's product as (1, D) x (D, N) per group: a matrix-vector product in this layout
    # runs about 15 times faster on CPU than (N, D) x (D, 1) (one thread, N = 1000, D = 100).
    phi_t = phi.transpose(1, 2).contiguous()
    for k in range(1, max(wanted) + 1):
        gap = torch.baddbmm(sq[:, None, :], (k * mu - total)[:, None, :], phi_t, alpha=-2)
        i = gap[:, 0, :].argmin(1)  # the first of equal minima (a finished group's is cut)
        chosen[:, k - 1] = i
        sq[rows, i] = torch.inf
        total += phi[rows, i]
    return [chosen[j, :w] for j, w in enumerate(wanted)]


@dataclass
class ClassMemory(_Groups):
    """Exemplar sets P_1, ..., P_s of the classes seen so far under one total budget (iCaRL,
    Rebuffi et al. 2017, §2.2): with s classes each keeps m = memory_size // s exemplars, so
    the memory never holds more than memory_size; when a new class arrives the quota shrinks
    and every class keeps the first m of its exemplars in selection order (Algorithm 5,
    ReduceExemplarSet), which for herding are the best m.

    Attributes:
        classes: the class labels stored, in arrival order.
        count: exemplars stored for each class (≤ its quota; fewer if it had fewer examples).
        x, y, t: the exemplars, class after class, each class in selection order (None while
            empty).
    """

    classes: list[int] = field(default_factory=list)

    def add(self, data: TensorData, *, memory_size: int, selection: Selection = "herding",
            features: Tensor | Callable[[Inputs], Tensor] | None = None,
            generator: torch.Generator | None = None,
            device: torch.device | None = None) -> None:
        """Make room for, then store, the classes of `data` (labels `data.y`).

        The quota becomes memory_size // (classes stored + new classes): stored classes keep
        the first that many of their exemplars, and each class of `data` gets that many chosen
        among its examples — by `herding` on `features` (a tensor with one row per example of
        `data`, or a function of a batch of inputs, called without gradients on every
        `FEATURE_CHUNK` rows of `data`), or in a random order drawn from `generator` (never
        the global RNG). A class already stored is chosen again from `data` (its old exemplars
        are dropped). Exemplars go to `device` (default: where `data` is).

        Raises:
            ValueError: the selection's input is missing, or `features` has the wrong rows.
        """
        if selection == "herding" and features is None:
            raise ValueError("ClassMemory.add: herding needs features (a tensor or function)")
        if selection == "random" and generator is None:
            raise ValueError("ClassMemory.add: random selection needs a seeded generator")
        if isinstance(features, Tensor) and len(features) != len(data):
            raise ValueError(f"ClassMemory.add: features have {len(features)} rows but data "
                             f"has {len(data)}; give one feature row per example")
        labels = [int(c) for c in torch.unique(data.y).tolist()]  # sorted
        m = memory_size // max(len(set(self.classes) | set(labels)), 1)
        self._reduce(m, drop=set(labels))  # a class of `data` already stored is chosen again
        device = data.y.device if device is None else device
        wheres = [(data.y == c).nonzero().squeeze(1) for c in labels]
        if selection == "herding":
            assert features is not None
            if not isinstance(features, Tensor):  # one pass over `data`, in chunks
                with torch.no_grad():
                    features = torch.cat([features(data.slice(i, i + FEATURE_CHUNK).x)
                                          for i in range(0, len(data), FEATURE_CHUNK)])
            phis = [features[w.to(features.device)] for w in wheres]
            picks = [p.to(data.y.device) for p in herding_groups(phis, m)]
        else:
            assert generator is not None
            picks = [torch.randperm(len(w), generator=generator)[:m].to(w.device)
                     for w in wheres]
        self._append(*(data.take(where[pick]).to(device)
                       for where, pick in zip(wheres, picks, strict=True)))
        self.classes.extend(labels)

    def _reduce(self, m: int, drop: set[int]) -> None:
        """Cut every class to its first `m` exemplars (Algorithm 5) and remove the classes in
        `drop` altogether."""
        self._keep_first([0 if c in drop else min(n, m)
                          for c, n in zip(self.classes, self.count, strict=True)])
        stay = [k for k, c in enumerate(self.classes) if c not in drop]
        self.classes = [self.classes[k] for k in stay]
        self.count = [self.count[k] for k in stay]

    def of_class(self, c: int) -> TensorData:
        """The exemplars of class `c` in selection order (e.g. for its mean of exemplars)."""
        k = self.classes.index(c)
        start = sum(self.count[:k])
        return self.data().slice(start, start + self.count[k])
