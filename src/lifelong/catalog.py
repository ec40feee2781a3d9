"""What `lifelong list` shows: experiments, streams, models and strategies with their options.

Owns collecting the registries into one plain structure (also used to keep the README's tables
in sync, see tests/test_readme.py) and formatting it as text.
"""

from __future__ import annotations

import inspect
from typing import Any

from lifelong.registry import Registry


def _options(registry: Registry[Any], name: str) -> dict[str, Any]:
    return {o.name: (None if o.required else o.default) for o in registry.options(name)}


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n", 1)[0].strip()


def catalog() -> dict[str, Any]:
    """`{experiments, streams, models, strategies}`: name → summary, options and defaults."""
    from lifelong.data.builders import STREAMS
    from lifelong.data.builders import register_all as streams
    from lifelong.experiments import EXPERIMENTS
    from lifelong.experiments import register_all as experiments
    from lifelong.group import groupable
    from lifelong.models import MODELS
    from lifelong.models import register_all as models
    from lifelong.strategies import STRATEGIES
    from lifelong.strategies import register_all as strategies

    for register in (streams, models, strategies, experiments):
        register()
    exps = {}
    for n in EXPERIMENTS.names():
        e = EXPERIMENTS.get(n)
        exps[n] = {"summary": e.summary, "strategies": list(e.strategies),
                   "options": dict(e.options)}
    return {
        "experiments": exps,
        "streams": {n: {"summary": _doc(STREAMS.get(n)), "options": _options(STREAMS, n)}
                    for n in STREAMS.names()},
        "models": {n: {"summary": _doc(MODELS.get(n)), "options": _options(MODELS, n)}
                   for n in MODELS.names()},
        "strategies": {n: {"summary": _doc(STRATEGIES.get(n)),
                           "scenarios": sorted(STRATEGIES.get(n).supports),
                           "options": _options(STRATEGIES, n),
                           "limits": {**STRATEGIES.get(n).not_better_than_naive,
                                      **STRATEGIES.get(n).caveats},
                           "departures": list(STRATEGIES.get(n).departures),
                           # "" = several seeds or strengths train as one vectorised group
                           "trains_alone": groupable(STRATEGIES.get(n))}
                       for n in STRATEGIES.names()},
    }


def format_catalog(cat: dict[str, Any]) -> str:
    lines = []
    for section, entries in cat.items():
        lines.append(f"{section}:")
        for name, info in entries.items():
            lines.append(f"  {name:16s} {info['summary']}")
            if info.get("strategies"):
                lines.append(f"  {'':16s} strategies: {', '.join(info['strategies'])}")
            if info.get("scenarios"):
                lines.append(f"  {'':16s} scenarios: {', '.join(info['scenarios'])}")
            opts = info.get("options") or {}
            if opts:
                text = ", ".join(f"{k}={v!r}" for k, v in opts.items())
                lines.append(f"  {'':16s} options: {text}")
            for line in info.get("departures") or ():
                lines.append(f"  {'':16s} departs from the paper: {line}")
            if info.get("trains_alone"):
                lines.append(f"  {'':16s} seeds train one by one, not as a vectorised group: "
                             f"{info['trains_alone']}")
            for scenario, reason in sorted((info.get("limits") or {}).items()):
                lines.append(f"  {'':16s} limit ({scenario}-incremental): {reason}")
        lines.append("")
    return "\n".join(lines).rstrip()
