"""The command line's arguments: every command, its options and their checks.

Owns `parser` (the contract of `lifelong` in the package docstring) and the defaults of
``--store``, ``--out`` and ``--threads``. Does not own what a command does (`running.py`,
`stored.py`).
"""

from __future__ import annotations

import argparse

from lifelong.errors import ConfigError
from lifelong.store import DEFAULT_PATH

DEFAULT_STORE = str(DEFAULT_PATH)
DEFAULT_OUT = str(DEFAULT_PATH.parent)
# One intra-op thread: the models we ship are small, so a second thread gains little on an
# idle machine and, when another process holds a core, costs a several-fold slowdown (each
# op waits for its preempted thread). Measured in benchmarks/README.md ("Threads").
DEFAULT_THREADS = 1


def _seeds(text: str) -> list[int]:
    from lifelong.run.sweep import parse_seeds

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
    from lifelong import __version__

    ap = argparse.ArgumentParser(prog="lifelong", description="Continual learning on PyTorch.")
    ap.add_argument("--version", action="version", version=f"lifelong {__version__}")
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
    ls.add_argument("--markdown", action="store_true",
                    help="the strategies' cards as the Markdown page docs/methods.md")
    runs = sub.add_parser("runs", parents=[common], help="a table of stored runs")
    runs.add_argument("--store", default=DEFAULT_STORE)
    runs.add_argument("--experiment", default=None)
    runs.add_argument("--json", action="store_true")
    show = sub.add_parser("show", parents=[common], help="one stored run: matrix, metrics, costs")
    show.add_argument("run_id")
    show.add_argument("--store", default=DEFAULT_STORE)
    show.add_argument("--json", action="store_true")
    return ap
