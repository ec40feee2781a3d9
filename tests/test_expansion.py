"""The `expansion` experiment, quick, end to end: every run carries its parameter count per
task in --json; PNN and Expert Gate grow with every task and forget nothing; Net2Net on demand
grows less; routing is measured for Expert Gate; the figure, PNN's published number (A-GEM's
PROG-NN row) and Expert Gate's published gate accuracies beside our routing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.cli import main


@pytest.mark.filterwarnings("ignore::lifelong.train.LifelongWarning")
def test_quick_run_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "expansion", "--quick", "--json", "--store",
                 str(tmp_path / "s.sqlite"), "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    runs = {r["label"]: r for r in doc["runs"]}
    assert set(runs) == {"naive", "ewc", "pnn", "expert-gate", "net2net retention=ewc",
                         "net2net retention=gem"}
    assert all(len(r["parameters"]) == len(r["matrix"]) - 1 == 5 for r in runs.values())
    assert len(set(runs["naive"]["parameters"])) == 1  # the fixed model
    for grows in ("pnn", "expert-gate"):
        p = runs[grows]["parameters"]
        assert all(a < b for a, b in zip(p, p[1:], strict=False)), (grows, p)
        assert runs[grows]["bwt"] == pytest.approx(0.0, abs=1e-12)  # nothing forgotten
    for n2n in ("net2net retention=ewc", "net2net retention=gem"):
        assert runs[n2n]["parameters"][-1] < runs["pnn"]["parameters"][-1]
    assert runs["pnn"]["acc"] > runs["naive"]["acc"]
    rows = {line[:22].strip(): line.split() for line in doc["table"].splitlines()[1:]}
    assert set(rows) == set(runs)
    assert rows["naive"][-1] == "-" and 0.5 < float(rows["expert-gate"][-1]) <= 1.0
    pnn = next(r for r in doc["references"] if r["label"].startswith("PNN"))
    assert pnn["published"] == 0.9355 and pnn["ours"] == pytest.approx(runs["pnn"]["acc"])
    # Expert Gate's published gate accuracies sit beside our routing column (its mean).
    gates = [r for r in doc["references"] if r["label"].startswith("Expert Gate routing")]
    assert sorted(r["published"] for r in gates) == [0.976, 0.992]
    assert all(r["ours"] == pytest.approx(float(rows["expert-gate"][-1]), abs=5e-4)
               for r in gates)
    assert all("AlexNet" in r["source"] for r in gates)
    assert any(Path(f).name == "expansion.png" for f in doc["figures"])
