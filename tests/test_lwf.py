"""LwF: the distillation term by hand, the teacher frozen and saved, and less forgetting than
naive fine-tuning on split digits (task-IL)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lifelong import TrainConfig, build_model, fit_stream
from lifelong.data.task import Stream
from lifelong.metrics import bwt
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Batch
from lifelong.strategies.lwf import LwF, distillation, head_outputs

CFG = TrainConfig(epochs=5, batch_size=32, lr=0.1, device="cpu")


def test_distillation_is_zero_when_student_equals_teacher() -> None:
    logits = torch.randn(7, 3, 4)
    assert distillation(logits, logits.clone(), 2.0).item() == 0.0


def test_distillation_matches_a_hand_computed_two_class_value() -> None:
    # Teacher logits (2, 0), student (0, 0), T = 2: p = softmax(1, 0) = (σ(1), 1 − σ(1)),
    # q = (½, ½), so KL(p‖q) = p₁ ln 2p₁ + p₂ ln 2p₂ ≈ 0.1110.
    p1 = 1.0 / (1.0 + math.exp(-1.0))
    expected = p1 * math.log(2 * p1) + (1 - p1) * math.log(2 * (1 - p1))
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    assert distillation(student, teacher, 2.0).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.1110, abs=1e-4)
    # Averaged over the batch, summed over heads.
    two = distillation(student.expand(4, 2).reshape(2, 2, 2), teacher.expand(4, 2)
                       .reshape(2, 2, 2), 2.0)
    assert two.item() == pytest.approx(2 * expected, abs=1e-6)


def test_all_old_heads_in_one_pass_equal_one_call_per_head(split_digits: Stream) -> None:
    model = build_model("mlp", split_digits, hidden=[16], seed=0)
    x = split_digits.tasks[0].train.x[:5]
    looped = torch.stack([model(x, j) for j in (0, 2)], 1)
    assert torch.allclose(head_outputs(model, x, [0, 2]), looped)


def test_loss_is_cross_entropy_while_the_student_is_the_teacher(split_digits: Stream) -> None:
    task0, task1 = split_digits.tasks[:2]
    lwf = build_strategy("lwf", build_model("mlp", split_digits, hidden=[16], seed=0))
    lwf.after_task(task0)
    lwf.before_task(task1)
    d = task1.train
    batch = Batch(d.x[:8], d.y[:8], d.t[:8])
    logits = lwf.model(batch.x, batch.t)
    assert lwf.loss(batch, logits).item() == pytest.approx(
        F.cross_entropy(logits, batch.y).item(), abs=1e-7)


def test_teacher_is_frozen_saved_and_restored(split_digits: Stream) -> None:
    two = Stream(split_digits.name, split_digits.scenario, split_digits.tasks[:2],
                 split_digits.num_classes, split_digits.num_outputs, split_digits.input_shape)
    lwf = build_strategy("lwf", build_model("mlp", split_digits, hidden=[16], seed=0))
    assert isinstance(lwf, LwF)
    fit_stream(lwf, two, TrainConfig(epochs=1, batch_size=32, lr=0.1, device="cpu"), seed=0)
    teacher = lwf.teacher()
    assert teacher is not None and not any(p.requires_grad for p in teacher.parameters())
    assert lwf.state.heads == [0, 1]
    saved = lwf.state_dict()["state"]["teacher"]
    # The teacher is the model before task 2: trained on task 1 only, unlike the model now.
    assert any(not torch.equal(saved[k], v) for k, v in lwf.model.state_dict().items()
               if isinstance(v, torch.Tensor))
    other = build_strategy("lwf", build_model("mlp", split_digits, hidden=[16], seed=5))
    other.load_state_dict(lwf.state_dict())
    assert isinstance(other, LwF) and (restored := other.teacher()) is not None
    for a, b in zip(teacher.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)


def test_lwf_forgets_less_than_naive_on_split_digits_task_il(split_digits: Stream) -> None:
    results = {}
    for name in ("naive", "lwf"):
        model = build_model("mlp", split_digits, hidden=[100, 100], seed=0)
        results[name] = fit_stream(build_strategy(name, model), split_digits, CFG, seed=0)
    naive, lwf = results["naive"].matrix, results["lwf"].matrix
    assert bwt(lwf) > bwt(naive) + 0.02, (bwt(lwf), bwt(naive))
    assert sum(lwf[-1]) > sum(naive[-1])
