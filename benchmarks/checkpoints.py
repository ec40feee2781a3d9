"""What checkpoints cost: a run with a checkpoint after every task against the same run
without, on the protocols of `overhead.py` (same stream, model, options and seed).

Every run of `lifelong run` and `lifelong sweep` writes one (`lifelong.run.execution.run_job`):
the strategy's state (weights, memories, anchors and importances, generator states) and the
rows so far, replaced atomically (written, fsynced, renamed) after each task. This measures
the wall time of `fit_stream` with and without that callback, alternating which goes first,
and the size of the last checkpoint.

Run: ``python benchmarks/checkpoints.py [--protocols P1] [--strategies naive,ewc] [--repeats 3]
[--json]`` (one thread recommended: ``--threads 1``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifelong import build_model, build_strategy, build_stream, fit_stream  # noqa: E402
from lifelong.data.task import Stream  # noqa: E402
from lifelong.run.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from lifelong.train import Progress  # noqa: E402
from overhead import OPTIONS, PROTOCOLS, SEED, config, scenario_of  # noqa: E402

DEFAULT = "naive,ewc,si,er,agem,gem,joint"


def one_run(name: str, stream: Stream, p: Any, folder: Path | None) -> tuple[float, int]:
    """Wall seconds of one run and the bytes of its last checkpoint (0 without)."""
    strategy = build_strategy(name, build_model("mlp", stream, hidden=[100, 100], seed=SEED),
                              **OPTIONS.get(name, {}))
    path = folder / f"{name}.pt" if folder is not None else None

    def save(progress: Progress) -> None:
        assert path is not None
        save_checkpoint(path, Checkpoint(name, progress, strategy.state_dict(), {}))

    gc.collect()
    t = time.perf_counter()
    fit_stream(strategy, stream, config(p), seed=SEED, checkpoint=save if path else None)
    wall = time.perf_counter() - t
    return wall, (path.stat().st_size if path is not None else 0)


def measure(name: str, stream: Stream, p: Any, repeats: int, folder: Path) -> dict[str, Any]:
    plain, saved, size = [], [], 0
    for i in range(repeats):
        order = (folder, None) if i % 2 else (None, folder)
        for where in order:
            wall, nbytes = one_run(name, stream, p, where)
            (saved if where is not None else plain).append(wall)
            size = max(size, nbytes)
    return {"protocol": p.name, "strategy": name,
            "ratio_wall": statistics.median(s / b for s, b in zip(saved, plain, strict=True)),
            "plain_wall_s": statistics.median(plain), "checkpoint_wall_s": statistics.median(saved),
            "checkpoint_mb": size / 2**20, "tasks": p.num_tasks, "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", default="P1")
    ap.add_argument("--strategies", default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pname in args.protocols.split(","):
            p = PROTOCOLS[pname]
            for name in args.strategies.split(","):
                stream = build_stream("permuted", source="fashion-mnist", num_tasks=p.num_tasks,
                                      train_per_task=p.train_per_task,
                                      test_per_task=p.test_per_task,
                                      scenario=scenario_of(name), seed=SEED)
                rows.append(measure(name, stream, p, args.repeats, Path(tmp)))
                if not args.json:
                    r = rows[-1]
                    print(f"{pname} {name:6s} {r['ratio_wall']:.3f}x  plain "
                          f"{r['plain_wall_s']:.2f} s  with checkpoints "
                          f"{r['checkpoint_wall_s']:.2f} s  last checkpoint "
                          f"{r['checkpoint_mb']:.1f} MB", flush=True)
    if args.json:
        print(json.dumps({"rows": rows, "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
