"""Models that grow: Net2Net's wider and deeper keep the function and train afterwards, the
loop rebuilds the optimizer when the trainable set changes, a grown MLP loads into a fresh one
(also in a fresh process), and progressive columns keep old outputs bit-identical."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import Stream
from lifelong.epochs import TaskLoop, make_optimizer
from lifelong.errors import StateError
from lifelong.models.columns import Columns
from lifelong.models.mlp import MLP
from lifelong.strategies import build_strategy
from lifelong.strategies.base import Batch


def grown() -> tuple[MLP, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An MLP widened and deepened, inputs, task labels, and its outputs before growing."""
    torch.manual_seed(0)
    m = MLP((1, 8, 8), 10, 3, hidden=[16, 12])
    x = torch.rand(20, 1, 8, 8)
    t = torch.randint(3, (20,))
    before = m(x, t).detach()
    g = torch.Generator().manual_seed(1)
    m.wider(0, 24, generator=g)
    m.wider(1, 20, generator=g)  # the last hidden layer: the head's inputs widen
    m.deeper(0)
    m.deeper(2)
    return m, x, t, before


def test_wider_and_deeper_preserve_the_function_with_the_noise_off() -> None:
    m, x, t, before = grown()
    assert m.widths == [24, 24, 20, 20]
    assert torch.allclose(m(x, t), before, atol=1e-5, rtol=0)
    assert [op["op"] for op in m.growth] == ["wider", "wider", "deeper", "deeper"]


def test_noise_breaks_the_symmetry_of_the_copies_and_changes_the_function_a_little() -> None:
    torch.manual_seed(0)
    m = MLP((1, 8, 8), 10, 1, hidden=[16])
    x = torch.rand(20, 1, 8, 8)
    before = m(x).detach()
    m.wider(0, 32, generator=torch.Generator().manual_seed(1), noise=0.01)
    w = m.features[1].weight.detach()
    assert not any(torch.equal(w[j], w[i]) for j in range(16, 32) for i in range(16))
    change = (m(x) - before).abs().max()
    assert 0 < change < 0.1


