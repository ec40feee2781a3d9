"""Every registered method, at its defaults, helps on a small real stream — no opt-in list.

For each registered strategy except the two references (naive, the lower bound; joint, the
upper bound) and each scenario it supports, against naive fine-tuning on the same stream,
model and seed:
- ACC is higher (it helps);
- BWT is higher (it forgets less);
- plasticity is kept: accuracy on each task right after learning it is not far below the
  reference's (it does not buy retention by refusing to learn). The reference is naive's in
  task- and domain-IL (tolerance 0.1). In class-IL it is joint's, with tolerance 0.2:
  intransigence as Chaudhry et al. 2018 (ECCV, §4) define it, against the model trained on
  all data so far. Naive's newest-task accuracy there is no measure of learning: it predicts
  only the newest classes, so it scores its newest task by forgetting all the others, and a
  method that keeps every class in play (iCaRL's nearest means) must confuse new with old
  sometimes.
A strategy that cannot pass in a scenario declares it, with the reason, in its card's `caveats`
(users see it as a warning) or `not_better_than_naive` (by design, e.g. L2's
intransigent baseline; `lifelong list` shows it); such a pair is listed, not tested. A new
strategy gets these tests by being registered.

The streams are real MNIST digits (mnist-10k, from LIFELONG_DATA), kept small; training is one
setting for all (plain SGD, lr 0.1, batch 32, 10 epochs: long enough that naive forgets; with
2 epochs naive's BWT is positive and there is nothing to fight), other than the sweep's that
chose the defaults. Variants the defaults do not reach (EWC's exact gradient step, online EWC, each
Fisher estimate, SI's gradient step, DGR's soft targets) run end to end here too.

The quadratic penalties (EWC, online EWC, SI, MAS) have one default strength for every kind of
stream, so they are also held to it on both kinds at once, on the embedded 8x8 digits (no
download): permuted tasks (domain-IL), where a penalty that is too weak barely acts and one too
strong stops new tasks being learned, and split tasks with one head each (task-IL), where the
importances come out orders of magnitude smaller and a strength chosen on permuted tasks alone
used not to act at all. Each must beat naive by a clear margin on both, with plain SGD; with
Adam each must run, stay finite and at least match naive.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pytest

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import SCENARIOS, Stream
from lifelong.metrics import bwt
from lifelong.strategies import STRATEGIES, build_strategy
from tests.conftest import shared_data_or_skip

REFERENCES = ("naive", "joint")
CFG = TrainConfig(epochs=10, batch_size=32, lr=0.1, device="cpu")
SEED = 3



def declared(name: str) -> dict[str, str]:
    return STRATEGIES.get(name).card.limits()


CASES = [(n, s) for n in STRATEGIES.names() if n not in REFERENCES
         for s in SCENARIOS if s in STRATEGIES.get(n).card.scenarios and s not in declared(n)]
DECLARED = [(n, s, reason) for n in STRATEGIES.names() if n not in REFERENCES
            for s, reason in sorted(declared(n).items())]
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("ewc", {"step": "gradient"}),  # the paper's exact penalty, followed by its gradient
    ("ewc", {"online": True, "decay": 0.9}),
    ("ewc", {"fisher": "sampled"}),
    ("ewc", {"fisher": "empirical"}),
    ("si", {"step": "gradient", "strength": 0.3, "normalize": False}),
    ("dgr", {"distill": True}),  # soft targets: what its domain-IL caveat recommends
]


@cache
def stream(scenario: str) -> Stream:
    shared_data_or_skip("mnist-t10k")
    if scenario == "domain":
        return build_stream("permuted", source="mnist-10k", num_tasks=3, train_per_task=1000,
                            test_per_task=500, seed=SEED)
    return build_stream("split", source="mnist-10k", num_tasks=5, train_per_task=600,
                        test_per_task=300, scenario=scenario, seed=SEED)


@cache
def matrix(name: str, scenario: str, options: tuple[tuple[str, Any], ...] = ()
           ) -> tuple[tuple[float, ...], ...]:
    s = stream(scenario)
    model = build_model("mlp", s, hidden=[100, 100], seed=SEED)
    return fit_stream(build_strategy(name, model, **dict(options)), s, CFG, seed=SEED).matrix


def check_helps(R: tuple[tuple[float, ...], ...], scenario: str) -> None:
    N = matrix("naive", scenario)
    acc, acc_naive = sum(R[-1]) / len(R[-1]), sum(N[-1]) / len(N[-1])
    assert acc > acc_naive, f"ACC {acc:.3f} is not above naive's {acc_naive:.3f}"
    assert bwt(R) > bwt(N), f"BWT {bwt(R):+.3f} is not above naive's {bwt(N):+.3f}"
    ref, tolerance = ("joint", 0.2) if scenario == "class" else ("naive", 0.1)
    P = matrix(ref, scenario)
    for k in range(len(R[0])):
        assert R[k + 1][k] >= P[k + 1][k] - tolerance, (
            f"task {k + 1} learned to {R[k + 1][k]:.3f}, more than {tolerance} below {ref}'s "
            f"{P[k + 1][k]:.3f}: plasticity lost")


@pytest.mark.parametrize(("name", "scenario"), CASES)
def test_each_method_at_its_defaults_beats_naive(name: str, scenario: str) -> None:
    check_helps(matrix(name, scenario), scenario)


@pytest.mark.parametrize(("name", "options"), VARIANTS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}"
                              for n, o in VARIANTS])
def test_each_variant_runs_end_to_end_and_beats_naive(name: str, options: dict[str, Any]
                                                      ) -> None:
    check_helps(matrix(name, "domain", tuple(sorted(options.items()))), "domain")


PENALTIES: list[tuple[str, dict[str, Any]]] = [
    ("ewc", {}), ("ewc", {"online": True}), ("si", {}), ("mas", {})]
PENALTY_IDS = ["ewc", "online-ewc", "si", "mas"]
DIGITS_CFG = TrainConfig(epochs=10, batch_size=32, lr=0.1, device="cpu")
ADAM_CFG = TrainConfig(epochs=10, batch_size=32, lr=0.001, optimizer="adam", device="cpu")
GAIN = 0.02  # ACC over naive's on permuted digits, averaged over the seeds
SPLIT_BWT_GAIN = 0.01  # BWT over naive's on split digits, averaged over the seeds
DIGITS_SEEDS = (0, 1)


@cache
def digits(kind: str, seed: int) -> Stream:
    if kind == "permuted":
        return build_stream("permuted", source="digits", num_tasks=3, seed=seed)
    return build_stream("split", source="digits", scenario="task", seed=seed)


@cache
def digits_metrics(name: str, kind: str, cfg: TrainConfig = DIGITS_CFG,
                   options: tuple[tuple[str, Any], ...] = ()) -> tuple[float, float]:
    """(ACC, BWT) averaged over `DIGITS_SEEDS`; every accuracy must be finite."""
    accs, bwts = [], []
    for seed in DIGITS_SEEDS:
        s = digits(kind, seed)
        model = build_model("mlp", s, hidden=[100, 100], seed=seed)
        R = fit_stream(build_strategy(name, model, **dict(options)), s, cfg, seed=seed).matrix
        assert all(math.isfinite(v) for row in R for v in row), (name, kind, seed)
        accs.append(sum(R[-1]) / len(R[-1]))
        bwts.append(bwt(R))
    return sum(accs) / len(accs), sum(bwts) / len(bwts)


@pytest.mark.parametrize("kind", ["permuted", "split"])
@pytest.mark.parametrize(("name", "options"), PENALTIES, ids=PENALTY_IDS)
def test_each_penalty_at_its_defaults_beats_naive_on_permuted_and_split_digits(
        name: str, options: dict[str, Any], kind: str) -> None:
    (acc, back), (acc_naive, back_naive) = (
        digits_metrics(name, kind, options=tuple(options.items())), digits_metrics("naive", kind))
    # Split digits leave naive little to lose (a head per task, small test sets): there the
    # gain asked for is in forgetting, with ACC above naive's; on permuted digits, in ACC.
    if kind == "permuted":
        assert acc > acc_naive + GAIN, f"ACC {acc:.3f} is not {GAIN} above naive's {acc_naive:.3f}"
    else:
        assert acc > acc_naive, f"ACC {acc:.3f} is not above naive's {acc_naive:.3f}"
        assert back > back_naive + SPLIT_BWT_GAIN, (
            f"BWT {back:+.3f} is not {SPLIT_BWT_GAIN} above naive's {back_naive:+.3f}")


@pytest.mark.parametrize(("name", "options"), PENALTIES, ids=PENALTY_IDS)
def test_each_penalty_at_its_defaults_trains_with_adam(name: str, options: dict[str, Any]
                                                       ) -> None:
    # The default step is the proximal one only with plain SGD; Adam takes the gradient step.
    acc = digits_metrics(name, "split", ADAM_CFG, tuple(options.items()))[0]
    acc_naive = digits_metrics("naive", "split", ADAM_CFG)[0]
    assert acc >= acc_naive - 0.005, f"ACC {acc:.3f} is below naive's {acc_naive:.3f} with Adam"


def test_every_exemption_is_declared_with_its_reason() -> None:
    # Nothing is left out silently: a pair is tested, or declared with a reason users see.
    for name in STRATEGIES.names():
        if name in REFERENCES:
            continue
        for scenario in STRATEGIES.get(name).card.scenarios:
            assert (name, scenario) in CASES or declared(name).get(scenario, "").strip()
    assert all(len(reason) > 40 for _, _, reason in DECLARED)
