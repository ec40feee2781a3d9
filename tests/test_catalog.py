"""`lifelong list`: summaries are whole sentences, models declare their departures, the `train`
options and the image sources are listed, and docs/methods.md is what the cards give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.cli import main
from lifelong.cli.catalog import catalog, first_sentence, format_catalog, methods_markdown
from lifelong.train import TrainConfig


@pytest.mark.parametrize(("doc", "summary"), [
    ("One line.\n\nMore.", "One line."),
    ("Expansion on demand (Sodhani, Chandar & Bengio 2018, §3), with\nNet2Net's widening "
     "(Chen et al. 2016).\n\nArgs: ...", "Expansion on demand (Sodhani, Chandar & Bengio "
     "2018, §3), with Net2Net's widening (Chen et al. 2016)."),
    ("Replay, e.g. Fig. 2 of Smith et al. 2019. Then more.", "Replay, e.g. Fig. 2 of Smith "
     "et al. 2019."),
    ("Two sentences here. The second\nwraps.", "Two sentences here."),
    ("no stop at all\nbut two lines", "no stop at all but two lines"),
    ("", ""),
])
def test_first_sentence_never_stops_where_a_line_wraps(doc: str, summary: str) -> None:
    assert first_sentence(doc) == summary


def test_every_summary_from_a_docstring_is_a_whole_sentence() -> None:
    cat = catalog()
    for section in ("streams", "sources", "models", "strategies"):
        for name, info in cat[section].items():
            text = info["summary"]
            assert text and text.endswith((".", "!", "?")), (section, name, text)
            assert not text.endswith((" a.", " with.", " the.")), (section, name, text)
    net2net = cat["strategies"]["net2net"]["summary"]
    assert net2net.endswith(".") and not net2net.endswith("with a")


def test_models_declare_their_departures() -> None:
    models = catalog()["models"]
    memnet = " ".join(models["memnet"]["departures"])
    assert "pe_formula" in memnet and "authors' released code" in memnet
    assert "answers" in memnet and "outputs=words" in memnet
    assert models["mlp"]["departures"] == []


def test_train_options_with_defaults_and_meanings() -> None:
    train = catalog()["train"]
    defaults = TrainConfig()
    for name, info in train.items():
        assert info["default"] == getattr(defaults, name), name
        assert info["meaning"], name
    assert {"epochs", "batch_size", "lr", "optimizer", "grad_clip", "device"} <= set(train)
    assert train["lr_decay_every"]["meaning"].startswith("multiply the learning rate")


def test_sources_are_listed() -> None:
    sources = catalog()["sources"]
    assert {"digits", "mnist", "mnist-10k", "fashion-mnist"} <= set(sources)
    assert "60000" in sources["mnist"]["summary"]


def test_the_text_and_json_show_the_new_sections(capsys: pytest.CaptureFixture[str]) -> None:
    text = format_catalog(catalog())
    assert "\nsources:\n" in text and "\ntrain:\n" in text
    assert "departs from the paper: position encoding" in text
    assert main(["list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["train"]["batch_size"]["default"] == 32 and "memnet" in doc["models"]


def test_the_methods_page_is_generated_from_the_cards() -> None:
    # Typed by hand it would drift: `make docs` (`lifelong list --markdown`) regenerates it.
    page = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
    cat = catalog()
    assert page.read_text() == methods_markdown(cat), "docs/methods.md is stale: run make docs"
    for name, info in cat["strategies"].items():
        assert f"| `{name}` |" in page.read_text() and info["family"], name
