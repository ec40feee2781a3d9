"""Range checks of option values, shared by strategies, models and stream builders.

Owns the wording of "this value is out of range" messages, so each factory states its limits in
one line and every problem of a constructor is reported at once. Types are checked earlier by
the registry from the signature's annotations (`lifelong.registry`); these checks also guard
direct construction from Python. `who` names the factory as the messages show it, e.g.
``"strategy 'ewc'"`` or ``"model 'mlp'"``.
"""

from __future__ import annotations

import math


def number(who: str, option: str, value: object, *, low: float, high: float = math.inf,
           low_open: bool = False, high_open: bool = False, hint: str = "") -> list[str]:
    """A problem unless `value` is a finite real number between `low` and `high` (each bound
    excluded when its `*_open` is set)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > low if low_open else value >= low)
          and (value < high if high_open else value <= high))
    if ok:
        return []
    where = f"a finite number {'>' if low_open else '>='} {low:g}"
    if math.isfinite(high):
        where = (f"in {'(' if low_open else '['}{low:g}, {high:g}"
                 f"{')' if high_open else ']'}")
    return [f"{who}: {option}={value!r} must be {where}" + (f" ({hint})" if hint else "")]


def count(who: str, option: str, value: object, *, none: str | None = None,
          hint: str = "") -> list[str]:
    """A problem unless `value` is a positive integer (or None, when `none` says what None
    means)."""
    if value is None and none is not None:
        return []
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return []
    alt = f" or null ({none})" if none is not None else ""
    return [f"{who}: {option}={value!r} must be a positive integer{alt}"
            + (f" ({hint})" if hint else "")]


def sizes(who: str, option: str, value: object) -> list[str]:
    """A problem unless `value` is a list of positive integers (layer widths, channels)."""
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return []
    shown = list(value) if isinstance(value, tuple) else value
    return [f"{who}: {option}={shown!r} must be a list of positive integers (layer sizes)"]
