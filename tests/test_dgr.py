"""Deep generative replay: the VAE learns and samples in the data's range, the generator still
produces task-1 images after task 2 thanks to replay, DGR far above naive in class-IL, one
clear error when the generator diverges or the images are out of range, and the state round
trip. (Resume bit-identical and every scenario come from the strategy contract test.)"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import Stream, Task, TensorData
from lifelong.errors import ConfigError, DataError, DivergenceError
from lifelong.models.vae import VAE
from lifelong.strategies import build_strategy
from tests.conftest import shared_data_or_skip

CFG = TrainConfig(epochs=10, batch_size=32, lr=0.1, device="cpu")


def two_tasks() -> Stream:
    shared_data_or_skip("mnist-t10k")
    return build_stream("split", source="mnist-10k", num_tasks=2, train_per_task=600,
                        test_per_task=300, scenario="class", seed=3)


def train_vae(data: torch.Tensor, steps: int, seed: int = 0, lr: float = 3e-3
              ) -> tuple[VAE, list[float]]:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = VAE(tuple(data.shape[1:]))
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(data), (32,), generator=g)
        opt.zero_grad()
        loss = vae.loss(data[idx], torch.randn(32, vae.latent, generator=g))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return vae, losses


def test_vae_loss_decreases_and_samples_have_the_datas_shape_and_range() -> None:
    data = build_stream("split", source="digits", num_tasks=1, classes_per_task=10,
                        seed=0).tasks[0].train.x
    vae, losses = train_vae(data, 200)
    assert sum(losses[-20:]) / 20 < 0.85 * sum(losses[:20]) / 20
    x = vae.sample(16, torch.Generator().manual_seed(1))
    assert x.shape == (16, *data.shape[1:]) and x.dtype == data.dtype
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    # the same draws give the same images; the global RNG is not used
    state = torch.get_rng_state()
    assert torch.equal(x, vae.sample(16, torch.Generator().manual_seed(1)))
    assert torch.equal(state, torch.get_rng_state())


def test_the_generator_still_draws_task_one_after_task_two_with_replay() -> None:
    # A classifier trained on real images of both tasks' digits labels the generated images:
    # how often does it see a task-1 digit? A VAE trained on task 1 then on task 2 without
    # replay: almost never (it forgot). DGR's generator, trained on task 2 plus its replay of
    # task 1: ten times as often and more, and not far from a VAE trained on both tasks' real
    # images at once with as many steps (blurry samples lean towards some digits, so even
    # that one does not reach one half).
    s = two_tasks()
    epochs, lr = 20, 1e-3  # DGR's default generator_lr
    x = torch.cat([t.train.x for t in s.tasks])
    y = torch.cat([t.train.y for t in s.tasks])
    clf = build_model("mlp", s, hidden=[100], seed=1)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(clf.parameters(), lr=0.1)
    for _ in range(10):
        for idx in torch.randperm(len(y), generator=g).split(32):
            opt.zero_grad()
            F.cross_entropy(clf(x[idx]), y[idx]).backward()
            opt.step()

    def task_one_share(vae: VAE) -> float:
        with torch.no_grad():
            images = vae.sample(500, torch.Generator().manual_seed(1))
            return float((clf(images).argmax(1) < 2).float().mean())

    dgr = build_strategy("dgr", build_model("mlp", s, hidden=[100], seed=0), generator_lr=lr)
    fit_stream(dgr, s, TrainConfig(epochs=epochs, batch_size=32, lr=0.1, device="cpu"), seed=0)
    assert dgr.vae is not None
    steps = epochs * -(-len(s.tasks[0].train.x) // 32)
    forgot, _ = train_vae(s.tasks[0].train.x, steps, lr=lr)
    opt2 = torch.optim.Adam(forgot.parameters(), lr=lr)
    for _ in range(steps):  # then task 2 alone
        idx = torch.randint(len(s.tasks[1].train.x), (32,), generator=g)
        opt2.zero_grad()
        forgot.loss(s.tasks[1].train.x[idx], torch.randn(32, 32, generator=g)).backward()
        opt2.step()
    both, _ = train_vae(x, 2 * steps, lr=lr)
    ours, without, ceiling = task_one_share(dgr.vae), task_one_share(forgot), task_one_share(both)
    assert ours > 0.1 and ours > 10 * max(without, 0.005) and ours > 0.5 * ceiling, (
        ours, without, ceiling)


def test_class_il_acc_is_far_above_naive_on_real_digits() -> None:
    from tests.test_behaviour import matrix  # the behaviour test's stream, model and training

    def acc(name: str) -> float:
        R = matrix(name, "class")
        return sum(R[-1]) / len(R[-1])

    assert acc("dgr") > acc("naive") + 0.4, (acc("dgr"), acc("naive"))


def test_a_diverging_generator_stops_with_one_clear_error_naming_the_option() -> None:
    s = build_stream("split", source="digits", num_tasks=2, scenario="class", seed=0)
    dgr = build_strategy("dgr", build_model("mlp", s, hidden=[32], seed=0), generator_lr=1e6)
    with pytest.raises(DivergenceError, match=r"generator's loss became .*strategy\.generator_lr"):
        fit_stream(dgr, s, TrainConfig(epochs=3, batch_size=32, lr=0.1, device="cpu"), seed=0)


def test_images_outside_the_unit_range_get_one_clear_error() -> None:
    s = build_stream("split", source="digits", num_tasks=2, scenario="class", seed=0)
    t = s.tasks[0]
    scaled = Task(key=t.key, index=0, train=TensorData(t.train.x * 2 - 1, t.train.y, t.train.t),
                  test=t.test, classes=t.classes)
    bad = Stream(s.name, s.scenario, (scaled,), s.num_classes, s.num_outputs, s.input_shape)
    dgr = build_strategy("dgr", build_model("mlp", s, hidden=[32], seed=0))
    with pytest.raises(DataError, match=r"pixels in \[0, 1\].*\[-1, 1\]"):
        fit_stream(dgr, bad, TrainConfig(epochs=1, device="cpu"), seed=0)


def test_state_round_trip_keeps_the_generator() -> None:
    s = build_stream("split", source="digits", num_tasks=2, scenario="class", seed=0)
    a = build_strategy("dgr", build_model("mlp", s, hidden=[32], seed=0), latent=8, width=64)
    fit_stream(a, s, TrainConfig(epochs=1, device="cpu"), seed=0)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = build_strategy("dgr", build_model("mlp", s, hidden=[32], seed=5), latent=8, width=64)
    b.load_state_dict(torch.load(buf, weights_only=True))
    labels = sorted({int(v) for t in s.tasks for v in t.train.y.tolist()})
    assert b.state.tasks == 2 and b.state.outputs == labels == a.state.outputs
    assert b.state.generator is not None and set(b.state.generator) == set(a.state.generator)
    b.vae = b.build_generator(s.input_shape)  # what before_task does with the saved weights
    one, two = (st.sample(4, torch.Generator().manual_seed(2)) for st in (a, b))
    assert one is not None and two is not None and torch.equal(one, two)


def test_layers_and_latent_give_van_de_ven_and_tolias_vae() -> None:
    # Their generator: 2 hidden layers of 400 each way and a 100-d code.
    s = build_stream("split", source="digits", num_tasks=2, scenario="class", seed=0)
    dgr = build_strategy("dgr", build_model("mlp", s, hidden=[32], seed=0), latent=100,
                         width=400, layers=2)
    with pytest.warns(UserWarning, match=r"too little training \(train.steps_per_task=2\)"):
        fit_stream(dgr, s, TrainConfig(steps_per_task=2, device="cpu"), seed=0)
    assert dgr.vae is not None
    encoder = [m for m in dgr.vae.encoder.modules() if isinstance(m, torch.nn.Linear)]
    decoder = [m for m in dgr.vae.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in encoder] == [(64, 400), (400, 400)]
    assert dgr.vae.posterior.out_features == 200  # mean and log-variance of a 100-d code
    assert [(m.in_features, m.out_features) for m in decoder] == [(100, 400), (400, 400),
                                                                 (400, 64)]
    with pytest.raises(ConfigError, match="layers=0 must be a positive integer"):
        build_strategy("dgr", build_model("mlp", s, hidden=[32], seed=0), layers=0)


def test_catalog_line_is_one_sentence_and_departures_are_declared() -> None:
    from lifelong.strategies import STRATEGIES

    cls = STRATEGIES.get("dgr")
    first = (cls.__doc__ or "").strip().splitlines()[0]
    assert first.endswith(".") and first.count("(") == first.count(")"), first
    text = " ".join(cls.card.departures)
    for what in ("1 - 1/k", "two hidden layers of 400", "task-IL", "one past task's head"):
        assert what in text, what
