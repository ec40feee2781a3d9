"""Experiment configuration: nested dicts, `--set` overrides, YAML files and run ids.

Owns parsing `key=value` overrides, merging config layers, loading YAML with clear errors, the
canonical JSON form and the run id (a hash of the canonical run config plus the seed). Does not
own what the keys mean: the registries check stream, model and strategy options, `TrainConfig`
checks `train`, and each experiment checks its `options`.

Config sections: ``stream`` (name + builder options), ``model`` (name + options), ``strategy``
(name in `single`; in composite experiments options applied to every strategy that has them),
``strategies`` (per-strategy options, ``strategies.ewc.strength``), ``train`` (TrainConfig),
``options`` (the experiment's own), ``seed``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from lifelong.errors import ConfigError
from lifelong.registry import suggest

SECTIONS = ("stream", "model", "strategy", "strategies", "train", "options", "seed")

# YAML 1.1 (PyYAML) reads 1e-3 as a string: it wants a dot (1.0e-3). Users write 1e-3.
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _numbers(value: Any) -> Any:
    """`value` with strings like ``1e-3`` read as floats, in nested lists and dicts too."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def parse_sets(items: Iterable[str]) -> list[tuple[list[str], Any]]:
    """Parse ``a.b=value`` strings; values are read as YAML (numbers, bools, lists, null)."""
    out, problems = [], []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected key=value, e.g. --set train.epochs=2")
            continue
        try:
            value = _numbers(yaml.safe_load(raw)) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append(([p for p in key.strip().split(".")], value))
    if problems:
        raise ConfigError(problems)
    return out


def set_path(config: dict[str, Any], path: list[str], value: Any) -> None:
    node = config
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: dicts merge key by key, anything else in `over` replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def check_sections(config: Mapping[str, Any], where: str) -> list[str]:
    """Problems with top-level keys and section types."""
    problems = []
    for key, value in config.items():
        if key not in SECTIONS:
            problems.append(f"{where}: unknown config section '{key}'{suggest(key, SECTIONS)}"
                            f" valid: {', '.join(SECTIONS)}")
        elif key == "seed":
            values = value if isinstance(value, list) and value else [value]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                problems.append(f"{where}: seed={value!r} must be an integer or a list of "
                                "integers (several runs, e.g. a protocol's best of N seeds)")
        elif not isinstance(value, dict):
            problems.append(f"{where}: '{key}' must be a mapping of options, got {value!r}; "
                            f"set one option with --set {key}.OPTION=VALUE")
    return problems


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (a mapping)."""
    p = Path(path)
    try:
        doc = _numbers(yaml.safe_load(p.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read ({e}); give the path of a YAML "
                          "file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {p} must hold a mapping (sections stream, model, ...)")
    return doc


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, tuples as lists."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)


def short(value: Any) -> str:
    """`value` as run labels show it (``ewc strength=100``): a float in %g, true/false/null
    as YAML writes them, anything else as str."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


# Keys that say where something is, not what it is: they do not change a run's identity.
LOCATION_KEYS = {"stream": ("data_dir",)}
# Options added after runs were stored, at the value that trains as before: left out of the
# identity at that value, so stores made before the option existed keep their runs.
NEUTRAL_KEYS = {"train": {"keep_optimizer": False}}


def run_id(run_config: Mapping[str, Any], seed: int) -> str:
    """A 12-hex-digit id from the canonical run config (less `LOCATION_KEYS`) and the seed."""
    identity = {section: ({k: v for k, v in value.items()
                           if k not in LOCATION_KEYS.get(section, ())
                           and not (k in NEUTRAL_KEYS.get(section, {})
                                    and NEUTRAL_KEYS[section][k] == v)}
                          if isinstance(value, Mapping) else value)
                for section, value in run_config.items()}
    digest = hashlib.sha256(canonical({"config": identity, "seed": seed}).encode())
    return digest.hexdigest()[:12]
