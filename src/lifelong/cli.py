"""The `lifelong` command line.

Owns argument parsing, human and JSON output, and turning user errors into one message with
exit code 2 (no traceback). The contract used by users' scripts and every later feature:

    lifelong run NAME_OR_CONFIG.yaml [--set key=value ...] [--seed N[,N...]] [--quick]
                 [--json] [--store PATH] [--out DIR] [--strategies a,b] [--threads N]
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
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed {text!r}: expected N or N,N,...") from None


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
    run = sub.add_parser("run", parents=[common],
                         help="run an experiment (a registered name or a YAML file)")
    run.add_argument("target", help="experiment name (see `lifelong list`) or config.yaml")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set train.epochs=2 (repeatable)")
    run.add_argument("--seed", type=_seeds, default=None, help="seed, or seeds: 0,1,2")
    run.add_argument("--quick", action="store_true", help="a small version (< 1 min on 2 cores)")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.add_argument("--store", default=DEFAULT_STORE, help="SQLite results store")
    run.add_argument("--out", default=DEFAULT_OUT, help="folder for run files and figures")
    run.add_argument("--strategies", default=None, help="comma-separated strategies to run")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--rerun", action="store_true",
                     help="train runs again even when the store holds them completed")
    run.add_argument("--threads", type=_threads, default=DEFAULT_THREADS, metavar="N",
                     help="PyTorch intra-op threads (default %(default)s: on a shared machine "
                     "more threads can make a run several times slower, see "
                     "benchmarks/README.md; 0 = PyTorch's own default, one per core); "
                     "recorded in each run's versions, not in its id")
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

    from lifelong.runner import execute, plan
    from lifelong.tables import format_matrix, format_warnings

    chosen = [s.strip() for s in args.strategies.split(",")] if args.strategies else None
    if args.threads:  # before any run; 0 leaves PyTorch's own choice
        torch.set_num_threads(args.threads)
    p = plan(args.target, sets=args.sets, seeds=args.seed, quick=args.quick, strategies=chosen)
    res = execute(p, store_path=args.store, out_dir=args.out,
                  progress=False if args.no_progress else None, rerun=args.rerun)
    runs = []
    # A run that diverged in an experiment that goes on after it (a sweep) has no matrix: it
    # is listed apart, so every entry of "runs" keeps the fields scripts rely on.
    diverged = [{"run_id": o.run_id, "strategy": o.strategy, "label": o.label,
                 "stream": o.result.stream, "scenario": o.config["stream"].get("scenario"),
                 "seed": o.seed, "status": "diverged",
                 "error": o.error} for o in res.outcomes if o.error is not None]
    for o in res.outcomes:
        if o.error is not None:
            continue
        m = o.result.metrics
        runs.append({
            "run_id": o.run_id, "strategy": o.strategy, "label": o.label,
            "stream": o.result.stream, "scenario": o.config["stream"].get("scenario"),
            "seed": o.seed, "matrix": [list(r) for r in o.result.matrix], **m,
            "train_seconds": sum(o.result.train_seconds),
            "eval_seconds": sum(o.result.eval_seconds),
            "parameters": list(o.result.parameters),  # the model's size after each task
            "order": list(o.result.tasks),  # the task keys in training order
            "run_dir": str(o.run_dir),
            "reused": o.reused, **o.result.notes()})
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
