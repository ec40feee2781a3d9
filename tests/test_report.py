"""Tests of the HTML report: numbers against the stored matrices, escaping, published vs ours,
atomic writing, and the page as a real browser draws it."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import pytest

from lifelong.errors import StateError
from lifelong.metrics import acc, bwt
from lifelong.report import write_report
from lifelong.store import NewRun, Store

SCRIPT_LABEL = "<script>alert(1)</script>"
ERROR_HTML = '<img src=x onerror="alert(2)"> boom'
# Two seeds of one hand-written comparison in an experiment no registry knows.
USER_RUNS = {
    "user-0": [[0.1, 0.1], [0.8, 0.2], [0.6, 0.9]],
    "user-1": [[0.1, 0.1], [0.9, 0.3], [0.5, 0.7]],
}
CHROMIUM = "/usr/bin/chromium"


class Page(HTMLParser):
    """The parts of a report a test reads: every start tag, the text, and each table's cells
    with the section (h2) it is in and its class."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.tables: list[tuple[str, str, list[list[str]]]] = []  # (section, class, rows)
        self._section = ""
        self._in: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "h2":
            self._in, self._section = "h2", ""
        elif tag == "table":
            self.tables.append((self._section, dict(attrs).get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][2].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][2][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in == "h2":
            self._section += data.strip()
        if self._cell is not None:
            self._cell.append(data)

    def table(self, section: str, cls: str) -> list[dict[str, str]]:
        """The rows of the one table of class `cls` in `section`, as header → cell."""
        [rows] = [t[2] for t in self.tables if t[0] == section and t[1] == cls]
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def add_user_runs(store: Store) -> None:
    """Write runs directly: a completed comparison of two seeds labelled with a script tag,
    and a failed run whose error holds markup."""
    stream = {"name": "toy", "num_tasks": 2}
    for seed, (rid, matrix) in enumerate(USER_RUNS.items()):
        store.begin(NewRun(rid, experiment="user-exp", strategy="naive", stream="toy",
                           seed=seed, config={"stream": stream}, num_tasks=2,
                           label=SCRIPT_LABEL))
        for row, accs in enumerate(matrix):
            costs = ({"train_seconds": 1.0 + seed + row, "peak_memory_bytes": row * 2.0**20,
                      "parameters": 100.0 * row} if row else None)
            store.record_row(rid, row=row, accuracies=accs, costs=costs)
        store.finish_run(rid, metrics={"acc": acc(matrix)})
    store.begin(NewRun("user-bad", experiment="user-exp", strategy="naive", stream="toy",
                       seed=2, config={"stream": stream}, num_tasks=2, label=SCRIPT_LABEL))
    store.record_row("user-bad", row=0, accuracies=[0.1, 0.1])
    store.fail_run("user-bad", error=ERROR_HTML)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with real quick runs of `single` (naive, seeds 0 and 1) and `forgetting`
    (naive and joint, seed 0, with its figure), plus the hand-written `user-exp` runs."""
    from lifelong.run.runner import execute, plan

    root = tmp_path_factory.mktemp("report")
    path = root / "s.sqlite"
    execute(plan("single", quick=True, sets=["strategy.name=naive"], seeds=[0, 1]),
            store_path=path, out_dir=root / "out", progress=False)
    execute(plan("forgetting", quick=True, seeds=[0]), store_path=path, out_dir=root / "out",
            progress=False)
    with Store(path) as store:
        add_user_runs(store)
    return path


@pytest.fixture(scope="module")
def report(store_path: Path) -> tuple[Path, Page]:
    out = write_report(store_path, store_path.parent / "report.html")
    return out, Page(out.read_text(encoding="utf-8"))


def test_comparison_shows_mean_and_std_of_acc_over_seeds(store_path: Path,
                                                         report: tuple[Path, Page]) -> None:
    with Store(store_path, create=False) as store:
        runs = [store.get_run(r.run_id) for r in store.list_runs(experiment="single")]
    assert len(runs) == 2
    accs = [acc(r.matrix) for r in runs]
    bwts = [bwt(r.matrix) for r in runs]
    [row] = report[1].table("single", "comparisons")
    assert row["label"] == "naive"
    assert row["seeds"] == "2"
    assert row["ACC"] == f"{fmean(accs):.3f} ± {stdev(accs):.3f}"
    assert row["BWT"] == f"{fmean(bwts):.3f} ± {stdev(bwts):.3f}"
    train = fmean(sum(r.costs[t]["train_seconds"] for t in range(3)) for r in runs)
    assert row["train s (total)"] == f"{train:,.2f}"


def test_costs_and_metrics_of_hand_written_runs(report: tuple[Path, Page]) -> None:
    [row] = report[1].table("user-exp", "comparisons")
    # ACC: seed 0 (0.6 + 0.9)/2 = 0.75, seed 1 (0.5 + 0.7)/2 = 0.6 → mean 0.675, std 0.106.
    assert row["ACC"] == "0.675 ± 0.106"
    # BWT: 0.6 − 0.8 = −0.2 and 0.5 − 0.9 = −0.4 → −0.3 ± 0.141.
    assert row["BWT"] == "-0.300 ± 0.141"
    # Train seconds: seed 0 (2 + 3), seed 1 (3 + 4) → mean 6; peak 2 MiB; 200 parameters.
    assert (row["train s (total)"], row["peak memory MB"], row["parameters"]) == (
        "6.00", "2.0", "200")


def test_user_strings_are_escaped_and_no_script_exists(report: tuple[Path, Page]) -> None:
    out, page = report
    raw = out.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "<script" not in raw.lower()
    assert [t for t, _ in page.tags if t == "script"] == []
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    [row] = page.table("user-exp", "comparisons")
    assert row["label"] == SCRIPT_LABEL  # shown as text
    [failed] = page.table("user-exp", "unfinished")
    assert (failed["status"], failed["error"]) == ("failed", ERROR_HTML)
    assert [src for t, a in page.tags if t == "img" for src in [a["src"]]
            if not (src or "").startswith("data:image/png;base64,")] == []


def test_published_vs_ours(store_path: Path, report: tuple[Path, Page]) -> None:
    with Store(store_path, create=False) as store:
        [naive] = [store.get_run(r.run_id) for r in store.list_runs(experiment="forgetting")
                   if r.strategy == "naive"]
    refs = {r["measure"]: r for r in report[1].table("forgetting", "references")}
    row = refs["naive: task-1 accuracy after task 2"]
    ours = naive.matrix[2][0]
    assert (row["published"], row["ours ± std"]) == ("0.42", f"{ours:.3f}")
    assert row["gap (points)"] == f"{100 * (ours - 0.42):+.1f}"
    assert row["pass/miss"] == ("pass" if abs(ours - 0.42) <= 0.02 else "miss")
    assert "plain PyTorch loop" in row["source"] and "baseline measured here" in row["source"]
    # the page's score table holds the same row, as `lifelong reproduce` prints it
    score = {r["measure"]: r for r in report[1].table("Reproduction score", "score")}
    assert score["naive: task-1 accuracy after task 2"]["ours ± std"] == f"{ours:.3f}"
    text = " ".join(" ".join(report[1].text).split())
    assert "not a paper's" in text  # the protocol note
    assert "Not in the experiment registry" in text  # user-exp
    assert [t for t in report[1].tables if t[0] == "user-exp" and t[1] == "references"] == []


def test_a_failing_ours_shows_dashes(store_path: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from lifelong.experiments import EXPERIMENTS


    def broken(self: Any, outcomes: Any) -> dict[str, float]:
        raise KeyError("seed 1")

    monkeypatch.setattr(EXPERIMENTS.get("forgetting"), "ours", broken)
    page = Page(write_report(store_path, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert {r["ours ± std"] for r in page.table("forgetting", "references")} == {"-"}
    assert "KeyError: 'seed 1'" in " ".join(page.text)


def test_empty_store_gives_a_valid_page_and_missing_store_fails(tmp_path: Path) -> None:
    Store(tmp_path / "empty.sqlite").close()
    page = Page(write_report(tmp_path / "empty.sqlite", tmp_path / "r.html").read_text())
    assert "holds no runs yet" in " ".join(page.text)
    assert page.tables == []
    with pytest.raises(StateError, match="no results store here"):
        write_report(tmp_path / "missing.sqlite", tmp_path / "r2.html")
    assert not (tmp_path / "missing.sqlite").exists() and not (tmp_path / "r2.html").exists()


@pytest.mark.parametrize("where", ["render", "replace"])
def test_failure_leaves_the_old_report_untouched(store_path: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 where: str) -> None:
    out = tmp_path / "report.html"
    out.write_text("old report")

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    if where == "render":  # a heatmap fails half way through the page
        monkeypatch.setattr("lifelong.plots.matrix_heatmap", fail)
    else:  # the page is complete; moving it into place fails (figures still save)
        real = os.replace

        def replace(src: Any, dst: Any) -> None:
            if Path(dst) == out:
                fail()
            real(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(store_path, out)
    assert out.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary left


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
def test_browser_draws_tables_and_every_image(report: tuple[Path, Page], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    out, page = report
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(out.as_uri(), wait_until="load")
            shot = tab.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            sections = tab.locator("section.experiment h2").all_inner_texts()
            tables = tab.locator("table.comparisons").count()
            heatmaps = tab.locator("figure.heatmap img").count()
            stored = tab.locator("figure.stored img").count()
            images = tab.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])")
            scripts = tab.locator("script").count()
            label = tab.locator("table.comparisons td", has_text="alert(1)").all_inner_texts()
        finally:
            browser.close()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert sections == ["forgetting", "single", "user-exp"]
    assert tables == 3
    assert heatmaps == 4  # forgetting: naive, joint; single: naive; user-exp: one
    assert stored == 1  # forgetting.png
    assert len(images) == heatmaps + stored
    assert [alt for alt, ok in images if not ok] == []
    assert all(alt for alt, _ in images)
    assert scripts == 0 and label == [SCRIPT_LABEL]
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []


def test_header_names_store_runs_and_version(store_path: Path,
                                             report: tuple[Path, Page]) -> None:
    from lifelong import __version__

    text = report[1].text
    assert str(store_path.resolve()) in text
    assert "7 (6 completed, 1 failed)" in text  # 2 single + 2 forgetting + 3 user-exp
    assert __version__ in text


def test_the_report_file_gets_the_usual_permissions(report: tuple[Path, Page]) -> None:
    # Written through a private temporary file, it must still be readable as any file the
    # user writes (the umask decides), not left 0600.
    mask = os.umask(0)
    os.umask(mask)
    assert report[0].stat().st_mode & 0o777 == 0o666 & ~mask
