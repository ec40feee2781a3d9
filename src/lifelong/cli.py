"""The `lifelong` command line.

Owns argument parsing, human and JSON output, and turning user errors into one message with
exit code 2 (no traceback). The contract used by users' scripts and every later feature:

    lifelong run NAME_OR_CONFIG.yaml [--set key=value ...] [--seed N[,N...]] [--quick]
                 [--json] [--store PATH] [--out DIR] [--strategies a,b] [--threads N]
                 [--resume] [--keep-checkpoints] [--mlflow [URI]] [--tensorboard DIR]
    lifelong sweep NAME_OR_CONFIG.yaml --grid key=v1,v2 ... [--seeds 0-4] [--set ...]
                 [--executor local|ray] [--address ADDR] [--max-parallel N] [--json] ...
    lifelong resume RUN_ID [--store PATH] [--out DIR] [--json]
    lifelong report [--store PATH] [--out report.html]
    lifelong reproduce [--experiments a,b] [--quick] [--json] [--store PATH] [--out DIR] ...
    lifelong list [--json]
    lifelong runs [--store PATH] [--experiment NAME] [--json]
    lifelong show RUN_ID [--store PATH] [--json]

Every command takes `--import MODULE_OR_FILE` (repeatable): a user's module, imported before
anything else, whose `@STRATEGIES.register(...)` (or model, stream, experiment) decorators add to
ours (see `extensions.py`).

With `--json`, stdout holds exactly one JSON object; progress bars and warnings go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lifelong.errors import ConfigError, LifelongError
from lifelong.store import DEFAULT_PATH

DEFAULT_STORE = str(DEFAULT_PATH)
DEFAULT_OUT = str(DEFAULT_PATH.parent)
# One intra-op thread: the models we ship are small, so a second thread gains little on an
# idle machine and, when another process holds a core, costs a several-fold slowdown (each
# op waits for its preempted thread). Measured in benchmarks/README.md ("Threads").
DEFAULT_THREADS = 1


def _seeds(text: str) -> list[int]:
    from lifelong.runs.sweep import parse_seeds

    try:
        return parse_seeds(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"--seed {text!r}: expected N, N,N,... or N-M "
                                         "(e.g. 0-4)") from None


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(
            f"--threads {text!r}: expected a whole number >= 0 (1 = one thread, the default; "
            "0 = PyTorch's own default)")
    return n


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lifelong", description="Continual learning on PyTorch.")
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)  # options every command takes
    common.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE_OR_FILE",
                        help="import your own module (dotted name or .py file) first, so the "
                        "strategies, models, streams or experiments it registers can be used "
                        "(repeatable)")
    checkpoints = argparse.ArgumentParser(add_help=False)
    checkpoints.add_argument("--keep-checkpoints", action="store_true",
                             help="keep each finished run's last checkpoint (default: removed)")
    tracking = argparse.ArgumentParser(add_help=False)
    tracking.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                          help="log each run to MLflow (default URI: a local mlruns/ folder)")
    tracking.add_argument("--tensorboard", default=None, metavar="DIR",
                          help="write TensorBoard scalars of each run under DIR")
    vector = argparse.ArgumentParser(add_help=False)
    vector.add_argument("--no-vectorize", dest="vectorize", action="store_false",
                        help="train every run on its own (default: runs that differ only in "
                        "seed or a numeric strategy option train as one vectorised group, "
                        "where the strategy allows it; `lifelong list` says which do not)")
    results = argparse.ArgumentParser(add_help=False)  # where runs go and how they are shown
    results.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    results.add_argument("--store", default=DEFAULT_STORE, help="SQLite results store")
    results.add_argument("--out", default=DEFAULT_OUT, help="folder for run files and figures")
    results.add_argument("--no-progress", action="store_true", help="hide progress bars")
    results.add_argument("--rerun", action="store_true",
                         help="train runs again even when the store holds them completed")
    run = sub.add_parser("run", parents=[common, checkpoints, tracking, vector, results],
                         help="run an experiment (a registered name or a YAML file)")
    run.add_argument("target", help="experiment name (see `lifelong list`) or config.yaml")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set train.epochs=2 (repeatable)")
    run.add_argument("--seed", type=_seeds, default=None,
                     help="seed, or seeds: 0,1,2 or 0-4 (trained as one vectorised group "
                     "where the strategy allows it)")
    run.add_argument("--quick", action="store_true", help="a small version (< 1 min on 2 cores)")
    run.add_argument("--strategies", default=None, help="comma-separated strategies to run")
    run.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N",
                     help="PyTorch intra-op threads (default %(default)s: on a shared machine "
                     "more threads can make a run several times slower, see "
                     "benchmarks/README.md; 0 = PyTorch's own default, one per core); "
                     "recorded in each run's versions, not in its id")
    run.add_argument("--resume", action="store_true",
                     help="continue runs that stopped mid-stream from their checkpoints")
    sweep = sub.add_parser("sweep", parents=[common, checkpoints, tracking, vector],
                           help="an experiment over a grid of options and seeds (resumable; "
                           "local processes or Ray)")
    sweep.add_argument("target", help="experiment name (see `lifelong list`) or config.yaml")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="values to sweep, e.g. --grid strategy.strength=1,10,100 "
                       "(repeatable: the product of all grids runs)")
    sweep.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                       help="a fixed override for every run (repeatable)")
    sweep.add_argument("--seeds", default=None, help="seeds: 0-4, or 0,1,2 (default: the "
                       "experiment's)")
    sweep.add_argument("--quick", action="store_true", help="the experiment's small version")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: a pool of processes on this machine (default); ray: one "
                       "Ray task per run")
    sweep.add_argument("--address", default=None,
                       help="with --executor ray: join the cluster at host:port (default: "
                       "start Ray on this machine)")
    sweep.add_argument("--max-parallel", type=_threads, default=0, metavar="N",
                       help="runs at once (default: one per core, or the cluster's CPUs)")
    sweep.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N",
                       help="PyTorch threads per worker (default %(default)s)")
    sweep.add_argument("--store", default=DEFAULT_STORE, help="SQLite results store")
    sweep.add_argument("--out", default=DEFAULT_OUT, help="folder for run files")
    sweep.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.add_argument("--rerun", action="store_true",
                       help="train runs again even when the store holds them completed")
    resume = sub.add_parser("resume", parents=[common, checkpoints],
                            help="continue one stored run that stopped mid-stream")
    resume.add_argument("run_id")
    resume.add_argument("--store", default=DEFAULT_STORE)
    resume.add_argument("--out", default=DEFAULT_OUT, help="folder for the run's files")
    resume.add_argument("--json", action="store_true")
    resume.add_argument("--no-progress", action="store_true")
    resume.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N")
    rep = sub.add_parser("reproduce", parents=[common, vector, results],
                         help="every experiment at its paper protocol into one store: one "
                         "table of published vs ours, gap and pass/miss (resumable)")
    rep.add_argument("--experiments", default=None,
                     help="comma-separated experiments (default: all with published numbers)")
    rep.add_argument("--quick", action="store_true", help="each experiment's small version, "
                     "one seed (a check of the machinery, not a reproduction)")
    rep.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N",
                     help="PyTorch intra-op threads (default %(default)s)")
    report = sub.add_parser("report", parents=[common],
                            help="one self-contained HTML page of the stored runs")
    report.add_argument("--store", default=DEFAULT_STORE)
    report.add_argument("--out", default="report.html", help="the HTML file to write")
    ls = sub.add_parser("list", parents=[common],
                        help="experiments, streams, models, strategies and options")
    ls.add_argument("--json", action="store_true")
    runs = sub.add_parser("runs", parents=[common], help="a table of stored runs")
    runs.add_argument("--store", default=DEFAULT_STORE)
    runs.add_argument("--experiment", default=None)
    runs.add_argument("--json", action="store_true")
    show = sub.add_parser("show", parents=[common], help="one stored run: matrix, metrics, costs")
    show.add_argument("run_id")
    show.add_argument("--store", default=DEFAULT_STORE)
    show.add_argument("--json", action="store_true")
    return ap


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """Our own warnings as one line a user reads ("lifelong: warning: ..."), without the
    source line Python shows by default; other libraries' warnings as Python formats them."""
    if category.__name__ == "LifelongWarning":
        return f"lifelong: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.formatwarning = _format_warning  # the command line's output only
    try:
        if args.imports:
            from lifelong.extensions import import_extensions

            import_extensions(args.imports)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "runs":
            return cmd_runs(args)
        return cmd_show(args)
    except LifelongError as e:
        msg = str(e).replace("\n", "\n  ")
        print(f"lifelong: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lifelong: interrupted; finished tasks are kept in the store", file=sys.stderr)
        return 130


