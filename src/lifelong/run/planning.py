"""Planning: from configuration layers to a validated plan of runs.

Owns `plan` (merge the experiment's defaults, `--quick`, a YAML file and `--set`; check
everything at once, before any data loads) and the values it produces, `RunSpec` and `Plan`.
Does not own running them (`lifelong.run.runner`, `lifelong.run.execution`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from lifelong import config as cfgmod
from lifelong.data.builders import STREAMS, check_stream, parse_order
from lifelong.errors import ConfigError
from lifelong.experiments import get_experiment
from lifelong.experiments.base import Experiment
from lifelong.models import MODELS
from lifelong.registry import Registry, canonical_value, suggest, type_problem
from lifelong.strategies import STRATEGIES, build_strategy
from lifelong.train import TrainConfig


@dataclass(frozen=True, slots=True)
class RunSpec:
    strategy: str
    seed: int
    config: dict[str, Any]  # the canonical run config: stream, model, strategy, train
    # How tables name the run: the strategy, plus the options that tell its variants apart
    # (`Experiment.strategy_variants`), e.g. "ewc strength=100".
    label: str = ""

    @property
    def run_id(self) -> str:
        return cfgmod.run_id(self.config, self.seed)


@dataclass(frozen=True, slots=True)
class Plan:
    experiment: Experiment
    config: dict[str, Any]
    options: dict[str, Any]
    runs: tuple[RunSpec, ...]


def _with_defaults(registry: Registry[Any], name: str, opts: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, **registry.canonical(name, opts)}


def _forget_defaults_of_renamed(defaults: dict[str, Any], shrink: dict[str, Any],
                                overrides: dict[str, Any]) -> None:
    """Where the user picks another stream or model than the experiment's default, the
    default's options (e.g. the MLP's `hidden`) are dropped: the new one's own defaults
    apply. `--quick` keeps the sizes the new one also has (num_tasks, train_per_task, ...)."""
    for section, registry in (("stream", STREAMS), ("model", MODELS)):
        chosen = overrides.get(section)
        default = defaults.get(section)
        if not (isinstance(chosen, dict) and isinstance(default, dict) and "name" in chosen
                and chosen["name"] != default.get("name")):
            continue
        defaults[section] = {}
        small = shrink.get(section)
        if isinstance(small, dict):
            accepted = ({o.name for o in registry.options(chosen["name"])}
                        if chosen["name"] in registry else set())
            shrink[section] = {k: v for k, v in small.items() if k in accepted}


def plan(target: str, *, sets: Sequence[str] = (), seeds: Sequence[int] | None = None,
         quick: bool = False, strategies: Sequence[str] | None = None) -> Plan:
    """Resolve `target` (an experiment name or a YAML file) and every override into runs:
    one per stream, seed and strategy — or per strategy variant, where the experiment runs a
    strategy with several option sets (`Experiment.strategy_variants`, e.g. a sweep).

    Raises:
        ConfigError: every problem found, at once.
    """
    file_cfg: dict[str, Any] = {}
    if target.endswith((".yaml", ".yml")):
        file_cfg = cfgmod.load_yaml(target)
        target = str(file_cfg.pop("experiment", "single"))
    experiment = get_experiment(target)
    overrides: dict[str, Any] = cfgmod.merge({}, file_cfg)
    for path, value in cfgmod.parse_sets(sets):
        cfgmod.set_path(overrides, path, value)
    defaults = experiment.defaults()
    shrink = experiment.quick() if quick else {}
    _forget_defaults_of_renamed(defaults, shrink, overrides)
    config = cfgmod.merge(cfgmod.merge(defaults, shrink), overrides)
    problems = cfgmod.check_sections(config, experiment.name)
    # Go on checking the sections that are well formed, so every problem is reported at once.
    config = {k: v for k, v in config.items() if k in cfgmod.SECTIONS and (
        isinstance(v, dict) or (k == "seed" and isinstance(v, (int, list))))}

    # Most experiments run on one stream; some compare several (`Experiment.stream_variants`).
    stream_cfgs: list[dict[str, Any]] = []
    for stream in experiment.stream_variants(config):
        stream = dict(stream)
        stream_name = str(stream.pop("name", ""))
        problems += check_stream(stream_name, stream, "stream.name")
        if "source" in stream:
            from lifelong.data.sources import SOURCES

            if stream["source"] not in SOURCES:
                problems.append(f"stream.source: {SOURCES.unknown(str(stream['source']))}")
        if stream_name in STREAMS:
            order = stream.pop("order", None)
            stream_cfg = _with_defaults(STREAMS, stream_name, stream)
            if order is not None and not any(p.startswith("stream.order") for p in problems):
                stream_cfg["order"] = parse_order(order)  # absent when not set: ids stay
            stream_cfgs.append(stream_cfg)
    model = dict(config.get("model", {}))
    model_name = str(model.pop("name", "mlp"))
    problems += MODELS.check(model_name, model, "model.name")
    train, train_problems = _checked_train(dict(config.get("train", {})))
    problems += train_problems
    options = dict(experiment.options)
    for key, value in config.get("options", {}).items():
        if key not in options:
            problems.append(f"experiment '{experiment.name}' has no option '{key}'"
                            f"{suggest(key, options)}; valid: {', '.join(options) or '(none)'}")
        options[key] = value
    option_problems = experiment.check_options(options)
    problems += option_problems

    shared = dict(config.get("strategy", {}))
    chosen = list(strategies) if strategies else (
        [str(shared["name"])] if "name" in shared else list(experiment.strategies))
    if strategies or "name" in shared:  # the reference lines run whatever the user picks
        chosen = [*(b for b in experiment.baselines if b not in chosen), *chosen]
    shared.pop("name", None)
    if not chosen:
        problems.append(f"experiment '{experiment.name}' needs a strategy: --set strategy.name="
                        f"NAME (one of {', '.join(STRATEGIES.names())})")
    per = config.get("strategies", {})
    for name in per:
        if name not in STRATEGIES:
            problems.append(f"strategies.{name}: {STRATEGIES.unknown(name)}")
    strategy_opts: dict[str, list[dict[str, Any]]] = {}
    own_opts: dict[str, dict[str, Any]] = {}
    for name in chosen:
        if name not in STRATEGIES:
            problems.append(f"strategy: {STRATEGIES.unknown(name)}")
            continue
        accepted = {o.name for o in STRATEGIES.options(name)}
        own = dict(per.get(name) or {})
        if len(chosen) == 1:
            own.update(shared)  # one strategy: every shared option must be its own
        else:
            own.update({k: v for k, v in shared.items() if k in accepted})
        # A sweep runs several option sets of one strategy. While the experiment's own options
        # are wrong, its variants cannot be trusted: check the one set, report both.
        own_opts[name] = own
        variants = ([own] if option_problems
                    else experiment.strategy_variants(name, own, options))
        found: list[str] = []
        for variant in variants:
            found += [p for p in STRATEGIES.check(name, variant, f"strategies.{name}")
                      if p not in found]
            # Build it once around a stand-in model (with the well-typed options) so bad option
            # *values* are reported now, with every other problem, not when a composite
            # experiment reaches this run.
            try:
                build_strategy(name, nn.Linear(1, 1), **STRATEGIES.well_typed(name, variant))
            except ConfigError as e:
                found += [p for p in e.problems if p not in found]
        problems += found
        strategy_opts[name] = variants
    if len(chosen) > 1:
        union = {o.name for n in chosen if n in STRATEGIES for o in STRATEGIES.options(n)}
        for key in shared:
            if key not in union:
                problems.append(f"no strategy of {', '.join(chosen)} has option '{key}'"
                                f"{suggest(key, union)}")
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # a shared mistake is named once

    default_seeds = config.get("seed", 0)  # an experiment may run several seeds by default
    run_seeds = list(dict.fromkeys(seeds if seeds else (
        default_seeds if isinstance(default_seeds, list) else [default_seeds])))
    base = {
        "experiment": experiment.name,
        "model": _with_defaults(MODELS, model_name, model),
        "train": dataclasses.asdict(TrainConfig(**train)),
    }
    labelled = {name: _labelled_variants(name, strategy_opts[name]) for name in chosen}
    pairs = [(s, n) for s in stream_cfgs for n in chosen if experiment.runs_on(n, s)]
    # An experiment whose table rows carry their own options or training settings per stream
    # (`Experiment.rows`, e.g. tuned values per scenario, a row trained with another optimizer)
    # gives them here; each row is checked like the rest, before anything runs.
    rowed: dict[tuple[int, str], list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for i, stream_cfg in enumerate(stream_cfgs):
        for name in chosen:
            given = (experiment.rows(name, stream_cfg, own_opts[name], options)
                     if name in own_opts and (stream_cfg, name) in pairs else None)
            if given is None:
                continue
            rowed[(i, name)] = []
            for row in given:
                found = STRATEGIES.check(name, row.options, f"strategies.{name}")
                if not found:
                    try:
                        build_strategy(name, nn.Linear(1, 1), **row.options)
                    except ConfigError as e:
                        found = list(e.problems)
                row_train, train_found = _checked_train({**train, **row.train})
                problems += [f"row '{row.label}': {p}" for p in (*found, *train_found)]
                rowed[(i, name)].append((row.label, _with_defaults(STRATEGIES, name, row.options),
                                         dataclasses.asdict(TrainConfig(**row_train))
                                         if not train_found else {}))
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    def supported(n: str) -> frozenset[str]:
        return STRATEGIES.get(n).card.scenarios

    unsupported = [f"strategy '{n}' does not support the {s.get('scenario')}-incremental "
                   f"scenario (it supports: {', '.join(sorted(supported(n)))}),"
                   f" which stream '{s['name']}' is set to; choose another strategy or "
                   "--set stream.scenario=..."
                   for s, n in pairs if s.get("scenario") not in supported(n)]
    if unsupported:
        raise ConfigError(list(dict.fromkeys(unsupported)))
    runs = tuple(
        RunSpec(name, seed, {**base, "stream": stream_cfg, "strategy": strategy_cfg,
                             **({"train": row_train} if row_train else {})}, label)
        for i, stream_cfg in enumerate(stream_cfgs) for seed in run_seeds for name in chosen
        if (stream_cfg, name) in pairs
        for label, strategy_cfg, row_train in rowed.get(
            (i, name), [(lb, c, {}) for lb, c in labelled[name]]))
    if not runs:
        raise ConfigError(f"experiment '{experiment.name}': these settings leave nothing to run "
                          "(no stream or no strategy chosen)")
    return Plan(experiment, config, options, runs)


def _checked_train(train: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`train` with canonical values, and its problems (unknown keys, types, then values)."""
    hints = typing.get_type_hints(TrainConfig)
    problems = []
    for key, value in list(train.items()):
        if key not in hints:
            problems.append(f"train has no option '{key}'{suggest(key, hints)}; "
                            f"valid: {', '.join(hints)}")
        elif (bad := type_problem(key, value, hints[key])) is not None:
            problems.append(f"train.{bad}")
        else:
            train[key] = canonical_value(value, hints[key])
    return train, problems or TrainConfig(**train).problems()


def _labelled_variants(name: str, variants: list[dict[str, Any]]
                       ) -> list[tuple[str, dict[str, Any]]]:
    """The canonical strategy configs of `variants` (a repeated one once), each with its label:
    the strategy name, plus ``key=value`` for every option on which the variants differ."""
    configs = list({cfgmod.canonical(c): c for c in (
        _with_defaults(STRATEGIES, name, v) for v in variants)}.values())
    differ = [k for k in configs[0]
              if len({cfgmod.canonical(c.get(k)) for c in configs}) > 1]
    return [(" ".join([name, *(f"{k}={cfgmod.short(c[k])}" for k in differ)]), c)
            for c in configs]
