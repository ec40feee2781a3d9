"""Stream builders: registered functions that turn a source into a `Stream`.

Owns the `STREAMS` registry and `build_stream`. Every builder takes the run's seed first
(supplied by the library) and keyword options: `source`, `num_tasks`, `train_per_task`,
`test_per_task`, `scenario`, `data_dir`, plus its own; `order` (the tasks' training order)
is every stream's, applied here. Each task is seeded by its key, so `Stream.reorder()` never
changes a task. Every public module registers its builders and is
found by `Registry.discover` (no list to edit); installed packages add builders through the
`lifelong.streams` entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lifelong.data.task import Stream, check_order
from lifelong.registry import Registry

STREAMS: Registry[Callable[..., Stream]] = Registry(
    "stream", skip=("seed",), package=__name__, group="lifelong.streams")


# Orders a stream option names without training anything; the choosers that measure tasks
# (`easy-to-hard`, `greedy-affinity`) live in `lifelong.curriculum` and need a model.
NAMED_ORDERS = ("given", "reverse", "random")
MEASURED_ORDERS = ("easy-to-hard", "greedy-affinity")


def parse_order(order: Any) -> list[int] | str | None:
    """`stream.order` as given: a list of task positions, the same as a comma-separated string
    (``"3,1,0,2"``), or the name of an order in `NAMED_ORDERS` or `MEASURED_ORDERS` (which
    `lifelong run` resolves by measuring the tasks first, see
    `lifelong.run.execution.stream_for`). Raises `ConfigError` for anything else; whether a
    list is a permutation needs the stream (`resolve_order`)."""
    from lifelong.errors import ConfigError
    from lifelong.registry import suggest

    if order is None or order in NAMED_ORDERS or order in MEASURED_ORDERS:
        return order  # type: ignore[no-any-return]
    items = order.split(",") if isinstance(order, str) else order
    items = [items] if isinstance(items, int) else items

    def position(i: Any) -> bool:
        text = i.strip() if isinstance(i, str) else None
        return (isinstance(i, int) and not isinstance(i, bool) and i >= 0) or bool(
            text and text.isdigit())

    if not isinstance(items, (list, tuple)) or not items or not all(map(position, items)):
        hint = suggest(order, NAMED_ORDERS) if isinstance(order, str) else ""
        raise ConfigError(f"stream.order={order!r} must list task positions from 0 (e.g. "
                          f"3,1,0,2) or name an order ({', '.join(NAMED_ORDERS)}){hint}")
    return [int(i) for i in items]


def resolve_order(order: list[int] | str, num_tasks: int, seed: int) -> list[int]:
    """The positions in training order for a stream of `num_tasks` tasks. Raises
    `ConfigError` when a list is not a permutation of 0..num_tasks-1."""
    import torch

    from lifelong.errors import ConfigError
    from lifelong.seeding import generator

    if order == "given":
        return list(range(num_tasks))
    if order == "reverse":
        return list(range(num_tasks))[::-1]
    if order == "random":
        return torch.randperm(num_tasks, generator=generator("order", seed)).tolist()
    assert isinstance(order, list)
    if problems := check_order(order, num_tasks):
        raise ConfigError(f"stream.order={order} is not a permutation of the stream's "
                          f"{num_tasks} task positions 0..{num_tasks - 1}: "
                          + "; ".join(problems))
    return list(order)


def check_stream(name: str, options: dict[str, Any], where: str = "stream") -> list[str]:
    """Every problem with building `name` from `options` — names, types and the builder's own
    range checks — without loading any data (builders check before they load). The option
    `order` (every stream has it, see `build_stream`) is checked here, not by the builder."""
    from lifelong.data.builders._common import CHECK_ONLY, OptionsChecked
    from lifelong.errors import ConfigError

    options = dict(options)
    problems = []
    try:
        parse_order(options.pop("order", None))
    except ConfigError as e:
        problems += e.problems
    problems += STREAMS.check(name, options, where)
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


def build_stream(name: str, *, seed: int = 0, order: Any = None, **options: Any) -> Stream:
    """Build the registered stream `name` (options are checked first), its tasks in `order`
    (see `parse_order`; default as built) through `Stream.reorder`, which never changes a
    task's data: every task is seeded by its key, not its position."""
    from lifelong.errors import ConfigError

    wanted = parse_order(order)
    if wanted in MEASURED_ORDERS:
        raise ConfigError(f"order={wanted!r} measures the tasks first (it trains a model on "
                          "each): `lifelong run ... --set stream.order=...` does that, or in "
                          "Python `lifelong.curriculum.task_affinity` and `choose`, then "
                          "`Stream.reorder`")
    stream: Stream = STREAMS.build(name, seed, where="stream", **options)
    if wanted is not None:
        stream = stream.reorder(resolve_order(wanted, len(stream), seed))
    return stream
