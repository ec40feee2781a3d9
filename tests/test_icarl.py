"""iCaRL: the nearest-mean classifier and the class means by hand, the loss against its formula,
and ACC far above naive's in class-IL on real digits. (Herding by hand is in
test_class_memory.py; iCaRL's place in the contract and behaviour tests comes from the
registry.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.data.task import Task, TensorData
from lifelong.errors import ConfigError
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Batch
from lifelong.strategies.icarl import ICaRL


class Net(nn.Module):
    """features = identity on 2-D inputs, then a 5-way linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Linear(2, 5)

    def forward(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        out: Tensor = self.head(self.features(x))
        return out


def task(x: list[list[float]], y: list[int], classes: tuple[int, ...]) -> Task:
    data = TensorData(torch.tensor(x), torch.tensor(y), torch.zeros(len(y), dtype=torch.int64))
    return Task(key=f"t{classes}", index=0, train=data, test=data, classes=classes)


def test_nearest_mean_of_exemplars_by_hand() -> None:
    s = ICaRL(Net())
    s.state.classes, s.state.width = [3, 1], 5
    s.state.means = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # class 3 → (1, 0), class 1 → (0, 1)
    x = torch.tensor([[2.0, 0.1], [0.1, 3.0], [-1.0, 0.0]])
    out = s.predict(x, None)
    # Unit inputs: (0.999, 0.05) is nearest (1, 0); (0.03, 0.999) nearest (0, 1); (-1, 0) is
    # at distance 2 from (1, 0) and √2 from (0, 1).
    assert out.argmax(1).tolist() == [3, 1, 1]
    # The scores are φ·μ, and ‖φ − μ‖ = √(2 − 2 φ·μ) for unit vectors: 2 and √2 for (-1, 0).
    dist = (2 - 2 * out[2, [3, 1]]).sqrt()
    assert dist.tolist() == pytest.approx([2.0, math.sqrt(2)])
    unseen = [0, 2, 4]
    assert (out[:, unseen] == torch.finfo(out.dtype).min).all()


def test_class_means_are_renormalised_means_of_unit_exemplar_features() -> None:
    s = ICaRL(Net(), memory_size=100)
    s.attach(seed=0)
    t = task([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], [0, 0, 2], (0, 2))
    s.before_task(t)
    s.after_task(t)
    assert s.state.classes == [0, 2] and s.state.count == [2, 1]
    # class 0: units (1, 0) and (0, 1), mean (.5, .5), renormalised (1/√2, 1/√2); class 2: (.6, .8)
    r = 1 / math.sqrt(2)
    assert torch.allclose(s.state.means, torch.tensor([[r, r], [0.6, 0.8]]))
    assert s.state.width == 5 and s.state.old == [0, 2]


def test_loss_is_bce_with_one_hot_new_classes_and_distilled_old_ones() -> None:
    torch.manual_seed(0)
    s = ICaRL(Net(), memory_size=10)
    s.attach(seed=0)
    first = task([[1.0, 0.0], [0.0, 1.0]], [0, 1], (0, 1))
    s.before_task(first)
    s.after_task(first)
    teacher_head = (s.model.head.weight.detach().clone(), s.model.head.bias.detach().clone())
    second = task([[1.0, 1.0], [2.0, 0.5]], [2, 3], (2, 3))
    s.before_task(second)
    with torch.no_grad():  # the student moves away from the teacher
        s.model.head.weight.add_(0.5)
    batch = Batch(second.train.x, second.train.y, second.train.t)
    logits = s.model(batch.x)
    got = s.loss(batch, logits)
    old = torch.sigmoid(F.linear(batch.x, *teacher_head)[:, [0, 1]])
    new = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # one-hot over classes 2, 3
    target = torch.cat([old, new], 1)
    z = logits[:, [0, 1, 2, 3]]
    expected = -(target * F.logsigmoid(z) + (1 - target) * F.logsigmoid(-z)).sum() / 2
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logits[:, 4].requires_grad  # class 4 exists in the head but is outside the loss


def test_a_model_without_features_gets_one_clear_error() -> None:
    s = build_strategy("icarl", nn.Linear(2, 5))
    with pytest.raises(ConfigError, match="features"):
        s.before_task(task([[1.0, 0.0]], [0], (0,)))


def test_class_il_acc_is_far_above_naive_on_real_digits() -> None:
    from tests.test_behaviour import matrix  # the behaviour test's stream, model and training

    def acc(name: str) -> float:
        R = matrix(name, "class")
        return sum(R[-1]) / len(R[-1])

    naive, icarl = acc("naive"), acc("icarl")
    assert naive < 0.3  # naive forgets all but the last task's classes
    assert icarl > naive + 0.4, f"icarl {icarl:.3f} vs naive {naive:.3f}"


@pytest.mark.parametrize("second_classes", [(2, 3), (4, 2)])  # seen classes a prefix, or not
def test_targets_computed_once_per_task_equal_the_teacher_on_each_batch(
        second_classes: tuple[int, ...]) -> None:
    """Alg. 3 computes q_i once per task: the loss of a batch the loop drew (with its rows'
    `index`) must equal the loss with the teacher run on that batch."""
    torch.manual_seed(0)
    s = ICaRL(Net(), memory_size=4)
    s.attach(seed=0)
    first = task([[1.0, 0.0], [0.0, 1.0], [0.5, 0.2]], [0, 1, 0], (0, 1))
    s.before_task(first)
    s.after_task(first)
    second = task([[1.0, 1.0], [2.0, 0.5], [0.3, 0.9]],
                  [second_classes[0], second_classes[1], second_classes[0]], second_classes)
    s.before_task(second)
    with torch.no_grad():  # the student moves away from the teacher
        s.model.head.weight.add_(0.5)
    seen: list[tuple[float, float]] = []

    class Loop:
        class cfg:  # noqa: N801 - the one field train_task reads
            eval_batch_size = 2  # several chunks

        def run_epochs(self, data: TensorData) -> None:
            assert len(data) == 3 + 3  # the task plus every exemplar of the first task
            idx = torch.tensor([4, 0, 5, 2])
            drawn = data.batch(idx)
            by_hand = Batch(drawn.x, drawn.y, drawn.t)  # no index: the teacher runs now
            logits = s.model(drawn.x)
            seen.append((s.loss(drawn, logits).item(), s.loss(by_hand, logits).item()))

    s.train_task(second, Loop())  # type: ignore[arg-type]
    (cached, direct), = seen
    assert cached == pytest.approx(direct, rel=1e-6)
    assert s._targets is None  # released after the task
