"""What `lifelong list` shows: experiments, streams, sources, models, strategies and the `train`
options, with their options, defaults and declared departures from their papers.

Owns collecting the registries into one plain structure (also used to keep the README's tables
in sync, see tests/test_readme.py) and formatting it as text. Does not own the declarations it
shows: each class says its own (`departures`, `supports`, ...), the `train` options' meanings
are `TrainConfig`'s docstring.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from lifelong.registry import Registry

# Abbreviations after which a full stop does not end a sentence.
_ABBREVIATIONS = ("e.g.", "i.e.", "al.", "cf.", "vs.", "Fig.", "Figs.", "Eq.", "Eqs.", "Sec.",
                  "No.", "resp.", "approx.")


def _options(registry: Registry[Any], name: str) -> dict[str, Any]:
    return {o.name: (None if o.required else o.default) for o in registry.options(name)}


def first_sentence(text: str) -> str:
    """The first sentence of `text`'s first paragraph, on one line: a summary never ends
    mid-sentence where a docstring's line happens to wrap. A full stop ends the sentence when
    a space and a capital, a digit-free word or the end follow and it is not an abbreviation
    (``e.g.``, ``et al.``); a paragraph with no such stop is kept whole."""
    paragraph = " ".join(text.strip().split("\n\n", 1)[0].split())
    for m in re.finditer(r"[.!?](?=\s+[A-Z`(\"']|$)", paragraph):
        head = paragraph[:m.end()]
        if not head.endswith(_ABBREVIATIONS):
            return head
    return paragraph


def _doc(obj: Any) -> str:
    return first_sentence(inspect.getdoc(obj) or "")


def _section(doc: str, title: str) -> dict[str, str]:
    """A Google-style docstring section (``Attributes:``, ``Args:``) as name → its first
    sentence, continuation lines joined."""
    out: dict[str, str] = {}
    lines = doc.split(f"{title}:\n", 1)[1].splitlines() if f"{title}:\n" in doc else []
    current = ""
    for line in lines:
        if not line.strip():
            break
        m = re.match(r"^    ([A-Za-z_][\w, ]*):\s*(.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2)
        elif current and line.startswith("        "):
            out[current] += " " + line.strip()
        else:
            break
    return {k: first_sentence(v) for k, v in out.items()}


def train_options() -> dict[str, dict[str, Any]]:
    """`TrainConfig`'s fields (the run's ``train`` section): name → default and meaning."""
    from lifelong.train import TrainConfig

    meaning = _section(inspect.getdoc(TrainConfig) or "", "Attributes")
    return {f.name: {"default": f.default, "meaning": meaning.get(f.name, "")}
            for f in dataclasses.fields(TrainConfig)}


def catalog() -> dict[str, Any]:
    """`{experiments, streams, sources, models, strategies, train}`: name → summary, options
    and defaults; models and strategies with their `departures`."""
    from lifelong.data.builders import STREAMS
    from lifelong.data.builders import register_all as streams
    from lifelong.data.sources import SOURCES
    from lifelong.data.sources import register_all as sources
    from lifelong.experiments import EXPERIMENTS
    from lifelong.experiments import register_all as experiments
    from lifelong.group import groupable
    from lifelong.models import MODELS
    from lifelong.models import register_all as models
    from lifelong.strategies import STRATEGIES
    from lifelong.strategies import register_all as strategies

    for register in (streams, sources, models, strategies, experiments):
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
        # image sources (`stream.source`); bAbI's files are the `babi` stream's own
        "sources": {n: {"summary": _doc(SOURCES.get(n))} for n in SOURCES.names()},
        "models": {n: {"summary": _doc(MODELS.get(n)), "options": _options(MODELS, n),
                       "departures": list(getattr(MODELS.get(n), "departures", ()))}
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
        "train": train_options(),
    }


def format_catalog(cat: dict[str, Any]) -> str:
    lines = []
    for section, entries in cat.items():
        lines.append(f"{section}:")
        if section == "train":
            for name, info in entries.items():
                lines.append(f"  {name:16s} {info['default']!r:8s} {info['meaning']}")
            lines.append("")
            continue
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
