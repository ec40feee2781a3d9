"""Running experiments: config layers → validated plan → runs → store, files and report.

Owns `plan` (merge defaults, `--quick`, a YAML file and `--set`; check everything at once,
before any data loads) and `execute` (build streams, models and strategies, train, record each
task's row in the store as it finishes, write `runs/<run_id>/` atomically, then let the
experiment draw its figures). Does not own the CLI's argument parsing or printing (`cli.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import nn

from lifelong import config as cfgmod
from lifelong.callbacks import COSTS, Callback, ProgressBar, RunStart, TaskEnd
from lifelong.data.builders import (
    MEASURED_ORDERS,
    STREAMS,
    build_stream,
    check_stream,
    parse_order,
)
from lifelong.data.builders import register_all as register_streams
from lifelong.data.task import Stream
from lifelong.errors import ConfigError, DivergenceError
from lifelong.experiments import EXPERIMENTS, get_experiment
from lifelong.experiments.base import Experiment, Outcome, Reference
from lifelong.io import atomic_write_json, atomic_write_text
from lifelong.models import MODELS, build_model
from lifelong.models import register_all as register_models
from lifelong.registry import Registry, canonical_value, suggest, type_problem
from lifelong.store import DEFAULT_PATH, Store, installed_versions
from lifelong.strategies import STRATEGIES, build_strategy
from lifelong.strategies import register_all as register_strategies
from lifelong.strategies.base import Strategy
from lifelong.train import RunResult, TrainConfig, fit_stream

if TYPE_CHECKING:
    from lifelong.curriculum import Affinity


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


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    experiment: str
    outcomes: tuple[Outcome, ...]
    figures: tuple[Path, ...]
    table: str
    references: tuple[tuple[Reference, float | None], ...]
    protocol_note: str


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
    for register in (register_streams, register_models, register_strategies):
        register()
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
            from lifelong.data.sources import register_all as register_sources

            register_sources()
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
    train = dict(config.get("train", {}))
    train_hints = typing.get_type_hints(TrainConfig)
    train_problems = []
    for key, value in list(train.items()):
        if key not in train_hints:
            train_problems.append(f"train has no option '{key}'{suggest(key, train_hints)}; "
                                  f"valid: {', '.join(train_hints)}")
        elif (bad := type_problem(key, value, train_hints[key])) is not None:
            train_problems.append(f"train.{bad}")
        else:
            train[key] = canonical_value(value, train_hints[key])
    problems += train_problems or TrainConfig(**train).problems()
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
    unsupported = [f"strategy '{n}' does not support the {s.get('scenario')}-incremental "
                   f"scenario (it supports: {', '.join(sorted(STRATEGIES.get(n).supports))}),"
                   f" which stream '{s['name']}' is set to; choose another strategy or "
                   "--set stream.scenario=..."
                   for s, n in pairs if s.get("scenario") not in STRATEGIES.get(n).supports]
    if unsupported:
        raise ConfigError(list(dict.fromkeys(unsupported)))
    runs = tuple(
        RunSpec(name, seed, {**base, "stream": stream_cfg, "strategy": strategy_cfg}, label)
        for stream_cfg in stream_cfgs for seed in run_seeds for name in chosen
        if (stream_cfg, name) in pairs for label, strategy_cfg in labelled[name])
    if not runs:
        raise ConfigError(f"experiment '{experiment.name}': these settings leave nothing to run "
                          "(no stream or no strategy chosen)")
    return Plan(experiment, config, options, runs)


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


class StoreRecorder(Callback):
    """Writes row 0 at the start and each task's row (with costs, diagnostics, warnings and
    curve) as it ends."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def on_run_start(self, event: RunStart) -> None:
        self.store.record_row(self.run_id, row=0, accuracies=event.initial_accuracies)

    def on_task_end(self, event: TaskEnd) -> None:
        self.store.record_row(
            self.run_id, row=event.task_index + 1, accuracies=event.accuracies,
            costs=event.costs(), diagnostics=event.diagnostics, warnings=event.warnings,
            curve=[(p.step, j, a) for p in event.curve for j, a in enumerate(p.accuracies)])


