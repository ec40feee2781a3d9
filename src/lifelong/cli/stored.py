"""The commands that read: ``report``, ``list``, ``runs`` and ``show``.

Each reads the store (or the registries, for ``list``) and prints, or emits one JSON object
with ``--json``; none trains or writes a run.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lifelong.cli.output import emit


def cmd_report(args: argparse.Namespace) -> int:
    from lifelong.report import write_report

    path = write_report(args.store, args.out)
    print(f"report: {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from lifelong.cli.catalog import catalog, format_catalog, methods_markdown

    cat = catalog()
    if args.json:
        emit(cat)
    elif args.markdown:
        print(methods_markdown(cat), end="")
    else:
        print(format_catalog(cat))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from lifelong.report.tables import format_runs_table
    from lifelong.store import Store

    if not Path(args.store).exists():  # nothing stored yet: say so, create nothing
        rows = []
    else:
        with Store(args.store, create=False) as store:
            rows = store.list_runs(experiment=args.experiment)
    if args.json:
        emit({"runs": [dataclasses.asdict(r) for r in rows]})
    else:
        print(format_runs_table(rows) if rows else f"no runs in {args.store}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lifelong.report.tables import format_run
    from lifelong.store import Store

    with Store(args.store, create=False) as store:
        record = store.get_run(args.run_id)
    if args.json:
        emit(dataclasses.asdict(record))
    else:
        print(format_run(record))
    return 0
