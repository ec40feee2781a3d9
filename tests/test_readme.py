"""The README's catalog tables list exactly what `lifelong list` shows, and open with the two
set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from lifelong.cli.catalog import catalog

README = Path(__file__).resolve().parents[1] / "README.md"


def table_names(text: str, header: str) -> set[str]:
    block = text.split(f"| {header} |", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", block, flags=re.M))


def test_readme_opens_with_make_demo_and_make_test() -> None:
    text = README.read_text()
    first_block = text.split("```", 2)[1]
    assert [line for line in first_block.strip().splitlines()] == ["make demo", "make test"]


def test_catalog_tables_match_the_registries() -> None:
    text = README.read_text().split("<!-- catalog:start", 1)[1].split("<!-- catalog:end", 1)[0]
    cat = catalog()
    assert table_names(text, "experiment") == set(cat["experiments"])
    assert table_names(text, "strategy") == set(cat["strategies"])
    assert table_names(text, "stream") == set(cat["streams"])


def test_speed_table_is_generated_from_the_benchmark_result() -> None:
    # Typed by hand it would drift: the README's block must be what the committed result
    # gives (`make bench` measures, then regenerates both).
    import json
    import sys

    sys.path.insert(0, str(README.parent / "benchmarks"))
    try:
        import speed_table
    finally:
        sys.path.pop(0)
    result = json.loads((README.parent / "benchmarks" / "overhead.json").read_text())
    text = README.read_text()
    assert speed_table.replace_block(text, speed_table.table(result)) == text
