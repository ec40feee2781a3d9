"""Curricula: the order choosers on hand-built affinities, `check_order`, and task affinity
measured on a small real stream (each task helps itself most), on validation splits only."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from lifelong import TrainConfig, build_model, build_stream
from lifelong.curriculum import CHOOSERS, Affinity, check_order, choose, task_affinity
from lifelong.data.task import Stream, TensorData
from lifelong.errors import ConfigError
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Strategy


def hand_built(solo: list[float], transfer: list[list[float]]) -> Affinity:
    t = len(solo)
    return Affinity(keys=tuple(f"hand/{i}" for i in range(t)), solo=tuple(solo),
                    scratch=(0.1,) * t, transfer=tuple(map(tuple, transfer)),
                    forgetting=((0.0,) * t,) * t, budget=20)


# Greedy by hand: tasks 1 and 2 tie on solo (0.9), so 1 comes first (lower index). From {1},
# task 3 gains most (0.3). From {1, 3}: task 0 gains 0.15 + 0.15 = 0.30, task 2 0.0 + 0.25 =
# 0.25, so 0 — where the last pick alone, or the best single helper, would say 2. Then 2.
SOLO = [0.7, 0.9, 0.9, 0.6]
TRANSFER = [[0.5, 0.0, 0.1, 0.0],
            [0.15, 0.5, 0.0, 0.3],
            [0.0, 0.0, 0.5, 0.0],
            [0.15, 0.0, 0.25, 0.5]]


def test_greedy_affinity_follows_a_hand_built_matrix() -> None:
    choice = choose("greedy-affinity", 4, affinity=hand_built(SOLO, TRANSFER))
    assert choice.order == (1, 3, 0, 2)
    assert "task 1 (hand/1)" in choice.reason and "alone" in choice.reason


def test_greedy_affinity_breaks_ties_by_lower_index() -> None:
    zero = [[0.0] * 4 for _ in range(4)]
    assert choose("greedy-affinity", 4,
                  affinity=hand_built([0.5, 0.5, 0.9, 0.5], zero)).order == (2, 0, 1, 3)


def test_easy_to_hard_sorts_by_solo_accuracy_ties_by_index() -> None:
    assert choose("easy-to-hard", 4, affinity=hand_built(SOLO, TRANSFER)).order == (1, 2, 0, 3)


def test_every_chooser_returns_a_permutation() -> None:
    affinity = hand_built(SOLO, TRANSFER)
    for name in CHOOSERS:
        order = choose(name, 4, affinity=affinity, seed=3).order
        assert sorted(order) == [0, 1, 2, 3], name
        assert check_order(order, 4) == [], name


def test_given_is_the_identity_and_random_is_seeded_not_global() -> None:
    assert choose("given", 6).order == (0, 1, 2, 3, 4, 5)
    assert choose("given", 6).reason == "the stream's own order"
    before = torch.get_rng_state()
    a, b, c = (choose("random", 6, seed=s).order for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), before)
    assert a == b and a != c and sorted(a) == sorted(c) == list(range(6))


@pytest.mark.parametrize(("order", "words"), [
    ([0, 0, 1], ["repeats [0]", "misses [2]"]),
    ([0, 2], ["has 2 entries", "misses [1]"]),
    ([1, 2, 3], ["has [3], not positions 0..2", "misses [0]"]),
    ([0, True, 2], ["has [True]"]),
])
def test_check_order_names_the_order_and_the_problem(order: list[int], words: list[str]) -> None:
    problems = check_order(order, 3)
    text = "\n".join(problems)
    assert problems and all(f"order {order} for 3 tasks" in p for p in problems)
    assert all(w in text for w in words), text


def test_check_order_accepts_a_permutation() -> None:
    assert check_order([2, 0, 1], 3) == [] and check_order((), 0) == []


def test_unknown_chooser_lists_the_choosers_and_suggests_one() -> None:
    with pytest.raises(ConfigError) as e:
        choose("greedy-afinity", 3)
    assert "did you mean 'greedy-affinity'?" in str(e.value)
    assert all(name in str(e.value) for name in CHOOSERS)


@pytest.mark.parametrize("name", ["easy-to-hard", "greedy-affinity"])
def test_a_chooser_that_needs_an_affinity_says_so(name: str) -> None:
    with pytest.raises(ConfigError, match="needs a measured affinity"):
        choose(name, 4)


def test_an_affinity_of_other_tasks_is_refused() -> None:
    with pytest.raises(ConfigError, match="measured on tasks"):
        choose("greedy-affinity", 3, affinity=hand_built(SOLO, TRANSFER))


def test_normalised_transfer_ranks_the_sources_of_each_target() -> None:
    n = hand_built(SOLO, TRANSFER).normalised
    # target 0: sources 1 and 3 tie at 0.15 above source 2 at 0.0
    assert [n[i][0] for i in range(4)] == [0.5, 0.75, 0.0, 0.75]
    # target 2: 1 (0.0) < 0 (0.1) < 3 (0.25)
    assert [n[i][2] for i in range(4)] == [0.5, 0.0, 0.5, 1.0]
    assert all(n[i][1] == 0.5 for i in range(4))  # all sources tie
    # ranks ignore scale: a target's gains multiplied by 10 give the same column
    scaled = [[v * 10 if j == 2 else v for j, v in enumerate(r)] for r in TRANSFER]
    assert hand_built(SOLO, scaled).normalised == n


def test_greedy_compares_targets_by_rank_not_by_raw_gain() -> None:
    # From task 0, target 1 gains more in raw accuracy (0.30 against 0.10), but on target 1
    # task 0 is the worse of its two sources, while on target 2 it is the better one.
    transfer = [[0.5, 0.30, 0.10],
                [0.0, 0.5, 0.00],
                [0.0, 0.40, 0.5]]
    assert choose("greedy-affinity", 3,
                  affinity=hand_built([0.9, 0.5, 0.5], transfer)).order == (0, 2, 1)


def test_affinity_json_round_trip() -> None:
    a = hand_built(SOLO, TRANSFER)
    assert Affinity.from_json(json.loads(json.dumps(a.to_json()))) == a
    with pytest.raises(ConfigError, match="lacks transfer"):
        Affinity.from_json({k: v for k, v in a.to_json().items() if k != "transfer"})
    with pytest.raises(ConfigError, match="4×4"):
        Affinity.from_json({**a.to_json(), "transfer": TRANSFER[:3]})


# --- measured on a real stream: digits rotated by 0°, 90° and 180° (domain-IL, one head) -----

CFG = TrainConfig(epochs=3, batch_size=32, lr=0.1, device="cpu")


@pytest.fixture(scope="module")
def rotated() -> Stream:
    stream: Stream = build_stream("rotated", source="digits", num_tasks=3, angles=[0, 90, 180],
                                  seed=0, validation=0.2)
    return stream


def naive(stream: Stream) -> Callable[[int], Strategy]:
    def build(seed: int) -> Strategy:
        return build_strategy("naive", build_model("mlp", stream, hidden=[64], seed=seed))
    return build


@pytest.fixture(scope="module")
def measured(rotated: Stream) -> Affinity:
    return task_affinity(rotated, naive(rotated), CFG, seed=0)


def test_each_task_helps_itself_most(measured: Affinity, rotated: Stream) -> None:
    t = measured.transfer
    assert measured.keys == tuple(task.key for task in rotated.tasks)
    assert min(measured.solo) > 0.7  # each task was learned
    assert max(measured.scratch) < 0.4  # 128 examples, one pass (4 steps): little from scratch
    for j in range(3):  # measured: diagonal 0.62-0.67, the rest of its column at most 0.28
        assert t[j][j] > 0.3, (j, t)
        assert all(t[j][j] >= t[i][j] + 0.2 for i in range(3) if i != j), (j, t)
    assert all(-1.0 <= f <= 1.0 for row in measured.forgetting for f in row)
    assert choose("greedy-affinity", rotated, affinity=measured).order[0] == max(
        range(3), key=lambda i: (measured.solo[i], -i))


def test_affinity_is_reproducible_and_leaves_the_global_rng(measured: Affinity,
                                                            rotated: Stream) -> None:
    before = torch.get_rng_state()
    again = task_affinity(rotated, naive(rotated), CFG, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    assert again == measured


@pytest.mark.parametrize("budget", [0, 5000, 2.5])
def test_a_budget_out_of_range_is_refused_before_training(rotated: Stream,
                                                          budget: int) -> None:
    smallest = min(len(t.train) for t in rotated.tasks)
    with pytest.raises(ConfigError, match=rf"budget={budget!r} must be an integer from 1 .*"
                                          rf"\({smallest}\)"):
        task_affinity(rotated, naive(rotated), CFG, budget=budget)


def test_budget_epochs_below_one_is_refused(rotated: Stream) -> None:
    with pytest.raises(ConfigError, match="budget_epochs=0 must be an integer >= 1"):
        task_affinity(rotated, naive(rotated), CFG, budget=20, budget_epochs=0)


def test_a_stream_without_validation_is_refused_with_how_to_get_one() -> None:
    plain = build_stream("rotated", source="digits", angles=[0, 90], seed=0)
    with pytest.raises(ConfigError) as e:
        task_affinity(plain, naive(plain), CFG, budget=20)
    text = str(e.value)
    assert "rotated/digits/0, rotated/digits/1" in text or "no validation split" in text
    assert "no validation split" in text and "never on the test set" in text
    assert "--set stream.validation=0.1" in text


def _poisoned(data: TensorData) -> TensorData:
    """`data` with inputs that are NaN and labels no class has: any read of it shows."""
    return TensorData(torch.full_like(data.x, float("nan")),  # type: ignore[arg-type]
                      torch.full_like(data.y, 10_000), data.t)


def test_affinity_never_reads_the_test_sets(measured: Affinity, rotated: Stream,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import lifelong.evaluate as evaluate

    # A spy on the one function every evaluation goes through (the loop's R rows, its
    # diagnostics and task_affinity's own scores) ...
    seen: list[TensorData] = []
    real = evaluate._hits

    def spy(strategy: Strategy, data: TensorData, *args: object) -> torch.Tensor:
        seen.append(data)
        return real(strategy, data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluate, "_hits", spy)
    # ... while every test set is poisoned: the result is the unpoisoned one
    poisoned = replace(rotated, tasks=tuple(replace(t, test=_poisoned(t.test))
                                             for t in rotated.tasks))
    assert task_affinity(poisoned, naive(poisoned), CFG, seed=0) == measured
    val = {id(t.validation.x) for t in rotated.tasks if t.validation is not None}
    assert seen and all(id(d.x) in val for d in seen), len(seen)
