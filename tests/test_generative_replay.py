"""The `generative-replay` experiment: van de Ven & Tolias' protocol in the plan (2000
iterations per task, Adam, batch 128, their VAE, iCaRL's 2000 exemplars in class-IL only, the
three scenarios), their table as references, ER byte-matched to one VAE, and a quick run end
to end: the table, the references with ours beside them, the ACC figure and one sample grid per
DGR run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.cli import main
from lifelong.experiments.generative_replay import GenerativeReplay, er_memory_size, vae_parameters
from lifelong.models.vae import VAE
from lifelong.run.runner import plan


@pytest.mark.parametrize("layers", [1, 2])
def test_vae_parameter_count_matches_the_module(layers: int) -> None:
    for pixels, shape in ((64, (1, 8, 8)), (784, (1, 28, 28))):
        vae = VAE(shape, latent=100, hidden=(400,) * layers)
        assert vae_parameters(pixels, 100, 400, layers) == sum(
            p.numel() for p in vae.parameters())


def test_the_default_plan_is_van_de_ven_and_tolias_protocol() -> None:
    p = plan("generative-replay")  # planning loads no data
    train = p.runs[0].config["train"]
    assert (train["steps_per_task"], train["batch_size"], train["optimizer"], train["lr"]) == (
        2000, 128, "adam", 0.001)
    assert all(r.config["train"] == train for r in p.runs)
    assert all(r.config["stream"]["source"] == "mnist" for r in p.runs)
    assert all(r.config["model"]["hidden"] == [400, 400] for r in p.runs)
    cells = {(r.label, r.config["stream"]["scenario"]) for r in p.runs}
    for scenario in ("task", "domain", "class"):
        assert {(m, scenario) for m in ("naive", "joint", "er", "dgr distill=false",
                                        "dgr distill=true")} <= cells
    assert ("icarl", "class") in cells and ("icarl", "task") not in cells
    for r in p.runs:
        if r.strategy == "dgr":  # their VAE: 2 hidden layers of 400 and a 100-d code, T = 2
            s = r.config["strategy"]
            assert (s["layers"], s["width"], s["latent"], s["temperature"]) == (2, 400, 100, 2.0)
        if r.strategy == "icarl":
            assert r.config["strategy"]["memory_size"] == 2000
        if r.strategy == "er":  # the bytes of their VAE, in 28x28 examples
            assert r.config["strategy"]["memory_size"] == er_memory_size(784, 5) > 200
    # --quick: the same protocol on the embedded digits, fewer steps, a narrower VAE
    q = plan("generative-replay", quick=True)
    assert {r.config["train"]["steps_per_task"] for r in q.runs} == {100}
    assert {r.config["strategy"]["layers"] for r in q.runs if r.strategy == "dgr"} == {2}


def test_references_are_their_table_with_blank_cells_left_out() -> None:
    refs = {(r.label, r.value): r for r in GenerativeReplay.references}
    vdv = {k: r for k, r in refs.items() if r.source.startswith("van de Ven")}
    assert vdv[("DGR ACC, split MNIST, class-IL", 0.9079)].ours == \
        "dgr distill=false/split-class/acc"
    assert vdv[("DGR+distill ACC, split MNIST, domain-IL", 0.9683)].ours == \
        "dgr distill=true/split-domain/acc"
    assert vdv[("iCaRL (budget 2000) ACC, split MNIST, class-IL", 0.9457)].ours == \
        "icarl/split-class/acc"
    assert "(rounded)" in vdv[("None (fine-tuning) ACC, split MNIST, task-IL", 0.872)].source
    assert not any("iCaRL" in label and "class" not in label for label, _ in vdv)
    assert len(vdv) == 3 + 3 + 3 + 1


def test_plan_runs_dgr_twice_and_er_with_the_bytes_of_one_vae() -> None:
    p = plan("generative-replay", quick=True, sets=["options.streams=[split,permuted]",
                                                    "options.scenarios=[class]"])
    labels = {(r.label, r.config["stream"]["name"]) for r in p.runs}
    assert {lab for lab, _ in labels} == {"naive", "joint", "er", "dgr distill=false",
                                          "dgr distill=true", "icarl"}
    assert {s for _, s in labels} == {"split", "permuted"}
    er = next(r for r in p.runs if r.strategy == "er")
    assert er.config["strategy"]["memory_size"] == er_memory_size(64, 5, latent=32, width=100)
    # ER's memories in all: about the bytes of one VAE (float32 parameters).
    kept = 5 * er.config["strategy"]["memory_size"] * (4 * 64 + 16)
    assert abs(kept - 4 * vae_parameters(64, 32, 100, 2)) < 0.01 * kept
    # a user's own memory size wins over the matched one
    p = plan("generative-replay", quick=True, sets=["strategies.er.memory_size=7"])
    assert {r.config["strategy"]["memory_size"] for r in p.runs if r.strategy == "er"} == {7}


def test_a_bad_scenario_option_is_one_clear_problem() -> None:
    from lifelong.errors import ConfigError

    with pytest.raises(ConfigError, match=r"options.scenarios=\['klass'\] must list"):
        plan("generative-replay", quick=True, sets=["options.scenarios=[klass]"])


def test_quick_run_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "generative-replay", "--quick", "--set", "options.scenarios=[class]",
                 "--json", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    runs = {r["label"]: r for r in doc["runs"]}
    assert set(runs) == {"naive", "joint", "er", "dgr distill=false", "dgr distill=true",
                         "icarl"}
    assert all(r["scenario"] == "class" for r in runs.values())
    rows = {line.split()[1] + (" " + line.split()[2] if line.split()[1] == "dgr" else ""): line
            for line in doc["table"].splitlines()[1:]}
    assert set(rows) == set(runs)
    assert f"{runs['dgr distill=true']['acc']:.3f}" in rows["dgr distill=true"]
    assert rows["dgr distill=true"].split()[-1] == "0.9179"  # theirs beside ours
    assert rows["joint"].split()[-1] == "-"
    vdv = next(r for r in doc["references"] if r["label"] == "DGR ACC, split MNIST, class-IL"
               and r["source"].startswith("van de Ven"))
    assert vdv["published"] == 0.9079
    assert vdv["ours"] == pytest.approx(runs["dgr distill=false"]["acc"])
    figures = [Path(f) for f in doc["figures"]]
    grids = [f for f in figures if f.name.startswith("samples_")]
    assert len(grids) == 2 and all(f.stat().st_size > 5000 for f in grids)
    assert any(f.name == "generative_replay.png" for f in figures)
    # DGR's generator time is recorded per task with the run
    assert all("generator_seconds" in d for d in runs["dgr distill=false"]["diagnostics"])


def test_one_dgr_variant_chosen_by_set_still_meets_its_published_row(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "generative-replay", "--quick", "--set", "options.scenarios=[class]",
                 "--strategies", "dgr", "--set", "strategies.dgr.distill=true",
                 "--set", "train.steps_per_task=5", "--json", "--store",
                 str(tmp_path / "s.sqlite"), "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    (run,) = doc["runs"]
    ref = next(r for r in doc["references"] if r["label"].startswith("DGR+distill ACC")
               and r["label"].endswith("class-IL"))
    assert ref["ours"] == pytest.approx(run["acc"])