def _emit(obj: Any) -> None:
    """One JSON object on stdout; undefined numbers (NaN) become null, so it is strict JSON."""
    sys.stdout.write(json.dumps(_nan_to_null(obj), indent=None, default=str,
                                allow_nan=False) + "\n")


def _nan_to_null(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    return obj


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from lifelong.runs.runner import execute, plan
    from lifelong.tables import format_matrix, format_warnings

    chosen = [s.strip() for s in args.strategies.split(",")] if args.strategies else None
    if args.threads:  # before any run; 0 leaves PyTorch's own choice
        torch.set_num_threads(args.threads)
    p = plan(args.target, sets=args.sets, seeds=args.seed, quick=args.quick, strategies=chosen)
    res = execute(p, store_path=args.store, out_dir=args.out,
                  progress=False if args.no_progress else None, rerun=args.rerun,
                  resume=args.resume, keep_checkpoints=args.keep_checkpoints,
                  imports=args.imports, loggers=_loggers(args), vectorize=args.vectorize)
    runs = [_run_json(o) for o in res.outcomes if o.error is None]
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
        _emit({"experiment": res.experiment, "runs": runs, "diverged": diverged,
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


def _run_json(o: Any) -> dict[str, Any]:
    """One run of ``--json``'s "runs" (an `Outcome` with a result)."""
    return {
        "run_id": o.run_id, "strategy": o.strategy, "label": o.label,
        "stream": o.result.stream, "scenario": o.config["stream"].get("scenario"),
        "seed": o.seed, "matrix": [list(r) for r in o.result.matrix], **o.result.metrics,
        "train_seconds": sum(c.train_seconds for c in o.result.costs),
        "eval_seconds": sum(c.eval_seconds for c in o.result.costs),
        # the model's size after each task
        "parameters": [c.parameters for c in o.result.costs],
        "order": list(o.result.tasks),  # the task keys in training order
        "run_dir": str(o.run_dir),
        "reused": o.reused, "resumed_tasks": o.resumed_tasks,
        # 1: trained alone; G: trained with G-1 others as one vectorised group
        "group_size": int(o.result.diagnostics[0].get("group_size", 1.0)
                          if o.result.diagnostics else 1),
        **o.result.notes()}


def _loggers(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    if args.mlflow is not None:
        out.append(("mlflow", args.mlflow or None))
    if args.tensorboard is not None:
        out.append(("tensorboard", args.tensorboard))
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    from lifelong.runs.executors import Executor, LocalPool, RayExecutor
    from lifelong.runs.sweep import (
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
                        loggers=_loggers(args), vectorize=args.vectorize)
    finally:
        if isinstance(executor, RayExecutor):
            executor.close()
    rows = summarize(res)
    if args.json:
        _emit({"experiment": sweep.plan.experiment.name,
               "grid": {k: list(v) for k, v in sweep.grid},
               "runs": [_run_json(o) for o in res.outcomes if o.error is None],
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
    from lifelong.runs.planning import RunSpec
    from lifelong.runs.runner import execute_runs
    from lifelong.store import Store
    from lifelong.tables import format_matrix

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
        _emit({"runs": [_run_json(outcome)]})
    else:
        print(f"== {outcome.label} on {outcome.result.stream}, seed {outcome.seed} "
              f"(run {outcome.run_id})")
        print(format_matrix(outcome.result.matrix))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lifelong.report import write_report

    path = write_report(args.store, args.out)
    print(f"report: {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    import torch

    from lifelong.reproduce import format_scores, reproduce

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.experiments.split(",")] if args.experiments else None
    res = reproduce(names, quick=args.quick, store_path=args.store, out_dir=args.out,
                    progress=False if args.no_progress else None, rerun=args.rerun,
                    imports=args.imports, vectorize=args.vectorize,
                    on_experiment=lambda n: print(f"lifelong: reproducing {n}", file=sys.stderr))
    if args.json:
        _emit({"rows": [dataclasses.asdict(r) for r in res.rows],
               "experiments": list(res.experiments), "quick": args.quick})
    else:
        print(format_scores(res.rows))
        if args.quick:
            print("note: --quick runs each experiment's small version on one seed: it checks "
                  "the machinery, the gaps are not a reproduction")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from lifelong.catalog import catalog, format_catalog

    cat = catalog()
    if args.json:
        _emit(cat)
    else:
        print(format_catalog(cat))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from lifelong.store import Store
    from lifelong.tables import format_runs_table

    if not Path(args.store).exists():  # nothing stored yet: say so, create nothing
        rows = []
    else:
        with Store(args.store, create=False) as store:
            rows = store.list_runs(experiment=args.experiment)
    if args.json:
        _emit({"runs": [dataclasses.asdict(r) for r in rows]})
    else:
        print(format_runs_table(rows) if rows else f"no runs in {args.store}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lifelong.store import Store
    from lifelong.tables import format_run

    with Store(args.store, create=False) as store:
        record = store.get_run(args.run_id)
    if args.json:
        _emit(dataclasses.asdict(record))
    else:
        print(format_run(record))
    return 0


__all__ = ["main", "parser", "ConfigError"]

if __name__ == "__main__":
    sys.exit(main())
