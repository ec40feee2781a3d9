"""A user's own method: discovery of new modules, `--import`, entry points, safe reuse.

Every test restores the five registries afterwards (the fixture `registries`), so the methods
written here never reach the contract tests that run over every registered strategy.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from lifelong.cli import main
from lifelong.data.builders import STREAMS
from lifelong.data.sources import SOURCES
from lifelong.errors import ConfigError
from lifelong.experiments import EXPERIMENTS
from lifelong.models import MODELS
from lifelong.registry import Registry
from lifelong.strategies import STRATEGIES

ALL: tuple[Registry[Any], ...] = (SOURCES, STREAMS, MODELS, STRATEGIES, EXPERIMENTS)

STRATEGY = '''
from __future__ import annotations

from torch import nn

from lifelong.strategies import STRATEGIES
from lifelong.strategies.base import Strategy


@STRATEGIES.register("{name}")
class UserMethod(Strategy):
    """Fine-tuning with one option (a user's method)."""

    name = "{name}"

    def __init__(self, model: nn.Module, *, strength: float = 1.0) -> None:
        super().__init__(model)
        self.strength = strength
'''


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore every registry and forget every module imported during the test."""
    for registry in ALL:
        registry.discover()  # ours are in before the snapshot
        monkeypatch.setattr(registry, "_items", dict(registry._items))
        monkeypatch.setattr(registry, "_origins", dict(registry._origins))
        monkeypatch.setattr(registry, "_loaded", set(registry._loaded))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------- (a) discovery
def test_a_new_module_in_each_package_is_found_without_editing_another_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registries: None) -> None:
    import lifelong.data.builders
    import lifelong.data.sources
    import lifelong.experiments
    import lifelong.models
    import lifelong.strategies

    modules = {
        lifelong.data.sources: '''
            from lifelong.data.sources import SOURCES

            @SOURCES.register("ext-source")
            def ext_source(data_dir=None):
                """A user's image source."""
                raise NotImplementedError
            ''',
        lifelong.strategies: STRATEGY.format(name="ext-strategy"),
        lifelong.models: '''
            from lifelong.models import MODELS
            from torch import nn

            @MODELS.register("ext-model")
            def ext_model(input_shape, num_outputs, num_heads, *, width: int = 3) -> nn.Module:
                """A user's model."""
                return nn.Linear(width, num_outputs)
            ''',
        lifelong.data.builders: '''
            from lifelong.data.builders import STREAMS

            @STREAMS.register("ext-stream")
            def ext_stream(seed: int, *, num_tasks: int = 2):
                """A user's stream builder."""
                raise NotImplementedError
            ''',
        lifelong.experiments: '''
            from lifelong.experiments import EXPERIMENTS
            from lifelong.experiments.base import Experiment

            @EXPERIMENTS.register("ext-experiment")
            class ExtExperiment(Experiment):
                name = "ext-experiment"
                summary = "a user's experiment"
            ''',
    }
    for i, (package, text) in enumerate(modules.items()):
        folder = tmp_path / f"pkg{i}"
        folder.mkdir()
        write(folder / "ext_added.py", text)
        write(folder / "_private.py", "raise AssertionError('private modules are skipped')")
        write(folder / "base.py", "raise AssertionError('base is skipped')")
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    for registry, name in zip(ALL, ("ext-source", "ext-stream", "ext-model", "ext-strategy",
                                    "ext-experiment"), strict=True):
        assert name not in registry
        registry.discover()
        assert name in registry
        assert registry.origin(name) is not None  # outside src/: its source is hashed
    assert STRATEGIES.origin("naive") is None  # ours: covered by store.code_hash
    assert [o.name for o in MODELS.options("ext-model")] == ["width"]


# ---------------------------------------------------------------------------- (b) --import
def test_an_imported_strategy_runs_lists_and_gets_did_you_mean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], registries: None) -> None:
    method = write(tmp_path / "my_method.py", STRATEGY.format(name="my-method"))
    store, out = str(tmp_path / "s.sqlite"), str(tmp_path / "out")
    run = ["run", "gem-table", "--import", str(method), "--strategies", "naive,my-method",
           "--quick", "--set", "options.streams=permuted", "--store", store, "--out", out,
           "--json", "--no-progress"]
    assert main(run) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert sorted(r["strategy"] for r in runs) == ["my-method", "naive"]
    assert all(len(r["matrix"]) == len(r["matrix"][0]) + 1 for r in runs)

    # Reuse is safe: the same file is reused, an edited file trains again (naive is reused).
    assert main(run) == 0
    assert all(r["reused"] for r in json.loads(capsys.readouterr().out)["runs"])
    write(tmp_path / "edited.py", STRATEGY.format(name="my-method") + "\n# a change\n")
    run[3] = str(tmp_path / "edited.py")
    STRATEGIES._items.pop("my-method")  # a fresh process would not hold the old one
    assert main(run) == 0
    reused = {r["strategy"]: r["reused"] for r in json.loads(capsys.readouterr().out)["runs"]}
    assert reused == {"naive": True, "my-method": False}

    assert main(["list", "--json", "--import", str(method)]) == 0
    strategies = json.loads(capsys.readouterr().out)["strategies"]
    assert strategies["my-method"]["options"] == {"strength": 1.0}

    assert main([*run[:-2], "--set", "strategies.my-method.strenght=2"]) == 2
    err = capsys.readouterr().err
    assert "strategy 'my-method' has no option 'strenght' — did you mean 'strength'?" in err


# ----------------------------------------------------------------------- (c) bad --import
@pytest.mark.parametrize("text, expected", [
    (None, "no such file"),
    ("x = (\n", "syntax error at line 1"),
    ("raise ValueError('boom')\n", "at {path}:1 with ValueError: boom"),
    (STRATEGY.format(name="naive"), "strategy 'naive' is already registered by "
                                    "lifelong.strategies.naive.Naive"),
])
def test_a_bad_import_is_one_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], registries: None,
        text: str | None, expected: str) -> None:
    path = tmp_path / "user_file.py"
    if text is not None:
        write(path, text)
    for command in (["list"], ["runs", "--store", str(tmp_path / "s.sqlite")]):
        assert main([*command, "--import", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"lifelong: error: --import {path}: ")
        assert expected.format(path=path) in err and "Traceback" not in err


def test_a_missing_module_name_says_how_to_give_a_file(
        capsys: pytest.CaptureFixture[str], registries: None) -> None:
    assert main(["list", "--import", "no_such_package.method"]) == 2
    assert "no module named 'no_such_package'" in capsys.readouterr().err


# -------------------------------------------------------------------------- (d) entry points
@dataclass
class FakeDist:
    name: str


@dataclass
class FakeEntryPoint:
    """What the registry reads of an `importlib.metadata.EntryPoint`."""

    name: str
    value: str
    target: Any
    dist: FakeDist = field(default_factory=lambda: FakeDist("user-methods"))

    def load(self) -> Any:
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


def test_entry_points_register_a_class_or_a_module_and_load_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registries: None) -> None:
    from lifelong.strategies.base import Strategy

    class EntryPointMethod(Strategy):
        """A method an installed package offers by its class."""

    loads: list[str] = []

    def entry_points(*, group: str) -> list[FakeEntryPoint]:
        loads.append(group)
        if group != "lifelong.strategies":
            return []
        return [FakeEntryPoint("ep-method", "user_methods:EntryPointMethod", EntryPointMethod)]

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    STRATEGIES.discover()
    assert STRATEGIES.get("ep-method") is EntryPointMethod
    STRATEGIES.discover()  # loaded once: no "registered twice"
    assert loads == ["lifelong.strategies", "lifelong.strategies"]


def test_a_broken_entry_point_names_its_distribution(
        monkeypatch: pytest.MonkeyPatch, registries: None) -> None:
    broken = FakeEntryPoint("bad", "user_methods.bad", ImportError("no module named torchvision"))
    monkeypatch.setattr(metadata, "entry_points", lambda *, group: [broken])
    with pytest.raises(ConfigError) as e:
        MODELS.discover()
    assert str(e.value) == (
        "entry point 'bad = user_methods.bad' (group lifelong.models) of user-methods failed "
        "to load (ImportError: no module named torchvision); fix or uninstall user-methods")