def git_commit() -> str | None:
    """The commit the package runs from, with ``+dirty`` when tracked files are modified
    (recorded for provenance); None outside git."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                 cwd=here)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def execute(p: Plan, *, store_path: str | Path = DEFAULT_PATH,
            out_dir: str | Path = DEFAULT_PATH.parent,
            progress: bool | None = None, rerun: bool = False) -> ExperimentResult:
    """Run every `RunSpec` of the plan, store and write its results, and report.

    A run already completed in the store by the same code (same `lifelong` version, same
    hash of its source files, same torch, and for a user's strategy, model or stream builder
    the same hash of the file that registered it) is reused, not trained again — a sweep
    that stopped half way resumes where it stopped — unless `rerun` or the experiment needs
    live runs (`Experiment.reuses_runs`).

    A run whose loss becomes NaN stops everything with its `DivergenceError`, unless the
    experiment goes on after divergence (`Experiment.continues_after_divergence`, e.g. a
    sweep): then the run becomes an outcome with `error` set and the next run starts."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the run files and figures")
    built: tuple[str, Stream] | None = None  # runs come grouped by stream and seed: keep one
    outcomes = []
    # The thread count changes speed, not results: kept with the run, outside its id, and
    # not compared when reusing a stored run (see `_stored`).
    versions = {**installed_versions(), "torch_threads": str(torch.get_num_threads())}
    meta = {"versions": versions, "git_commit": git_commit()}
    with Store(store_path) as store:
        for spec in p.runs:
            run_meta = _with_user_code(spec, meta)
            old = (None if rerun or not p.experiment.reuses_runs
                   else _stored(spec, store, run_meta))
            if old is not None:
                outcomes.append(_write_files(spec, old, store, out, reused=True))
                continue
            measured = spec.config["stream"].get("order") in MEASURED_ORDERS
            key = cfgmod.canonical([spec.config["stream"], spec.seed] + (
                [spec.config["model"], spec.config["strategy"], spec.config["train"]]
                if measured else []))
            if built is None or built[0] != key:
                built = None  # free the last stream before building the next
                built = (key, _stream_for(spec))
            try:
                outcomes.append(_one_run(p, spec, built[1], store, out, progress, run_meta))
            except DivergenceError as e:
                if not p.experiment.continues_after_divergence:
                    raise
                outcomes.append(_diverged(spec, built[1], out, e))
    group = cfgmod.run_id({"runs": [o.run_id for o in outcomes]}, 0)[:8]
    fig_dir = out / f"{p.experiment.name}-{group}"
    table, figures = p.experiment.report(outcomes, fig_dir, p.options)
    ours = p.experiment.ours(outcomes)
    refs = tuple((r, ours.get(r.ours) if r.ours else None) for r in p.experiment.references)
    all_figures = [f for o in outcomes for f in sorted(o.run_dir.glob("*.png"))] + figures
    return ExperimentResult(p.experiment.name, tuple(outcomes), tuple(all_figures), table,
                            refs, p.experiment.protocol_note)


