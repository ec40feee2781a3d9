"""The commands that train: ``run``, ``sweep``, ``resume`` and ``reproduce``.

Each plans (`lifelong.run.planning`), executes (`lifelong.run`) and prints a table, or one
JSON object with ``--json``. Does not own the arguments (`parser.py`) or reading the store
(`stored.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from lifelong.cli.output import emit, run_json
from lifelong.errors import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from lifelong.report.tables import format_matrix, format_warnings
    from lifelong.run.runner import execute, plan

    chosen = [s.strip() for s in args.strategies.split(",")] if args.strategies else None
    if args.threads:  # before any run; 0 leaves PyTorch's own choice
        torch.set_num_threads(args.threads)
    p = plan(args.target, sets=args.sets, seeds=args.seed, quick=args.quick, strategies=chosen)
    res = execute(p, store_path=args.store, out_dir=args.out,
                  progress=False if args.no_progress else None, rerun=args.rerun,
                  resume=args.resume, keep_checkpoints=args.keep_checkpoints,
                  imports=args.imports, loggers=loggers(args), vectorize=args.vectorize)
    runs = [run_json(o) for o in res.outcomes if o.error is None]
    # A run that diverged in an experiment that goes on after it (a sweep) has no matrix: it
    # is listed apart, so every entry of "runs" keeps the fields scripts rely on.
    diverged = [{"run_id": o.run_id, "strategy": o.strategy, "label": o.label,
                 "stream": o.result.stream, "scenario": o.config["stream"].get("scenario"),
                 "seed": o.seed, "status": "diverged",
                 "error": o.error} for o in res.outcomes if o.error is not None]
    refs = [{"label": r.label, "published": r.value, "ours": ours, "source": r.source}
            for r, ours in res.references]
    if reused := sum(o.reused for o in res.outcomes):
        print(f"lifelong: {reused} of {len(res.outcomes)} runs were already complete in "
              f"{args.store} and were reused (--rerun trains them again)", file=sys.stderr)
    if args.json:
        emit({"experiment": res.experiment, "runs": runs, "diverged": diverged,
               "figures": [str(f) for f in res.figures], "table": res.table,
               "references": refs, "protocol_note": res.protocol_note})
        return 0
    for o in res.outcomes:
        print(f"== {o.label} on {o.result.stream}, seed {o.seed} (run {o.run_id})")
        print(f"diverged: {o.error}" if o.error is not None else format_matrix(o.result.matrix))
        if warned := format_warnings(o.result.warnings):
            print(warned)
        print()
    if res.table:
        print(res.table, end="\n\n")
    if refs:
        print(f"{'compared with':44s} {'theirs':>9s} {'ours':>7s}  source (paper, table, protocol)")
        for r in refs:
            ours = "-" if r["ours"] is None else f"{r['ours']:.3f}"
            print(f"{r['label']:44s} {r['published']:9.3f} {ours:>7s}  {r['source']}")
    if res.protocol_note:
        print(f"note: {res.protocol_note}")
    for f in res.figures:
        print(f"figure: {f}")
    return 0


def loggers(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    if args.mlflow is not None:
        out.append(("mlflow", args.mlflow or None))
    if args.tensorboard is not None:
        out.append(("tensorboard", args.tensorboard))
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    from lifelong.run.executors import Executor, LocalPool, RayExecutor
    from lifelong.run.sweep import (
        format_summary,
        parse_grid,
        parse_seeds,
        plan_sweep,
        run_sweep,
        summarize,
    )

    sweep = plan_sweep(args.target, parse_grid(args.grid), sets=args.sets,
                       seeds=parse_seeds(args.seeds) if args.seeds else None, quick=args.quick)
    executor: Executor
    if args.executor == "ray":
        executor = RayExecutor(args.address, args.max_parallel or None)
    else:
        if args.address:
            raise ConfigError("--address joins a Ray cluster; add --executor ray")
        executor = LocalPool(args.max_parallel or None, threads=args.threads or 1)
    try:
        res = run_sweep(sweep, store_path=args.store, out_dir=args.out, executor=executor,
                        progress=False if args.no_progress else None, rerun=args.rerun,
                        keep_checkpoints=args.keep_checkpoints, imports=args.imports,
                        loggers=loggers(args), vectorize=args.vectorize)
    finally:
        if isinstance(executor, RayExecutor):
            executor.close()
    rows = summarize(res)
    if args.json:
        emit({"experiment": sweep.plan.experiment.name,
               "grid": {k: list(v) for k, v in sweep.grid},
               "runs": [run_json(o) for o in res.outcomes if o.error is None],
               "diverged": [{"run_id": o.run_id, "label": o.label, "seed": o.seed,
                             "error": o.error} for o in res.outcomes if o.error is not None],
               "failed": [dataclasses.asdict(f) for f in res.failures],
               "reused": res.reused, "summary": rows})
    else:
        print(format_summary(rows, res.failures))
        print(f"{len(sweep.runs)} runs: {res.reused} already in {args.store}, "
              f"{len(res.outcomes) - res.reused} run now, {len(res.failures)} failed")
    return 1 if res.failures else 0


def cmd_resume(args: argparse.Namespace) -> int:
    import torch

    from lifelong.experiments import get_experiment
    from lifelong.report.tables import format_matrix
    from lifelong.run.planning import RunSpec
    from lifelong.run.runner import execute_runs
    from lifelong.store import Store

    if args.threads:
        torch.set_num_threads(args.threads)
    with Store(args.store, create=False) as store:
        rec = store.get_run(args.run_id)
        if rec.status == "completed":
            raise ConfigError(f"run {rec.run_id} is already completed; `lifelong show "
                              f"{rec.run_id}` shows it")
        spec = RunSpec(rec.strategy, rec.seed, rec.config, rec.label)
        if spec.run_id != rec.run_id:
            raise ConfigError(f"run {rec.run_id}: its stored config hashes to {spec.run_id}; "
                              "it was stored by another version of lifelong, run it again")
        experiment = get_experiment(str(rec.config.get("experiment", rec.experiment)))
        (outcome,), _ = execute_runs(experiment, [spec], store=store, out=Path(args.out),
                                     progress=False if args.no_progress else None,
                                     rerun=True, resume=True,
                                     keep_checkpoints=args.keep_checkpoints,
                                     imports=args.imports)
    if args.json:
        emit({"runs": [run_json(outcome)]})
    else:
        print(f"== {outcome.label} on {outcome.result.stream}, seed {outcome.seed} "
              f"(run {outcome.run_id})")
        print(format_matrix(outcome.result.matrix))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    import torch

    from lifelong.report.scores import format_scores
    from lifelong.run.reproduce import reproduce

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.experiments.split(",")] if args.experiments else None
    res = reproduce(names, quick=args.quick, store_path=args.store, out_dir=args.out,
                    progress=False if args.no_progress else None, rerun=args.rerun,
                    imports=args.imports, vectorize=args.vectorize,
                    on_experiment=lambda n: print(f"lifelong: reproducing {n}", file=sys.stderr))
    if args.json:
        emit({"rows": [dataclasses.asdict(r) for r in res.rows],
               "experiments": list(res.experiments), "quick": args.quick})
    else:
        print(format_scores(res.rows))
        if args.quick:
            print("note: --quick runs each experiment's small version on one seed: it checks "
                  "the machinery, the gaps are not a reproduction")
    return 0
