"""Range checks of strategy options, shared by every method.

Owns the wording of "this number is out of range" messages, so each strategy states its limits
in one line and every problem of a constructor is reported at once. Types are checked earlier
by the registry from the signature's annotations (`lifelong.registry`); these checks also guard
direct construction from Python.
"""

from __future__ import annotations

import math


def number(who: str, option: str, value: object, *, low: float, high: float = math.inf,
           low_open: bool = False, hint: str = "") -> list[str]:
    """A problem unless `value` is a finite real number in [low, high] ((low, high] if
    `low_open`)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > low if low_open else value >= low)
          and value <= high)
    if ok:
        return []
    where = f"> {low:g}" if low_open else f">= {low:g}"
    if math.isfinite(high):
        where = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    return [f"strategy '{who}': {option}={value!r} must be a finite number {where}"
            + (f" ({hint})" if hint else "")]


def count(who: str, option: str, value: object, *, none: str | None = None,
          hint: str = "") -> list[str]:
    """A problem unless `value` is a positive integer (or None, when `none` says what None
    means)."""
    if value is None and none is not None:
        return []
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return []
    alt = f" or null ({none})" if none is not None else ""
    return [f"strategy '{who}': {option}={value!r} must be a positive integer{alt}"
            + (f" ({hint})" if hint else "")]
