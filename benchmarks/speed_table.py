"""The README's speed table, generated from the JSON that `overhead.py --json` writes.

Owns turning a benchmark result file into the Markdown table (wall ratio ours/bare and final
ACC per protocol and strategy) and writing it between the README's ``speed:start`` and
``speed:end`` markers, so the table is never typed by hand. Does not time anything.

Run: ``python benchmarks/speed_table.py benchmarks/overhead.json --readme README.md`` (what
``make bench`` does after measuring), or ``--check`` to fail when the README is stale.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

START = "<!-- speed:start"
END = "<!-- speed:end -->"


def table(result: dict[str, Any]) -> str:
    """The Markdown block: one column per strategy, per protocol a row of wall ratios and a row
    of final ACC (the bare loop's ACC equals naive's: both run the same training)."""
    rows = [r for r in result["rows"] if "error" not in r]
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    cell = {(r["protocol"], r["strategy"]): r for r in rows}

    def line(label: str, values: list[str]) -> str:
        return "| " + " | ".join([label, *values]) + " |"

    scenario = {r["strategy"]: r.get("scenario", "domain") for r in rows}
    out = [line("", [f"`{n}`" + ("" if scenario[n] == "domain" else f" ({scenario[n]}-IL)")
                     for n in names]), line("---", ["---"] * len(names))]
    for p in protocols:
        out.append(line(f"{p} wall ratio", [
            f"{cell[p, n]['ratio_wall']:.2f}" if (p, n) in cell else "-" for n in names]))
        if any(abs(cell[p, n].get("ratio_steps", 1.0) - 1) > 0.01
               for n in names if (p, n) in cell):  # a method whose epochs hold more examples
            out.append(line(f"{p} steps ratio", [
                f"{cell[p, n].get('ratio_steps', 1.0):.2f}" if (p, n) in cell else "-"
                for n in names]))
            out.append(line(f"{p} cost per step", [
                f"{cell[p, n]['ratio_step']:.2f}" if (p, n) in cell and "ratio_step" in
                cell[p, n] else "-" for n in names]))
        out.append(line(f"{p} ACC", [
            f"{cell[p, n]['acc']:.3f}" if (p, n) in cell else "-" for n in names]))
        if any(cell[p, n].get("generator_share") for n in names if (p, n) in cell):
            out.append(line(f"{p} generator share", [
                f"{cell[p, n]['generator_share']:.0%}" if (p, n) in cell
                and cell[p, n].get("generator_share") else "-" for n in names]))
    errors = [f"{r['protocol']} {r['strategy']}: {r['error']}" for r in result["rows"]
              if "error" in r]
    note = (f"Median of {rows[0]['repeats'] if rows else 0} alternating runs, "
            f"{result.get('threads', '?')} thread(s), torch {result.get('torch', '?')}, "
            f"{result.get('cpus', '?')} CPUs, load average {result.get('load_before', 0):.1f}"
            f" → {result.get('load_after', 0):.1f}.")
    return "\n".join([*out, "", note, *(f"Failed: {e}" for e in errors)])


def replace_block(readme: str, block: str) -> str:
    """`readme` with the text between the speed markers replaced by `block`."""
    if START not in readme or END not in readme:
        raise ValueError(f"the README has no {START} ... {END} block")
    head, rest = readme.split(START, 1)
    marker_line, _ = rest.split("\n", 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}{marker_line}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", help="JSON written by overhead.py --json")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the README's table differs from the result")
    args = ap.parse_args(argv)
    result = json.loads(Path(args.result).read_text())
    readme = Path(args.readme)
    old = readme.read_text()
    new = replace_block(old, table(result))
    if args.check:
        if new != old:
            print(f"{readme}: the speed table is stale; run python benchmarks/speed_table.py "
                  f"{args.result} --readme {readme}", file=sys.stderr)
            return 1
        return 0
    # Atomic: a temporary file in the same folder, then a rename.
    fd, tmp = tempfile.mkstemp(dir=readme.parent, prefix=".readme-")
    with os.fdopen(fd, "w") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
