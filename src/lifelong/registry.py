"""Name → factory registries with signature-checked construction.

Owns looking names up ("did you mean"), describing a factory's options and defaults (for
`lifelong list`), and checking a dict of options against the factory's keyword arguments —
names, and value types read from the annotations — before anything is built, reporting every
problem at once; and the canonical form of option values (an int where a float is declared
becomes a float, so `lr=1` and `lr=1.0` are one config). Also owns discovery: a registry
tied to a package imports every public module of it (each registers itself) and loads the
installed packages' entry points of its group, so a new strategy, model, stream builder or
experiment is one file and no list anywhere. Does not own what the factories build nor the
range of a value (each factory checks its own), nor importing a user's file (`extensions.py`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import pkgutil
import sys
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union

from lifelong.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

# The `lifelong` package's own folder: code under it is covered by `store.code_hash`; a factory
# defined anywhere else is a user's, and its source is hashed when it registers (`origin`).
_PACKAGE_ROOT = Path(__file__).resolve().parent


def suggest(word: str, choices: Iterable[str]) -> str:
    """' — did you mean 'x'?' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def type_problem(key: str, value: Any, hint: Any) -> str | None:
    """``"key=value must be ..."`` when `value` does not fit the annotation `hint`, else None.
    Understands bool, int, float, str, None, unions, Literal and lists/tuples of those; any
    other annotation accepts everything. For a Literal only the type of its values is checked
    here: which value is allowed is the factory's check, made with its range checks so that
    they are all reported together."""
    if _fits(value, hint):
        return None
    return f"{key}={value!r} must be {_describe(hint)}"


