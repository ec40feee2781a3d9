"""Stream builders: task identity, scenarios, option checks."""

from __future__ import annotations

import pytest
import torch

from lifelong import build_stream
from lifelong.errors import ConfigError


def test_reorder_keeps_every_task_identical(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    s = permuted_digits
    r = s.reorder([2, 0, 1])
    assert [t.key for t in r.tasks] == [s.tasks[2].key, s.tasks[0].key, s.tasks[1].key]
    for new, old in zip(r.tasks, (s.tasks[2], s.tasks[0], s.tasks[1]), strict=True):
        assert torch.equal(new.train.x, old.train.x) and torch.equal(new.train.y, old.train.y)
        assert torch.equal(new.test.x, old.test.x) and torch.equal(new.test.y, old.test.y)
        assert new.index == r.tasks.index(new) and int(new.train.t[0]) == new.index


def test_building_in_another_order_gives_the_same_tasks() -> None:
    a = build_stream("rotated", source="digits", angles=[0, 45, 90], seed=3)
    b = build_stream("rotated", source="digits", angles=[90, 0, 45], seed=3)
    assert torch.equal(a.tasks[1].train.x, b.tasks[2].train.x)  # the 45° task
    assert a.tasks[1].key == b.tasks[2].key == "rotated/digits/45"


def test_reorder_rejects_a_non_permutation(permuted_digits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="not a permutation"):
        permuted_digits.reorder([0, 0, 1])


def test_permutations_differ_between_tasks_and_seeds() -> None:
    a = build_stream("permuted", source="digits", num_tasks=2, seed=0)
    b = build_stream("permuted", source="digits", num_tasks=2, seed=1)
    assert not torch.equal(a.tasks[0].train.x, a.tasks[1].train.x)
    assert not torch.equal(a.tasks[0].train.x, b.tasks[0].train.x)
    # a permutation only moves pixels: per-image pixel sums are kept
    raw = build_stream("permuted", source="digits", num_tasks=1, identity_first=True, seed=0)
    assert torch.allclose(raw.tasks[0].train.x.sum((1, 2, 3)),
                          a.tasks[0].train.x.sum((1, 2, 3)), atol=1e-4)
    assert not torch.equal(raw.tasks[0].train.x, a.tasks[0].train.x)


def test_split_scenarios_label_spaces() -> None:
    task_il = build_stream("split", source="digits", scenario="task", seed=0)
    class_il = build_stream("split", source="digits", scenario="class", seed=0)
    domain_il = build_stream("split", source="digits", scenario="domain", seed=0)
    assert len(task_il) == 5 and task_il.num_heads == 5 and task_il.num_outputs == 2
    assert set(task_il.tasks[3].train.y.tolist()) == {0, 1}
    assert task_il.tasks[3].classes == (6, 7)
    assert class_il.num_heads == 1 and class_il.num_outputs == 10
    assert set(class_il.tasks[3].train.y.tolist()) == {6, 7}
    assert domain_il.num_heads == 1 and domain_il.num_outputs == 2


def test_permuted_class_il_gives_new_labels_per_task() -> None:
    s = build_stream("permuted", source="digits", num_tasks=3, scenario="class", seed=0)
    assert s.num_outputs == 30
    assert set(s.tasks[2].train.y.tolist()) == set(range(20, 30))


def test_noisy_stream_uses_the_same_images_and_labels() -> None:
    s = build_stream("noisy", source="digits", level=0.5, seed=0)
    noisy, clean = s.tasks
    assert torch.equal(noisy.train.y, clean.train.y)
    changed = (noisy.train.x != clean.train.x).float().mean().item()
    assert 0.3 < changed < 0.6  # about half the pixels hit (some already 0 or 1)
    assert set(noisy.train.x.unique().tolist()) >= {0.0, 1.0}


def test_options_are_checked_all_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        build_stream("permuted", source="digits", num_tasks=0, scenario="clas",
                     train_per_task=-1)
    text = str(e.value)
    assert "num_tasks=0" in text and "scenario='clas'" in text and "train_per_task=-1" in text


def test_unknown_option_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'num_tasks'"):
        build_stream("permuted", source="digits", num_task=3)


def test_asking_for_more_examples_than_exist_is_an_error() -> None:
    with pytest.raises(ConfigError, match="train_per_task=5000"):
        build_stream("permuted", source="digits", train_per_task=5000)


def test_split_options_are_checked_before_any_data_loads() -> None:
    from lifelong.data.builders import check_stream

    assert check_stream("split", {"scenario": "bogus", "classes_per_task": 0,
                                  "class_order": [1, 1]}) == [
        "stream 'split': scenario='bogus' is not one of task, domain, class",
        "stream 'split': classes_per_task=0 must be >= 1",
        "stream 'split': class_order=[1, 1] lists class 1 more than once; list each class "
        "at most once"]


def test_split_refuses_more_examples_than_a_task_has() -> None:
    with pytest.raises(ConfigError, match="train_per_task=1000 but classes \\[0, 1\\]"):
        build_stream("split", source="digits", train_per_task=1000, seed=0)


def test_concat_into_scratch_equals_concat_and_reuses_its_storage() -> None:
    from lifelong.data.task import Scratch, TensorData

    def data(n: int, start: int, multi: bool = False) -> TensorData:
        x = torch.arange(start, start + 2 * n, dtype=torch.float32).view(n, 2)
        return TensorData((x, x[:, 0].long()) if multi else x, torch.arange(n) + start,
                          torch.full((n,), start, dtype=torch.int64))

    def fields(d: TensorData) -> list[torch.Tensor]:
        return [*((d.x,) if isinstance(d.x, torch.Tensor) else d.x), d.y, d.t]

    scratch = Scratch()
    for multi in (False, True):
        a, b, c = data(5, 0, multi), data(3, 100, multi), data(2, 200, multi)
        first = TensorData.concat([a, b], scratch=scratch)
        plain = TensorData.concat([a, b])
        assert all(torch.equal(g, w) for g, w in zip(fields(first), fields(plain), strict=True))
        y_storage = first.y.data_ptr()
        smaller = TensorData.concat([a, c], scratch=scratch)  # fits: the same storage
        assert smaller.y.data_ptr() == y_storage
        assert smaller.y.tolist() == [0, 1, 2, 3, 4, 200, 201]
        larger = TensorData.concat([a, b, c], scratch=scratch)  # grows
        assert larger.y.tolist() == [0, 1, 2, 3, 4, 100, 101, 102, 200, 201]
