"""The image streams' validation split (`validation`, `evaluate_on`): held out of each task's
training examples by the task's key, and a tuning mode that never reads the test set."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lifelong import build_stream
from lifelong.errors import ConfigError

BUILDERS: list[tuple[str, dict[str, Any]]] = [
    ("permuted", {"num_tasks": 2}), ("rotated", {"num_tasks": 2}),
    ("split", {"num_tasks": 2, "scenario": "class"}), ("noisy", {})]


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}


@pytest.mark.parametrize(("name", "kw"), BUILDERS)
def test_validation_is_held_out_of_train_and_tuning_scores_on_it(name: str,
                                                                 kw: dict[str, Any]) -> None:
    plain = build_stream(name, source="digits", seed=0, **kw)
    held = build_stream(name, source="digits", seed=0, validation=0.25, **kw)
    tune = build_stream(name, source="digits", seed=0, validation=0.25,
                        evaluate_on="validation", **kw)
    for p, h, t in zip(plain.tasks, held.tasks, tune.tasks, strict=True):
        assert p.validation is None and h.validation is not None
        n = len(p.train.y)
        assert len(h.validation.y) == round(0.25 * n) and len(h.train.y) == n - len(h.validation.y)
        # train and validation split the same examples: nothing lost, nothing shared (a
        # noisy task draws its noise per part, so its clean twin is compared)
        if name == "noisy" and "clean" not in p.key:
            continue
        assert _rows(h.train.x) | _rows(h.validation.x) == _rows(p.train.x)
        assert not _rows(h.train.x) & _rows(h.validation.x)
        assert torch.equal(h.test.x, p.test.x)  # the test set is unchanged
        assert torch.equal(t.test.x, h.validation.x) and torch.equal(t.test.y, h.validation.y)
        assert torch.equal(t.train.x, h.train.x)


def test_validation_depends_on_the_task_key_not_its_position() -> None:
    a = build_stream("rotated", source="digits", angles=[0, 45], seed=1, validation=0.2)
    b = build_stream("rotated", source="digits", angles=[45, 0], seed=1, validation=0.2)
    assert a.tasks[1].validation is not None and b.tasks[0].validation is not None
    assert torch.equal(a.tasks[1].validation.x, b.tasks[0].validation.x)


@pytest.mark.parametrize(("name", "kw"), BUILDERS)
def test_tuning_on_validation_never_reads_the_test_set(name: str, kw: dict[str, Any],
                                                       digits_without_test: None) -> None:
    stream = build_stream(name, source="digits", seed=0, validation=0.2,
                          evaluate_on="validation", **kw)
    assert all(t.validation is not None and torch.equal(t.test.x, t.validation.x)
               for t in stream.tasks)
    with pytest.raises((AssertionError, TypeError)):  # the poison works: a read fails
        build_stream(name, source="digits", seed=0, validation=0.2, **kw)


@pytest.mark.parametrize(("opts", "match"), [
    ({"validation": 1.0}, "validation=1.0 must be a share"),
    ({"evaluate_on": "validation"}, "needs a validation split"),
    ({"validation": 0.1, "evaluate_on": "valid"}, "did you mean 'validation'"),
])
def test_bad_validation_options_get_one_clear_error(opts: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_stream("permuted", source="digits", seed=0, **opts)
