"""The episodic memory: Algorithm R, class quotas, per-task slots, layouts and saved state."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy import stats

from lifelong import build_model, build_stream
from lifelong.data.task import TensorData
from lifelong.memory import EpisodicMemory, class_quotas, reservoir
from lifelong.strategies import build_strategy


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def data(labels: list[int], task: int = 0) -> TensorData:
    """One example per label; x holds the example's position so we can tell them apart."""
    n = len(labels)
    return TensorData(torch.arange(n, dtype=torch.float32)[:, None],
                      torch.tensor(labels, dtype=torch.int64), torch.full((n,), task))


def test_reservoir_keeps_exactly_k_distinct_items() -> None:
    for n, k in [(1000, 37), (50, 50), (10, 30), (2, 1)]:
        kept = reservoir(n, k, gen())
        assert len(kept) == min(n, k)
        assert len(set(kept.tolist())) == len(kept)
        assert 0 <= int(kept.min()) and int(kept.max()) < n


def test_reservoir_is_algorithm_r_step_by_step() -> None:
    """The vectorised draw equals the sequential algorithm fed the same random numbers."""
    n, k = 200, 16
    kept = reservoir(n, k, gen(3)).tolist()
    u = torch.rand(n - k, generator=gen(3), dtype=torch.float64).tolist()
    slots = list(range(k))
    for i in range(k, n):
        j = int(u[i - k] * (i + 1))
        if j < k:
            slots[j] = i
    assert kept == slots


def test_reservoir_inclusion_is_uniform() -> None:
    """Each of n items is kept with probability k/n: chi-square over 4000 fixed-seed draws."""
    n, k, trials = 20, 5, 4000
    g = gen(0)
    hits = np.zeros(n)
    for _ in range(trials):
        hits[reservoir(n, k, g).numpy()] += 1
    assert hits.sum() == trials * k
    expected = np.full(n, trials * k / n)
    assert stats.chisquare(hits, expected).pvalue > 0.01
    # The late items (most exposed to replacement bugs) are not under-represented.
    assert abs(hits[-5:].mean() / expected[0] - 1) < 0.1


def test_class_quotas_by_hand() -> None:
    assert class_quotas([10, 2, 10], 12) == [5, 2, 5]  # 4/4/4, class 1 has 2, rest shared
    assert class_quotas([5, 5], 3) == [2, 1]
    assert class_quotas([3, 0, 4], 100) == [3, 0, 4]  # fewer examples than slots: keep all
    assert class_quotas([7, 7, 7], 0) == [0, 0, 0]


def test_add_keeps_memory_size_class_balanced_and_from_the_task() -> None:
    labels = [0] * 60 + [1] * 30 + [2] * 10
    mem = EpisodicMemory()
    mem.add("a", data(labels), slots=33, generator=gen())
    assert len(mem) == 33 and mem.count == [33] and mem.keys == ["a"]
    assert mem.x is not None and mem.y is not None
    assert sorted(torch.bincount(mem.y).tolist()) == [10, 11, 12]  # as equal as it can be
    positions = mem.x[:, 0].long()
    assert torch.equal(torch.tensor(labels)[positions], mem.y)  # labels stay with their x
    assert len(set(positions.tolist())) == 33

    mem.add("b", data([4] * 5, task=1), slots=33, generator=gen())  # a small task: all of it
    assert mem.count == [33, 5] and len(mem) == 38
    mem.add("a", data(labels), slots=8, generator=gen(1))  # seen again: replaced, at the end
    assert mem.keys == ["b", "a"] and mem.count == [5, 8]
    assert mem.t is not None and mem.t.tolist() == [1] * 5 + [0] * 8


def test_per_task_layout_full_and_padded() -> None:
    mem = EpisodicMemory()
    mem.add("a", data([0, 1] * 4), slots=4, generator=gen())
    mem.add("b", data([0, 1] * 4, task=1), slots=4, generator=gen())
    full = mem.per_task(None, gen())
    assert full.x.shape == (2, 4, 1) and full.weight.sum() == 8
    assert full.t.tolist() == [[0] * 4, [1] * 4]

    mem.add("c", data([0, 1], task=2), slots=4, generator=gen())  # only 2 examples
    padded = mem.per_task(None, gen())
    assert padded.x.shape == (3, 4, 1)
    assert padded.weight.tolist()[2] == [1, 1, 0, 0]
    assert padded.t[2].tolist() == [2] * 4

    some = mem.per_task(50, gen())  # drawn with replacement: each row from its own task
    assert some.x.shape == (3, 50, 1) and bool((some.weight == 1).all())
    assert some.t.tolist() == [[0] * 50, [1] * 50, [2] * 50]
    assert set(some.x[2, :, 0].tolist()) == {0.0, 1.0}  # both of task c's examples drawn
    assert set(some.x[0, :, 0].tolist()) <= set(full.x[0, :, 0].tolist())


def test_sample_draws_from_every_task() -> None:
    mem = EpisodicMemory()
    for k in range(3):
        mem.add(str(k), data([0, 1] * 10, task=k), slots=6, generator=gen())
    batch = mem.sample(600, gen())
    assert batch.x.shape == (600, 1)
    counts = torch.bincount(batch.t, minlength=3)
    assert counts.min() > 150  # 200 each expected


def test_memory_is_saved_in_state_dict_and_restored() -> None:
    stream = build_stream("split", source="digits", num_tasks=2, train_per_task=50, seed=0)
    er = build_strategy("er", build_model("mlp", stream, hidden=[8], seed=0), memory_size=10)
    er.attach(seed=0)
    er.after_task(stream.tasks[0])
    sd = er.state_dict()
    assert sd["state"]["count"] == [10] and sd["state"]["x"].shape[0] == 10
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    other = build_strategy("er", build_model("mlp", stream, hidden=[8], seed=1), memory_size=10)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.state.keys == er.state.keys
    for name in ("x", "y", "t"):
        assert torch.equal(getattr(other.state, name), getattr(er.state, name))


@pytest.mark.parametrize("bad", [{"memory_size": 0}, {"memory_batch": -1},
                                 {"memory_batch": None}, {"memory_size": 2.5}])
def test_bad_memory_options_are_refused_with_a_reason(bad: dict[str, object]) -> None:
    from lifelong.errors import ConfigError

    stream = build_stream("split", source="digits", num_tasks=2, seed=0)
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=f"strategy 'er': {key}="):
        build_strategy("er", build_model("mlp", stream, hidden=[8]), **bad)


def test_a_batch_that_fits_is_drawn_without_replacement() -> None:
    from lifelong.memory import distinct

    mem = EpisodicMemory()
    for k in range(2):
        mem.add(str(k), data(list(range(128)), task=k), slots=128, generator=gen())
    whole = mem.sample(256, gen())  # as large as the memory: all of it, each once
    assert sorted(zip(whole.t.tolist(), whole.x[:, 0].tolist(), strict=True)) == sorted(
        zip(mem.t.tolist(), mem.x[:, 0].tolist(), strict=True))
    for size, n in ((256, 200), (5000, 64), (50, 3)):  # both ways of drawing
        assert len(set(distinct(size, n, gen()).tolist())) == n
    # every position equally likely: 3 of 12, 6000 draws, 1500 expected per position
    counts = torch.bincount(torch.cat([distinct(12, 3, g) for g in [gen()] for _ in
                                       range(6000)]), minlength=12)
    assert int(counts.min()) > 1350 and int(counts.max()) < 1650
    assert mem.sample(300, gen()).x.shape == (300, 1)  # more than the memory: with replacement
