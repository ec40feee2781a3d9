"""What `lifelong list` shows: experiments, streams, sources, models, strategies and the `train`
options, with their options, defaults and declared departures from their papers; and the
generated page of methods, docs/methods.md.

Owns collecting the registries into one plain structure (also used to keep the README's tables
in sync, see tests/test_readme.py) and formatting it as text. Does not own the declarations it
shows: each strategy says its own in its `card`, each model its `departures`, the `train`
options' meanings are `TrainConfig`'s docstring.
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
    and defaults; models with their `departures`, strategies with their card (`Card`)."""
    from lifelong.data.builders import STREAMS
    from lifelong.data.sources import SOURCES
    from lifelong.experiments import EXPERIMENTS
    from lifelong.models import MODELS
    from lifelong.strategies import STRATEGIES

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
        "strategies": {n: _strategy(STRATEGIES.get(n), _options(STRATEGIES, n))
                       for n in STRATEGIES.names()},
        "train": train_options(),
    }


def _strategy(cls: Any, options: dict[str, Any]) -> dict[str, Any]:
    from lifelong.group import groupable

    card = cls.card
    return {"summary": _doc(cls), "family": card.family, "scenarios": sorted(card.scenarios),
            "options": options, "limits": card.limits(), "departures": list(card.departures),
            # "" = several seeds or strengths train as one vectorised group
            "trains_alone": groupable(cls)}


METHODS_HEADER = """\
# Methods

Generated from each strategy's card (`lifelong.strategies.base.Card`) and the first sentence of
its docstring by `lifelong list --markdown > docs/methods.md` (`make docs`);
tests/test_catalog.py fails when this file is stale. Do not edit it by hand.

"""


def methods_markdown(cat: dict[str, Any]) -> str:
    """docs/methods.md: one row per strategy (name, summary, family, scenarios, departures
    from the paper), grouped by family, then each method's known limits by scenario."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = ["| strategy | method | family | scenarios | departs from the paper |",
            "|---|---|---|---|---|"]
    limits = []
    for name, info in sorted(cat["strategies"].items(), key=lambda e: (e[1]["family"], e[0])):
        departures = "<br>".join(f"• {cell(d)}" for d in info["departures"]) or "—"
        rows.append(f"| `{name}` | {cell(info['summary'])} | {info['family'] or '—'} | "
                    f"{', '.join(info['scenarios'])} | {departures} |")
        limits += [f"- `{name}`, {scenario}-incremental: {cell(reason)}"
                   for scenario, reason in sorted(info["limits"].items())]
    text = METHODS_HEADER + "\n".join(rows) + "\n"
    if limits:
        text += ("\n## Known limits\n\nWhere a method at its defaults is no better than naive "
                 "fine-tuning: by design (`not_better_than_naive`) or as the literature found "
                 "(`caveats`, which the loop warns about):\n\n"
                 + "\n".join(limits) + "\n")
    return text


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
            if info.get("family"):
                lines.append(f"  {'':16s} family: {info['family']}")
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