def test_a_grown_model_trains_and_its_new_units_learn() -> None:
    m, x, _, _ = grown()
    y = torch.randint(10, (20,))
    new_rows = m.features[1].weight[16:].detach().clone()  # units added by wider
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(m(x, 0), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert not torch.equal(m.features[1].weight[16:], new_rows)


def test_the_loop_rebuilds_the_optimizer_when_the_model_grows() -> None:
    s = build_stream("split", source="digits", num_tasks=2, scenario="task", seed=0)
    model = build_model("mlp", s, hidden=[16], seed=0)
    strategy = build_strategy("naive", model)
    cfg = TrainConfig(epochs=1, device="cpu")
    loop = TaskLoop(strategy, s, s.tasks[0], cfg, make_optimizer(strategy, cfg), 0, [], 0)
    assert not loop.refresh_optimizer()
    model.wider(0, 24, generator=torch.Generator().manual_seed(0))
    assert loop.refresh_optimizer()
    held = {id(p) for g in loop.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters()}
    before = model.features[1].weight.detach().clone()
    loop.run_epochs(s.tasks[0].train, epochs=1)
    assert not torch.equal(before[16:], model.features[1].weight[16:])  # new units trained


def test_a_grown_mlp_loads_into_a_freshly_built_one() -> None:
    m, x, _, _ = grown()
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = MLP((1, 8, 8), 10, 3, hidden=[16, 12])
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.widths == m.widths and fresh.growth == m.growth
    assert torch.equal(fresh(x, 1), m(x, 1))
    with pytest.raises(StateError, match="options"):
        MLP((1, 8, 8), 10, 3, hidden=[16, 13]).load_state_dict(m.state_dict())


def test_a_grown_mlp_loads_in_a_fresh_process(tmp_path: Path) -> None:
    m, x, _, _ = grown()
    torch.save({"state": m.state_dict(), "x": x, "y": m(x, 2).detach()}, tmp_path / "m.pt")
    code = (
        "import torch, sys\n"
        "from lifelong.models.mlp import MLP\n"
        f"d = torch.load({str(tmp_path / 'm.pt')!r}, weights_only=True)\n"
        "m = MLP((1, 8, 8), 10, 3, hidden=[16, 12])\n"
        "m.load_state_dict(d['state'])\n"
        "sys.exit(0 if torch.equal(m(d['x'], 2), d['y']) else 1)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_progressive_columns_keep_old_outputs_bit_identical() -> None:
    s = build_stream("split", source="digits", num_tasks=3, scenario="task", seed=0)
    pnn = build_strategy("pnn", build_model("mlp", s, hidden=[32, 32], seed=0))
    cfg = TrainConfig(epochs=3, lr=0.1, device="cpu")

    def part(tasks: slice) -> Stream:
        return Stream(s.name, s.scenario, s.tasks[tasks], s.num_classes, s.num_outputs,
                      s.input_shape)

    x = s.tasks[0].test.x
    zeros = torch.zeros(len(x), dtype=torch.int64)
    fit_stream(pnn, part(slice(0, 1)), cfg, seed=0)
    after_one = pnn.predict(x, zeros).detach()
    frozen = [p.detach().clone() for p in pnn.model.columns[0].parameters()]
    rest = fit_stream(pnn, part(slice(1, 3)), cfg, seed=0)  # tasks 2 and 3
    assert isinstance(pnn.model, Columns) and pnn.model.num_columns == 3
    assert torch.equal(pnn.predict(x, zeros), after_one)
    assert all(torch.equal(a, b) for a, b in zip(frozen, pnn.model.columns[0].parameters(),
                                                 strict=True))
    whole = build_strategy("pnn", build_model("mlp", s, hidden=[32, 32], seed=0))
    result = fit_stream(whole, s, cfg, seed=0)
    R = result.matrix
    assert R[3][0] == R[1][0] and R[3][1] == R[2][1]  # nothing forgotten, exactly
    assert [c.parameters for c in result.costs] == sorted({c.parameters for c in result.costs})
    assert rest.matrix[-1][1] == R[3][2]  # the same run, in two calls


def test_pnn_trains_only_the_newest_column(tmp_path: Path) -> None:
    s = build_stream("split", source="digits", num_tasks=2, scenario="task", seed=0)
    pnn = build_strategy("pnn", build_model("mlp", s, hidden=[16], seed=0))
    pnn.attach(seed=0)
    pnn.before_task(s.tasks[1])
    trainable = {id(p) for p in pnn.trainable_parameters()}
    assert trainable == {id(p) for p in pnn.model.columns[1].parameters()}
    batch = Batch(s.tasks[1].train.x[:8], s.tasks[1].train.y[:8], s.tasks[1].train.t[:8])
    loss = pnn.loss(batch, pnn.model(batch.x, batch.t))
    loss.backward()
    assert all(p.grad is None for p in pnn.model.columns[0].parameters())


def digits_stream(num_tasks: int = 2) -> Stream:
    return build_stream("split", source="digits", num_tasks=num_tasks, scenario="task", seed=0)


@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")
@pytest.mark.parametrize("retention", ["naive", "ewc", "gem"])
def test_net2net_grows_only_when_the_threshold_is_missed(retention: str) -> None:
    s = digits_stream()
    cfg = TrainConfig(epochs=1, lr=0.1, device="cpu")
    never = build_strategy("net2net", build_model("mlp", s, hidden=[8], seed=0),
                           retention=retention, threshold=0.0)
    result = fit_stream(never, s, cfg, seed=0)
    assert never.state.growth == [] and len({c.parameters for c in result.costs}) == 1
    assert [d["growths"] for d in result.diagnostics] == [0.0, 0.0]
    always = build_strategy("net2net", build_model("mlp", s, hidden=[8], seed=0),
                            retention=retention, threshold=1.0, max_growth=2)
    result = fit_stream(always, s, cfg, seed=0)  # 100% on a task's data: out of reach here
    assert [d["growths"] for d in result.diagnostics] == [2.0, 2.0]
    assert [g["widths"] for g in always.state.growth] == [[8], [12], [16], [20]]  # +4 each
    assert result.costs[0].parameters < result.costs[1].parameters
    assert all(g["accuracy"] < 1.0 for g in always.state.growth)


@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")
def test_net2net_trains_the_new_units_after_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    s = digits_stream(1)
    model = build_model("mlp", s, hidden=[8], seed=0)
    grown: list[torch.Tensor] = []
    wider = MLP.wider

    def spy(self: MLP, *args: object, **kwargs: object) -> object:
        out = wider(self, *args, **kwargs)  # type: ignore[arg-type]
        grown.append(self.features[1].weight.detach().clone())
        return out

    monkeypatch.setattr(MLP, "wider", spy)
    n2n = build_strategy("net2net", model, threshold=1.0, max_growth=1)
    fit_stream(n2n, s, TrainConfig(epochs=2, lr=0.1, device="cpu"), seed=0)
    assert model.widths == [12] and len(grown) == 1
    assert not torch.allclose(model.features[1].weight[8:], grown[0][8:])


@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")
def test_a_grown_run_resumes_in_a_fresh_process(tmp_path: Path) -> None:
    # Saved after task 2 (grown), loaded by a new interpreter into a freshly built model and
    # strategy, task 3 finishes as in the uninterrupted run, bit for bit.
    s = digits_stream(3)
    cfg = TrainConfig(epochs=1, lr=0.1, device="cpu")

    def fresh() -> object:
        return build_strategy("net2net", build_model("mlp", s, hidden=[8], seed=0),
                              threshold=1.0, max_growth=1)

    whole = fresh()
    full = fit_stream(whole, s, cfg, seed=7)  # type: ignore[arg-type]
    first = fresh()
    fit_stream(first, Stream(s.name, s.scenario, s.tasks[:2], s.num_classes, s.num_outputs,
                             s.input_shape), cfg, seed=7)  # type: ignore[arg-type]
    torch.save(first.state_dict(), tmp_path / "state.pt")  # type: ignore[attr-defined]
    code = f"""
import sys, torch, warnings
warnings.simplefilter("ignore")
from lifelong import TrainConfig, build_model, build_stream, fit_stream
from lifelong.data.task import Stream
from lifelong.strategies import build_strategy
s = build_stream("split", source="digits", num_tasks=3, scenario="task", seed=0)
st = build_strategy("net2net", build_model("mlp", s, hidden=[8], seed=0), threshold=1.0,
                    max_growth=1)
st.load_state_dict(torch.load({str(tmp_path / 'state.pt')!r}, weights_only=True))
rest = Stream(s.name, s.scenario, s.tasks[2:], s.num_classes, s.num_outputs, s.input_shape)
r = fit_stream(st, rest, TrainConfig(epochs=1, lr=0.1, device="cpu"), seed=7)
print(repr(r.matrix[-1][0]), st.model.widths)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    value, widths = out.stdout.split(" ", 1)
    assert float(value) == full.matrix[-1][2]
    assert widths.strip() == str(whole.model.widths)  # type: ignore[attr-defined]