def canonical_value(value: Any, hint: Any) -> Any:
    """`value` in canonical form for `hint`: ints become floats where only a float is
    declared, tuples become lists (element by element). Assumes `type_problem` found none."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        fitting = [a for a in args if _fits(value, a)]
        exact = [a for a in fitting if a is not float]
        return canonical_value(value, (exact or fitting or [Any])[0])
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, tuple, Sequence) and isinstance(value, (list, tuple)):
        return [canonical_value(v, _element(hint, i)) for i, v in enumerate(value)]
    return value


def hints(target: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of `target` (a function or a class's `__init__`), or {} when
    they cannot be resolved (then values are not type-checked)."""
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 — an unresolvable annotation only turns the check off
        return {}


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return any(type(value) is type(a) for a in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            return False
        return all(_fits(v, _element(hint, i)) for i, v in enumerate(value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _element(hint: Any, i: int) -> Any:
    args = typing.get_args(hint)
    if not args:
        return Any
    if typing.get_origin(hint) is tuple and args[-1] is not Ellipsis:
        return args[i] if i < len(args) else Any
    return args[0]


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint is None or hint is type(None):
        return "null"
    if origin in (list, tuple, Sequence):
        plural = {bool: "true/false values", int: "integers", float: "numbers",
                  str: "strings"}.get(_element(hint, 0))
        return f"a list of {plural}" if plural else "a list"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


@dataclass(frozen=True, slots=True)
class Option:
    """One keyword option of a factory: its name, default (``inspect.Parameter.empty`` if
    required) and annotation as text."""

    name: str
    default: Any
    annotation: str
    hint: Any = Any  # the resolved annotation, for type checks

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


class Registry(Generic[F]):
    """A named collection of factories (classes or functions).

    The first lookup (`get`, `names`, `in`, `options`, `check`, ...) runs `discover` once, so
    whoever asks sees every factory: the package's modules and the installed entry points.

    Args:
        kind: what is registered ("strategy", "stream", ...), used in messages.
        skip: leading positional parameters supplied by the library, not the user
            (e.g. ``("model",)`` for strategies).
        package: the dotted name of the package whose public modules register into this
            registry (modules starting with ``_`` and ``base`` are skipped).
        group: the entry-point group through which installed distributions add factories,
            e.g. ``"lifelong.strategies"``.
    """

    def __init__(self, kind: str, *, skip: tuple[str, ...] = (), package: str | None = None,
                 group: str | None = None) -> None:
        self.kind = kind
        self.skip = skip
        self.package = package
        self.group = group
        self._items: dict[str, F] = {}
        self._origins: dict[str, str] = {}  # name -> source hash, for factories outside lifelong
        self._loaded: set[tuple[str, str]] = set()  # entry points loaded: (name, value)
        self._discovered = False

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: register the class or function under `name`.

        Raises:
            ConfigError: `name` is taken (by another object); the message names both modules.
        """

        def deco(obj: F) -> F:
            if name in self._items and self._items[name] is not obj:
                old = self._items[name]
                raise ConfigError(
                    f"{self.kind} '{name}' is already registered by"
                    f" {_qualname(old)}; {_qualname(obj)} cannot take the same name —"
                    " register it under another name")
            self._items[name] = obj
            if (origin := _origin(obj)) is not None:
                self._origins[name] = origin
            return obj

        return deco

    def origin(self, name: str) -> str | None:
        """A hash of the source file that registered `name`, taken when it registered, if that
        file lies outside the `lifelong` package (a user's method); None for our own factories,
        whose code `store.code_hash` covers. A factory without a source file (typed into an
        interpreter) gets a token unique to this process, so no other process matches it."""
        self._ensure()
        return self._origins.get(name)

    def discover(self) -> None:
        """Import every public module of `package` (each registers itself) and load the entry
        points of `group` not loaded yet. Scans the package's `__path__` anew on every call, so
        a folder added to it later is found; a module already imported is not run again.

        Raises:
            ConfigError: an entry point fails to load or takes a name already registered; the
                message names the distribution.
        """
        self._discovered = True  # before importing: a module's own lookups must not recurse
        if self.package is not None:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_") and info.name != "base":
                    importlib.import_module(f"{self.package}.{info.name}")
        if self.group is not None:
            self._load_entry_points(self.group)

    def _ensure(self) -> None:
        if not self._discovered:
            self.discover()

    def _load_entry_points(self, group: str) -> None:
        for ep in metadata.entry_points(group=group):
            if (ep.name, ep.value) in self._loaded:
                continue
            self._loaded.add((ep.name, ep.value))  # once, even when it fails
            dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
            where = f"entry point '{ep.name} = {ep.value}' (group {group}) of {dist}"
            try:
                obj = ep.load()
                # A module registers itself on import; a class or function is registered here
                # under the entry point's name unless its module already did.
                if callable(obj) and obj not in self._items.values():
                    self.register(ep.name)(obj)
            except ConfigError as e:
                raise ConfigError([f"{where}: {p}" for p in e.problems]) from None
            except Exception as e:  # noqa: BLE001 — any failure of a plugin is reported as one
                raise ConfigError(
                    f"{where} failed to load ({type(e).__name__}: {e}); fix or uninstall"
                    f" {dist}") from None

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        self._ensure()
        return sorted(self._items)

    def get(self, name: str) -> F:
        self._ensure()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        self._ensure()
        return (
            f"unknown {self.kind} '{name}'{suggest(name, self._items)};"
            f" valid: {', '.join(self.names())}"
        )

    def options(self, name: str) -> list[Option]:
        """The user-settable keyword options of `name`, in signature order."""
        obj = self.get(name)
        target = obj.__init__ if inspect.isclass(obj) else obj
        resolved = hints(obj)
        out = []
        for p in inspect.signature(target).parameters.values():
            if p.name in ("self", *self.skip) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            ann = p.annotation if isinstance(p.annotation, str) else getattr(
                p.annotation, "__name__", str(p.annotation))
            out.append(Option(p.name, p.default, ann, resolved.get(p.name, Any)))
        return out

    def check(self, name: str, options: dict[str, Any], where: str) -> list[str]:
        """Every problem with building `name` from `options`, as messages (empty if fine)."""
        self._ensure()
        if name not in self._items:
            return [f"{where}: {self.unknown(name)}"]
        valid = {o.name: o for o in self.options(name)}
        problems = []
        for key, value in options.items():
            if key not in valid:
                problems.append(
                    f"{self.kind} '{name}' has no option '{key}'{suggest(key, valid)};"
                    f" valid: {', '.join(valid) or '(none)'}"
                )
            elif (bad := type_problem(key, value, valid[key].hint)) is not None:
                problems.append(f"{self.kind} '{name}': {bad}")
        for o in valid.values():
            if o.required and o.name not in options:
                problems.append(f"{self.kind} '{name}' needs option '{o.name}' ({where}.{o.name})")
        return problems

    def well_typed(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """`options` less unknown names and with every value of the wrong type replaced by its
        default (or dropped): what a dry build can use to find the factory's own range
        problems in the same pass as the type problems `check` reports."""
        self._ensure()
        valid = {o.name: o for o in self.options(name)} if name in self._items else {}
        out = {}
        for key, value in options.items():
            o = valid.get(key)
            if o is None:
                continue
            if type_problem(key, value, o.hint) is None:
                out[key] = value
            elif not o.required:
                out[key] = o.default
        return out

    def canonical(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """`options` (already checked) with every default filled in and values in canonical
        form (see `canonical_value`): what a run config records and hashes."""
        out = {}
        for o in self.options(name):
            if o.name in options:
                out[o.name] = canonical_value(options[o.name], o.hint)
            elif not o.required:
                out[o.name] = canonical_value(o.default, o.hint)
        return out

    def build(self, name: str, *args: Any, where: str | None = None,
              supplied: dict[str, Any] | None = None, **options: Any) -> Any:
        """Check `options`, then call the factory with the library's `args`, the library's
        keyword arguments `supplied` (named in `skip`, never the user's) and `options`."""
        self._ensure()
        problems = self.check(name, options, where or self.kind)
        if problems:
            raise ConfigError(problems)
        return self._items[name](*args, **(supplied or {}), **options)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _origin(obj: Any) -> str | None:
    """The hash of the file defining `obj` when it lies outside the `lifelong` package, None
    when inside (see `Registry.origin`)."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if file is None:
        return f"no-source-{uuid.uuid4().hex[:16]}"
    path = Path(file).resolve()
    if path.is_relative_to(_PACKAGE_ROOT):
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return f"no-source-{uuid.uuid4().hex[:16]}"
