"""Name → factory registries with signature-checked construction.

Owns looking names up ("did you mean"), describing a factory's options and defaults (for
`lifelong list`), and checking a dict of options against the factory's keyword arguments —
names, and value types read from the annotations — before anything is built, reporting every
problem at once; and the canonical form of option values (an int where a float is declared
becomes a float, so `lr=1` and `lr=1.0` are one config). Does not own what the factories build
nor the range of a value (each factory checks its own).
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, Union

from lifelong.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


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

    Args:
        kind: what is registered ("strategy", "stream", ...), used in messages.
        skip: leading positional parameters supplied by the library, not the user
            (e.g. ``("model",)`` for strategies).
    """

    def __init__(self, kind: str, *, skip: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.skip = skip
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(obj: F) -> F:
            if name in self._items:
                raise RuntimeError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
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

    def build(self, name: str, *args: Any, where: str | None = None, **options: Any) -> Any:
        """Check `options`, then call the factory with the library's `args` and them."""
        problems = self.check(name, options, where or self.kind)
        if problems:
            raise ConfigError(problems)
        return self._items[name](*args, **options)
