"""Name → factory registries with signature-checked construction.

Owns looking names up ("did you mean"), describing a factory's options and defaults (for
`lifelong list`), and checking a dict of options against the factory's keyword arguments before
anything is built, reporting every problem at once. Does not own what the factories build.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lifelong.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def suggest(word: str, choices: Iterable[str]) -> str:
    """' — did you mean 'x'?' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True, slots=True)
class Option:
    """One keyword option of a factory: its name, default (``inspect.Parameter.empty`` if
    required) and annotation as text."""

    name: str
    default: Any
    annotation: str

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
            f"unknown {self.kind} '{name}'{suggest(name, self._items)}"
            f" valid: {', '.join(self.names())}"
        )

    def options(self, name: str) -> list[Option]:
        """The user-settable keyword options of `name`, in signature order."""
        obj = self.get(name)
        target = obj.__init__ if inspect.isclass(obj) else obj
        out = []
        for p in inspect.signature(target).parameters.values():
            if p.name in ("self", *self.skip) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            ann = p.annotation if isinstance(p.annotation, str) else getattr(
                p.annotation, "__name__", str(p.annotation))
            out.append(Option(p.name, p.default, ann))
        return out

    def check(self, name: str, options: dict[str, Any], where: str) -> list[str]:
        """Every problem with building `name` from `options`, as messages (empty if fine)."""
        if name not in self._items:
            return [f"{where}: {self.unknown(name)}"]
        valid = {o.name: o for o in self.options(name)}
        problems = []
        for key in options:
            if key not in valid:
                problems.append(
                    f"{self.kind} '{name}' has no option '{key}'{suggest(key, valid)}"
                    f" valid: {', '.join(valid) or '(none)'}"
                )
        for o in valid.values():
            if o.required and o.name not in options:
                problems.append(f"{self.kind} '{name}' needs option '{o.name}' ({where}.{o.name})")
        return problems

    def build(self, name: str, *args: Any, where: str | None = None, **options: Any) -> Any:
        """Check `options`, then call the factory with the library's `args` and them."""
        problems = self.check(name, options, where or self.kind)
        if problems:
            raise ConfigError(problems)
        return self._items[name](*args, **options)
