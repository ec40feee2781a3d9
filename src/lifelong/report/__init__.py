"""Reports: what the store holds, for people to read.

`page` writes the self-contained HTML report (``lifelong report``) with its Jinja2 `template`;
`scores` scores an experiment's runs against the published numbers it declares (the page and
``lifelong reproduce`` share it); `tables` formats stored runs as plain text (``lifelong runs``,
``lifelong show``, ``lifelong run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["write_report"]


def write_report(store_path: str | Path, out: str | Path) -> Path:
    """The HTML report of the store at `store_path`, written to `out` (`page.write_report`)."""
    from lifelong.report.page import write_report as write

    return write(store_path, out)
