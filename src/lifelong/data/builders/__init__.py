"""Stream builders: registered functions that turn a source into a `Stream`.

Owns the `STREAMS` registry and `build_stream`. Every builder takes the run's seed first
(supplied by the library) and keyword options: `source`, `num_tasks`, `train_per_task`,
`test_per_task`, `scenario`, `data_dir`, plus its own. Each task is seeded by its key, so
`Stream.reorder()` never changes a task. Every public module registers its builders and is
found by `Registry.discover` (no list to edit); installed packages add builders through the
`lifelong.streams` entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lifelong.data.task import Stream
from lifelong.registry import Registry

STREAMS: Registry[Callable[..., Stream]] = Registry(
    "stream", skip=("seed",), package=__name__, group="lifelong.streams")


def register_all() -> None:
    """Import every builder module (each registers itself) and the installed entry points."""
    STREAMS.discover()


def check_stream(name: str, options: dict[str, Any], where: str = "stream") -> list[str]:
    """Every problem with building `name` from `options` — names, types and the builder's own
    range checks — without loading any data (builders check before they load)."""
    from lifelong.data.builders._common import CHECK_ONLY, OptionsChecked
    from lifelong.errors import ConfigError

    register_all()
    problems = STREAMS.check(name, options, where)
    if name not in STREAMS or any("needs option" in p for p in problems):
        return problems
    token = CHECK_ONLY.set(True)
    try:  # the builder's own checks, on the options whose types are right
        STREAMS.build(name, 0, where=where, **STREAMS.well_typed(name, options))
    except ConfigError as e:
        problems += [p for p in e.problems if p not in problems]
    except OptionsChecked:
        pass
    finally:
        CHECK_ONLY.reset(token)
    return problems


def build_stream(name: str, *, seed: int = 0, **options: Any) -> Stream:
    """Build the registered stream `name` (options are checked first)."""
    register_all()
    stream: Stream = STREAMS.build(name, seed, where="stream", **options)
    return stream