def _with_user_code(spec: RunSpec, meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` with `versions["user-code"]` when the run's strategy, model or stream builder
    is a user's (registered from a file outside `lifelong`, e.g. by `--import`): a hash of
    those files as they were when imported. `lifelong-code` covers only our package, so
    without it an edited user method would reuse the runs of its previous version. Only the
    run's own factories count: editing one user file does not retrain everything else."""
    cfg = spec.config
    origins = [registry.origin(str(cfg[section]["name"]))
               for registry, section in ((STREAMS, "stream"), (MODELS, "model"),
                                         (STRATEGIES, "strategy"))]
    if not any(origins):
        return meta
    user = hashlib.sha256("\0".join(o or "" for o in origins).encode()).hexdigest()[:16]
    return {**meta, "versions": {**meta["versions"], "user-code": user}}


def _stored(spec: RunSpec, store: Store, meta: dict[str, Any]) -> RunResult | None:
    """The result of `spec` as stored, if it completed under the code running now."""
    from lifelong.callbacks import CurvePoint

    if not store.is_completed(spec.run_id):
        return None
    rec = store.get_run(spec.run_id)
    if any(rec.versions.get(k) != meta["versions"].get(k)
           for k in ("lifelong", "lifelong-code", "user-code", "torch")):
        return None  # stored by other code: train again
    tasks = range(len(rec.matrix) - 1)
    costs: dict[str, Any] = {
        name: tuple(kind(rec.costs.get(t, {}).get(name, 0)) for t in tasks)
        for name, kind in COSTS.items()}
    points: dict[tuple[int, int], list[float]] = {}
    for c in rec.curves:  # ordered by task, step, then evaluated task
        points.setdefault((c.trained_task, c.step), []).append(c.accuracy)
    return RunResult(
        strategy=rec.strategy, stream=rec.stream, seed=rec.seed,
        matrix=tuple(tuple(row) for row in rec.matrix), **costs,
        curves=tuple(CurvePoint(t, step, tuple(acc)) for (t, step), acc in points.items()),
        diagnostics=tuple(rec.diagnostics.get(t, {}) for t in tasks),
        warnings=tuple(tuple(w.message for w in rec.warnings if w.task == t) for t in tasks),
        tasks=tuple(rec.task_keys))


AFFINITY_BUDGET = 20  # training examples of the target task in `task_affinity`


def _stream_for(spec: RunSpec) -> Stream:
    """The run's stream, in its `order`. An order a chooser picks by measuring the tasks
    (`easy-to-hard`, `greedy-affinity`) is measured here, with the run's own model, strategy,
    training and seed (`lifelong.curriculum.task_affinity`, a budget of `AFFINITY_BUDGET`
    examples), so the run is reproducible from its config alone."""
    s = dict(spec.config["stream"])
    name, order = s.pop("name"), s.pop("order", None)
    if order not in MEASURED_ORDERS:
        return build_stream(name, seed=spec.seed, order=order, **s)
    from lifelong.curriculum import choose

    stream, affinity = measured_affinity(spec.config, spec.strategy, spec.seed,
                                         budget=AFFINITY_BUDGET)
    return stream.reorder(choose(order, stream, affinity=affinity, seed=spec.seed).order)


def strategy_for(config: dict[str, Any], strategy: str, stream: Stream, seed: int) -> Strategy:
    """Strategy `strategy` around a fresh model, both as a run config's `model` and
    `strategy` sections say, shaped for `stream` and initialised from `seed`."""
    model = build_model(config["model"]["name"], stream, seed=seed,
                        **{k: v for k, v in config["model"].items() if k != "name"})
    return build_strategy(strategy, model,
                          **{k: v for k, v in config["strategy"].items() if k != "name"})


def measured_affinity(config: dict[str, Any], strategy: str, seed: int, *,
                      budget: int) -> tuple[Stream, Affinity]:
    """A run config's stream in its built order (`order` left out), and its tasks' affinity
    (`lifelong.curriculum.task_affinity`) measured with the config's model, strategy and
    training at `seed`."""
    from lifelong.curriculum import task_affinity

    s = {k: v for k, v in config["stream"].items() if k not in ("name", "order")}
    stream = build_stream(config["stream"]["name"], seed=seed, **s)
    affinity = task_affinity(stream, lambda at: strategy_for(config, strategy, stream, at),
                             TrainConfig(**config["train"]), budget=budget, seed=seed)
    return stream, affinity


def _one_run(p: Plan, spec: RunSpec, stream: Stream, store: Store, out: Path,
             progress: bool | None, meta: dict[str, Any]) -> Outcome:
    cfg = spec.config
    strategy = strategy_for(cfg, spec.strategy, stream, spec.seed)
    run_id = spec.run_id
    store.begin_run(run_id, experiment=p.experiment.name, strategy=spec.strategy,
                    stream=stream.name, seed=spec.seed, config=cfg, num_tasks=len(stream),
                    task_keys=[t.key for t in stream.tasks],
                    versions=meta["versions"], git_commit=meta["git_commit"])
    callbacks = [ProgressBar(desc=f"{spec.label or spec.strategy} seed {spec.seed}",
                             disable=None if progress is None else not progress),
                 StoreRecorder(store, run_id), *p.experiment.callbacks(spec.run_id, strategy)]
    try:
        result = fit_stream(strategy, stream, TrainConfig(**cfg["train"]), seed=spec.seed,
                            callbacks=callbacks)
    except BaseException as e:
        store.fail_run(run_id, error=f"{type(e).__name__}: {e}")
        raise
    outcome = _write_files(spec, result, store, out)
    store.finish_run(run_id, metrics=result.metrics)
    return outcome


def _write_files(spec: RunSpec, result: RunResult, store: Store, out: Path, *,
                 reused: bool = False) -> Outcome:
    """Write `runs/<run_id>/`: config.yaml, matrix.json and matrix.png, atomically."""
    from lifelong.plots import matrix_heatmap

    cfg, run_id, metrics = spec.config, spec.run_id, result.metrics
    run_dir = out / run_id
    payload = {
        "run_id": run_id, "matrix": [list(r) for r in result.matrix], **metrics,
        **result.per_task(),
        "curves": [{"task": c.task_index, "step": c.step, "accuracies": list(c.accuracies)}
                   for c in result.curves]}
    if reused and _files_hold(run_dir, payload):  # a resumed study: nothing to redraw
        return Outcome(run_id, spec.strategy, spec.label or spec.strategy, spec.seed, cfg,
                       result, run_dir, reused)
    try:  # the files first: a run is 'completed' only once everything it wrote is there
        atomic_write_text(run_dir / "config.yaml",
                          yaml.safe_dump({**cfg, "seed": spec.seed}, sort_keys=False))
        atomic_write_json(run_dir / "matrix.json", payload)
        matrix_heatmap(result.matrix, f"{spec.strategy} on {result.stream} (seed {spec.seed})",
                       run_dir / "matrix.png")
    except OSError as e:
        if not store.is_completed(run_id):
            store.fail_run(run_id, error=f"writing {run_dir}: {e}")
        raise ConfigError(f"cannot write the run's files in {run_dir} ({e}); pass --out with "
                          "a writable folder (its rows stay in the store)") from None
    return Outcome(run_id, spec.strategy, spec.label or spec.strategy, spec.seed, cfg, result,
                   run_dir, reused)


def _files_hold(run_dir: Path, payload: dict[str, Any]) -> bool:
    """Whether `run_dir` already holds this run's files as `_write_files` would write them
    (a reused run written before: its figure need not be drawn again)."""
    import json

    try:
        same = json.loads((run_dir / "matrix.json").read_text()) == json.loads(
            json.dumps(payload))
    except (OSError, ValueError):
        return False
    return same and (run_dir / "matrix.png").is_file() and (run_dir / "config.yaml").is_file()


def _diverged(spec: RunSpec, stream: Stream, out: Path, error: DivergenceError) -> Outcome:
    """The outcome of a run whose loss became NaN or infinite, in an experiment that goes on
    after it: no metrics (`result` is empty); the store keeps the rows it finished, marked
    failed with the error."""
    no_costs: dict[str, Any] = {name: () for name in COSTS}
    empty = RunResult(strategy=spec.strategy, stream=stream.name, seed=spec.seed, matrix=(),
                      **no_costs)
    return Outcome(spec.run_id, spec.strategy, spec.label or spec.strategy, spec.seed,
                   spec.config, empty, out / spec.run_id, error=str(error))


def describe_experiments() -> list[tuple[str, str]]:
    from lifelong.experiments import register_all

    register_all()
    return [(n, EXPERIMENTS.get(n).summary) for n in EXPERIMENTS.names()]
