"""Regenerate `docs/report.png`: a screenshot of the HTML report of a small real store.

Runs `forgetting --quick` and `single --quick` (naive and ewc on permuted digits), two seeds
each, into a temporary store, writes the report with `lifelong.report.write_report`, and
photographs the whole page at 1200 px wide in headless Chromium (Playwright). Needs the real
data (LIFELONG_DATA pointing at shared/data) and a Chromium; about a minute on 2 cores.

    LIFELONG_DATA=../shared/data python docs/make_report_screenshot.py [--chromium PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lifelong.report import write_report
from lifelong.run.runner import execute, plan

HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--out", type=Path, default=HERE / "report.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        store, out = Path(tmp) / "store.sqlite", Path(tmp) / "out"
        for p in (plan("forgetting", quick=True, seeds=[0, 1]),
                  plan("single", quick=True, seeds=[0, 1], strategies=["naive", "ewc"])):
            execute(p, store_path=store, out_dir=out, progress=False)
        html = write_report(store, Path(tmp) / "report.html")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(html.as_uri())
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
