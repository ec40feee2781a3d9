"""The `lifelong` command line.

Owns dispatching a command and turning user errors into one message with exit code 2 (no
traceback); the arguments are `parser.py`, the commands that train `running.py`, those that
read the store `stored.py`, the JSON output `output.py`. The contract used by users' scripts
and every later feature:

    lifelong run NAME_OR_CONFIG.yaml [--set key=value ...] [--seed N[,N...]] [--quick]
                 [--json] [--store PATH] [--out DIR] [--strategies a,b] [--threads N]
                 [--resume] [--keep-checkpoints] [--mlflow [URI]] [--tensorboard DIR]
    lifelong sweep NAME_OR_CONFIG.yaml --grid key=v1,v2 ... [--seeds 0-4] [--set ...]
                 [--executor local|ray] [--address ADDR] [--max-parallel N] [--json] ...
    lifelong resume RUN_ID [--store PATH] [--out DIR] [--json]
    lifelong report [--store PATH] [--out report.html]
    lifelong reproduce [--experiments a,b] [--quick] [--json] [--store PATH] [--out DIR] ...
    lifelong list [--json | --markdown]
    lifelong runs [--store PATH] [--experiment NAME] [--json]
    lifelong show RUN_ID [--store PATH] [--json]

Every command takes `--import MODULE_OR_FILE` (repeatable): a user's module, imported before
anything else, whose `@STRATEGIES.register(...)` (or model, stream, experiment) decorators add to
ours (see `lifelong.extensions`).

With `--json`, stdout holds exactly one JSON object; progress bars and warnings go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from lifelong.cli.parser import parser
from lifelong.cli.running import cmd_reproduce, cmd_resume, cmd_run, cmd_sweep
from lifelong.cli.stored import cmd_list, cmd_report, cmd_runs, cmd_show
from lifelong.errors import ConfigError, LifelongError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "sweep": cmd_sweep, "resume": cmd_resume, "report": cmd_report,
    "reproduce": cmd_reproduce, "list": cmd_list, "runs": cmd_runs, "show": cmd_show}


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
        return COMMANDS[args.command](args)
    except LifelongError as e:
        msg = str(e).replace("\n", "\n  ")
        print(f"lifelong: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lifelong: interrupted; finished tasks are kept in the store", file=sys.stderr)
        return 130


__all__ = ["ConfigError", "main", "parser"]
