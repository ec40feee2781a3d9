"""A user's own strategies, models, stream builders and experiments: `--import` and discovery.

Owns `discover_all` (every registry finds its package's modules and the installed entry points)
and `import_extensions` (a user's module, by dotted name or `.py` path, imported after our own
factories registered, so its `@STRATEGIES.register(...)` decorators add to them and a name it
takes twice is an error, not a silent replacement). Every failure is one `ConfigError` naming
the file and the problem. Does not own the registries nor how reuse of a stored run is judged
(each registry records a hash of a user's source file, `Registry.origin`; the runner compares
it).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from lifelong.errors import ConfigError


def discover_all() -> None:
    """Let the five registries find their own modules and the installed entry points."""
    from lifelong.data.builders import STREAMS
    from lifelong.data.sources import SOURCES
    from lifelong.experiments import EXPERIMENTS
    from lifelong.models import MODELS
    from lifelong.strategies import STRATEGIES

    for registry in (SOURCES, STREAMS, MODELS, STRATEGIES, EXPERIMENTS):
        registry.discover()


def import_extensions(specs: Iterable[str]) -> None:
    """Import each of `specs` — a dotted module name or a path to a `.py` file — after our own
    factories are registered. A module already imported (the same name, or the same file) is
    not run again.

    Raises:
        ConfigError: a file that does not exist, a module that fails to import, or a name it
            registers that is already taken; the message names the file and the problem.
    """
    specs = list(specs)
    if not specs:
        return
    discover_all()  # ours first, so a user's name that collides with ours is the user's error
    for spec in specs:
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            _import_file(spec)
        else:
            _import_module(spec)


def _import_file(spec: str) -> None:
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--import {spec}: no such file ({path}); give the path of a .py file"
                          " or the dotted name of an importable module")
    # A name unique to the file, so two files called `method.py` in different folders are two
    # modules, and importing one file twice runs it once.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    name = f"lifelong_import_{_identifier(path.stem)}_{digest}"
    if name in sys.modules:
        return
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"--import {spec}: Python cannot import this file; give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # decorators look their module up while it runs (`origin`)
    try:
        loader_spec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[name]
        _reraise(spec, path, e)


def _import_module(spec: str) -> None:
    if not all(part.isidentifier() for part in spec.split(".")):
        raise ConfigError(f"--import {spec}: not a module name nor a .py file; give a dotted "
                          "module name (my_package.my_method) or a path ending in .py")
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.startswith(e.name):  # the module itself, not a dependency
            raise ConfigError(
                f"--import {spec}: no module named '{e.name}' on the Python path; give the "
                f"path of its file ({spec.replace('.', '/')}.py) or install its package"
            ) from None
        _reraise(spec, None, e)
    except BaseException as e:
        _reraise(spec, None, e)


def _reraise(spec: str, path: Path | None, error: BaseException) -> NoReturn:
    """Raise `error`, raised while importing `spec`, as one ConfigError naming the file and
    the line (the user's line nearest the failure); KeyboardInterrupt passes through."""
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        raise error
    if isinstance(error, ConfigError):  # e.g. a name already registered
        raise ConfigError([f"--import {spec}: {p}" for p in error.problems]) from None
    if isinstance(error, SyntaxError):
        raise ConfigError(f"--import {spec}: syntax error at line {error.lineno}: {error.msg};"
                          " fix the file") from None
    where = ""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if path is not None and Path(f.filename).resolve() == path]
    if mine or frames:
        frame = (mine or frames)[-1]
        where = f" at {frame.filename}:{frame.lineno}"
    see = f"python {spec}" if path is not None else f"python -c 'import {spec}'"
    raise ConfigError(f"--import {spec}: importing it failed{where} with {type(error).__name__}:"
                      f" {error}; fix the module (run `{see}` to see the traceback)") from None


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)
