"""Golden results: what the library computes today, kept so that a restructuring can show it
changed no result.

Each case trains something small and returns plain values: accuracy matrices, run ids, the
experiment's own numbers, and a SHA-256 digest of the final weights. `tests/test_golden.py`
recomputes every case and compares it with `tests/golden/results.json`. Regenerate the file
only for a change that is meant to change results, and say so in the commit:

    LIFELONG_DATA=../shared/data .venv/bin/python -m tests.golden

The digests and exact matrices hold for one CPU kind and one torch version (float sums are
ordered by the kernels the CPU selects); the file records both.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import torch

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import SCENARIOS, Stream
from lifelong.group import Member, fit_group
from lifelong.strategies import STRATEGIES, build_strategy
from lifelong.train import LifelongWarning

FILE = Path(__file__).parent / "golden" / "results.json"
CFG = dict(epochs=1, batch_size=16, lr=0.05, device="cpu")


def platform() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


def tiny(scenario: str, source: str = "digits") -> Stream:
    return build_stream("split", source=source, num_tasks=3, classes_per_task=2,
                        train_per_task=96, test_per_task=40, scenario=scenario, seed=0)


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            h.update(name.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _fit(name: str, scenario: str, seed: int = 0, **train: Any) -> dict[str, Any]:
    stream = tiny(scenario)
    strategy = build_strategy(name, build_model("mlp", stream, hidden=[32], seed=seed))
    result = fit_stream(strategy, stream, TrainConfig(**{**CFG, **train}), seed=seed)
    return {"matrix": [list(r) for r in result.matrix], "weights": digest(strategy.model)}


def _group(name: str) -> dict[str, Any]:
    members = []
    for seed in (0, 1):
        stream = tiny("task")
        members.append(Member(build_strategy(name, build_model("mlp", stream, hidden=[32],
                                                               seed=seed)), stream, seed))
    results = fit_group(members, TrainConfig(**CFG))
    return {"matrices": [[list(r) for r in res.matrix] for res in results],
            "weights": [digest(m.strategy.model) for m in members]}


def _cli(*args: str) -> dict[str, Any]:
    """`lifelong run ... --json` in this process, in a fresh store; the runs' ids, labels,
    matrices and the experiment's compared numbers (not its table: that names paths)."""
    import tempfile

    from lifelong.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["run", *args, "--json", "--no-progress", "--store",
                         f"{tmp}/s.sqlite", "--out", tmp])
    if code != 0:
        raise RuntimeError(f"lifelong run {' '.join(args)} failed: {err.getvalue()[-2000:]}")
    doc = json.loads(out.getvalue())
    return {"runs": [{k: r[k] for k in ("run_id", "label", "seed", "matrix")}
                     for r in doc["runs"]],
            "ours": {r["label"]: r["ours"] for r in doc.get("references", [])}}


def cases() -> dict[str, Callable[[], dict[str, Any]]]:
    """Every golden case by name (computed lazily)."""
    out: dict[str, Callable[[], dict[str, Any]]] = {}
    builtin = [n for n in STRATEGIES.names()
               if STRATEGIES.get(n).__module__.startswith("lifelong.strategies.")]
    for name in builtin:  # (not those a test or an extension registered)
        for scenario in SCENARIOS:
            if scenario in STRATEGIES.get(name).card.scenarios:
                out[f"fit/{name}/{scenario}"] = (
                    lambda n=name, s=scenario: _fit(n, s))  # type: ignore[misc]
    for name in ("naive", "ewc", "si"):
        out[f"fit/{name}/task/adam-kept"] = (
            lambda n=name: _fit(n, "task", optimizer="adam", lr=0.003,
                                keep_optimizer=True))  # type: ignore[misc]
    out["fit/ewc/task/momentum"] = lambda: _fit("ewc", "task", momentum=0.9)
    out["fit/naive/class/steps"] = lambda: _fit("naive", "class", steps_per_task=7)
    for name in ("naive", "ewc", "si", "lwf"):
        out[f"group/{name}"] = lambda n=name: _group(n)  # type: ignore[misc]
    out["cli/forgetting"] = lambda: _cli("forgetting", "--quick")
    out["cli/single-ewc-seeds"] = lambda: _cli(
        "single", "--quick", "--set", "strategy.name=ewc", "--seed", "0,1,2")
    out["cli/three-scenarios"] = lambda: _cli(
        "three-scenarios", "--quick", "--strategies", "naive,ewc,er,lwf,icarl,gem")
    out["cli/babi-single"] = lambda: _cli(
        "babi-single", "--quick", "--set", "options.tasks=[1]", "--set", "train.epochs=3",
        "--seed", "0")
    return out


def compute(only: set[str] | None = None) -> dict[str, Any]:
    """The cases (those named in `only`), on one intra-op thread as the CLI runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LifelongWarning)
            return {name: make() for name, make in cases().items()
                    if only is None or name in only}
    finally:
        torch.set_num_threads(threads)


def main() -> int:
    if "LIFELONG_DATA" not in os.environ:
        print("set LIFELONG_DATA to the shared data folder", file=sys.stderr)
        return 2
    doc = {"platform": platform(), "cases": compute()}
    FILE.parent.mkdir(exist_ok=True)
    FILE.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(doc['cases'])} cases to {FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
