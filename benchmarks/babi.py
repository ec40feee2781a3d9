"""Step throughput of MemN2N on bAbI: `lifelong` against a bare PyTorch loop with the same model.

Owns the bAbI protocol and its bare loop. The image protocols and the shared method (alternate
bare and ours, median ratios) are in `overhead.py`; this file is the same measurement for
multi-input examples (story, question), so it also shows what tuple inputs cost the loop.

Protocol B1: the `babi` stream (1k), tasks 1-5 in order, 900 training questions per task (the
10 % validation split held out), MemN2N at its defaults (3 hops, embedding 20), batch 32, three
epochs (`--epochs`), Adam lr 0.01, gradient norm clipped at 40, naive fine-tuning; every task's
1000 test questions after every task. The bare loop calls the same `MemN2N` module directly,
from the same initial weights and with the same shuffling seeds, so both compute the same
thing.

Run: ``python benchmarks/babi.py [--repeats 5] [--epochs 3] [--tasks 5] [--json]`` (needs
LIFELONG_DATA with babi/en).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lifelong import TrainConfig, build_model, build_strategy, build_stream, fit_stream
from lifelong.data.task import Stream
from lifelong.seeding import derive_seed

SEED, BATCH, LR, CLIP, EVAL_BATCH = 0, 32, 0.01, 40.0, 2048


def bare_accuracy(net: nn.Module, stream: Stream) -> list[float]:
    net.eval()
    out = []
    with torch.inference_mode():
        for task in stream.tasks:
            (story, query), y = task.test.x, task.test.y
            hits = 0
            for s in range(0, len(y), EVAL_BATCH):
                logits = net((story[s:s + EVAL_BATCH], query[s:s + EVAL_BATCH]))
                hits += int((logits.argmax(1) == y[s:s + EVAL_BATCH]).sum())
            out.append(hits / len(y))
    net.train()
    return out


def bare_run(net: nn.Module, stream: Stream, epochs: int) -> dict[str, float]:
    seeds = [[derive_seed(SEED, "batches", t.key, e) for e in range(epochs)]
             for t in stream.tasks]
    train_s = 0.0
    t_wall = time.perf_counter()
    bare_accuracy(net, stream)
    for task, task_seeds in zip(stream.tasks, seeds, strict=True):
        t0 = time.perf_counter()
        params = list(net.parameters())
        opt = torch.optim.Adam(params, lr=LR)
        (story, query), y = task.train.x, task.train.y
        for seed in task_seeds:
            g = torch.Generator()
            g.manual_seed(seed)
            order = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), BATCH):
                idx = order[i:i + BATCH]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net((story[idx], query[idx])), y[idx]).backward()
                torch.nn.utils.clip_grad_norm_(params, CLIP)
                opt.step()
        train_s += time.perf_counter() - t0
        row = bare_accuracy(net, stream)
    return {"wall": time.perf_counter() - t_wall, "train": train_s, "acc": statistics.fmean(row)}


def ours_run(model: nn.Module, stream: Stream, epochs: int) -> dict[str, float]:
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, optimizer="adam", lr=LR, grad_clip=CLIP,
                      eval_batch_size=EVAL_BATCH, device="cpu")
    t = time.perf_counter()
    result = fit_stream(build_strategy("naive", model), stream, cfg, seed=SEED)
    return {"wall": time.perf_counter() - t, "train": sum(c.train_seconds for c in result.costs),
            "acc": statistics.fmean(result.matrix[-1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    stream = build_stream("babi", tasks=list(range(1, args.tasks + 1)), seed=SEED)
    init = build_model("memnet", stream, seed=SEED)
    ours_run(copy.deepcopy(init), stream, 1)  # warm-up (allocator, first calls)
    bare: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    for i in range(args.repeats):
        gc.collect()
        pair = [lambda: bare.append(bare_run(copy.deepcopy(init), stream, args.epochs)),
                lambda: ours.append(ours_run(copy.deepcopy(init), stream, args.epochs))]
        for run in (pair if i % 2 == 0 else pair[::-1]):
            run()
    steps = sum(args.epochs * -(-len(t.train) // BATCH) for t in stream.tasks)

    def ratio(key: str) -> float:
        return float(statistics.median(o[key] / b[key] for o, b in zip(ours, bare, strict=True)))

    row: dict[str, Any] = {
        "protocol": "B1", "tasks": args.tasks, "epochs": args.epochs, "steps": steps,
        "ratio_wall": ratio("wall"), "ratio_train": ratio("train"),
        "ours_steps_per_s": steps / statistics.median(o["train"] for o in ours),
        "bare_steps_per_s": steps / statistics.median(b["train"] for b in bare),
        "acc": ours[0]["acc"], "acc_bare": bare[0]["acc"], "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(row, indent=1))
    else:
        print(f"B1 (bAbI 1k, tasks 1-{args.tasks}, MemN2N, {steps} steps): train "
              f"{row['ours_steps_per_s']:.0f} steps/s ours vs {row['bare_steps_per_s']:.0f} "
              f"bare (ratio {row['ratio_train']:.2f}), wall ratio {row['ratio_wall']:.2f}, "
              f"ACC {row['acc']:.3f} vs {row['acc_bare']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
