"""The `generative-replay` experiment: the plan (DGR and DGR+distill, ER byte-matched to one
VAE), and a quick run end to end: the table, the references with ours beside them, the ACC
figure and one sample grid per DGR run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.cli import main
from lifelong.experiments.generative_replay import er_memory_size, vae_parameters
from lifelong.models.vae import VAE
from lifelong.runner import plan


def test_vae_parameter_count_matches_the_module() -> None:
    for pixels, shape in ((64, (1, 8, 8)), (784, (1, 28, 28))):
        vae = VAE(shape, latent=32, hidden=(400,))
        assert vae_parameters(pixels, 32, 400) == sum(p.numel() for p in vae.parameters())


def test_plan_runs_dgr_twice_and_er_with_the_bytes_of_one_vae() -> None:
    p = plan("generative-replay", quick=True)
    labels = {(r.label, r.config["stream"]["name"]) for r in p.runs}
    assert {lab for lab, _ in labels} == {"naive", "joint", "er", "dgr distill=false",
                                          "dgr distill=true"}
    assert {s for _, s in labels} == {"split", "permuted"}
    split = next(r for r in p.runs if r.config["stream"]["name"] == "split")
    assert split.config["stream"]["scenario"] == "class"
    er = next(r for r in p.runs if r.strategy == "er")
    assert er.config["strategy"]["memory_size"] == er_memory_size(64, 5)
    # ER's memories in all: about the bytes of one VAE (float32 parameters).
    kept = 5 * er.config["strategy"]["memory_size"] * (4 * 64 + 16)
    assert abs(kept - 4 * vae_parameters(64, 32, 400)) < 0.01 * kept
    # a user's own memory size wins over the matched one
    p = plan("generative-replay", quick=True, sets=["strategies.er.memory_size=7"])
    assert {r.config["strategy"]["memory_size"] for r in p.runs if r.strategy == "er"} == {7}


def test_quick_run_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "generative-replay", "--quick", "--set", "options.streams=[split]",
                 "--json", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    runs = {r["label"]: r for r in doc["runs"]}
    assert set(runs) == {"naive", "joint", "er", "dgr distill=false", "dgr distill=true"}
    assert all(r["scenario"] == "class" for r in runs.values())
    rows = {" ".join(line.split()[1:-5]): line for line in doc["table"].splitlines()[1:]}
    assert set(rows) == set(runs)
    assert f"{runs['dgr distill=true']['acc']:.3f}" in rows["dgr distill=true"]
    hsu = next(r for r in doc["references"] if r["label"] == "DGR ACC, split MNIST, class-IL"
               and r["source"].startswith("Hsu"))
    assert hsu["published"] == 0.912
    assert hsu["ours"] == pytest.approx(runs["dgr distill=false"]["acc"])
    figures = [Path(f) for f in doc["figures"]]
    grids = [f for f in figures if f.name.startswith("samples_")]
    assert len(grids) == 2 and all(f.stat().st_size > 5000 for f in grids)
    assert any(f.name == "generative_replay.png" for f in figures)
    # DGR's generator time is recorded per task with the run
    assert all("generator_seconds" in d for d in runs["dgr distill=false"]["diagnostics"])
