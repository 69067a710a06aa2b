"""What a reviewer waits for in a real browser: headless Chromium (Debian's package, driven by
Playwright) against ``python app.py`` on the committed indexes.

    python -m benchmarks.bench_browser [--repeats 5]     # JSON on stdout, progress on stderr
    python -m benchmarks.run --only browser              # the same as a section of BENCHMARKS.md

Each figure is the median of ``--repeats`` runs with min and max, after one warm-up run:
query to results (a new query each time), the detail view's first open on a fresh page and a
later open, a Geometry retriever switch, and a corpus switch. Timed from the user's action to
the moment the page shows the answer.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.soak import launch_app
from benchmarks.stats import figure

log = logging.getLogger("benchmarks.browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
QUERIES = ["an elephant", "a frog", "a red fire truck", "a bicycle", "a guitar", "a crow", "a teapot"]
TIMEOUT_MS = 120_000
#: Cold start on a loaded 2-core machine can take minutes (importing torch and gradio).
STARTUP_TIMEOUT_S = 600


@dataclass
class BrowserConfig:
    repeats: int


QUICK = BrowserConfig(repeats=2)
FULL = BrowserConfig(repeats=5)
#: What each figure times, for the report.
LABELS = {"query_to_results": "query typed and submitted to its results on screen",
          "detail_first_open": "detail view, first open on a fresh page (card click to caption shown)",
          "detail_later_open": "detail view, a later open",
          "geometry_switch": "Geometry retriever switch (to the new UMAP's title)",
          "corpus_switch": "corpus switch (to the new corpus's results)"}


def run(config: BrowserConfig) -> dict:
    """The section for ``benchmarks.run``: one app launch, ``config.repeats`` rounds."""
    with launch_app(timeout_s=STARTUP_TIMEOUT_S) as app:
        raw = measure(app.url, config.repeats, keep_raw=True)
    return {"title": "Browser (headless Chromium, Playwright, python app.py on the committed indexes)",
            "figures": [figure(LABELS[k], v, "s").to_json() for k, v in raw.items()],
            "notes": ["One page per round at 1920x1080; the first round warms the server and is not counted.",
                      "Timed from the user's action to the answer on screen, so it includes the browser's "
                      "rendering and Gradio's queue."]}


def summary(seconds: list[float]) -> dict:
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3), "n": len(seconds)}


def timed(action: Callable[[], None], done: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    done()
    return time.perf_counter() - start


def measure(url: str, repeats: int, keep_raw: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("Chromium is not installed: apt-get install chromium")
    out: dict[str, list[float]] = {"query_to_results": [], "detail_first_open": [], "detail_later_open": [],
                                   "geometry_switch": [], "corpus_switch": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        for rep in range(repeats + 1):  # the first round warms the server's caches and is not counted
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.wait_for_selector(".ciea-results .ciea-card")
            box = page.locator("#ciea-query textarea, #ciea-query input").first
            text = QUERIES[rep % len(QUERIES)] + f" {rep}"
            results = {
                "query_to_results": timed(lambda: (box.fill(text), page.locator("#ciea-search").click()),
                                          lambda: page.wait_for_function(
                                              "q => document.querySelector('#ciea-results .ciea-results')"
                                              "?.dataset.query === q", arg=text)),
            }
            for key, nth in (("detail_first_open", 0), ("detail_later_open", 1)):
                card = page.locator("#ciea-results .ciea-card").nth(nth)
                caption = card.locator(".cap").inner_text()
                results[key] = timed(card.click, lambda c=caption: page.wait_for_function(
                    "c => { const cap = document.querySelector('#ciea-detail .cap');"
                    " return cap && c.includes(cap.textContent); }", arg=c))
            page.get_by_role("tab", name="Geometry").click()
            page.wait_for_selector("#ciea-umap .js-plotly-plot .gtitle")
            page.locator("#ciea-geo-retriever input").first.click()

            def pick(name: str = "Dual encoder, fused vector") -> None:
                page.get_by_role("option", name=name).click()

            results["geometry_switch"] = timed(pick, lambda: page.wait_for_function(
                "() => document.querySelector('#ciea-umap .gtitle')?.textContent.startsWith('Dual encoder, fused')"))
            page.get_by_role("tab", name="Search").click()
            page.locator("#ciea-corpus input").first.click()

            def switch() -> None:
                page.get_by_role("option", name="scenes").click()

            results["corpus_switch"] = timed(switch, lambda: page.wait_for_function(
                "() => document.querySelector('#ciea-results .ciea-results')?.dataset.corpus === 'scenes'"))
            log.info("round %d: %s", rep, {k: round(v, 3) for k, v in results.items()})
            if rep:
                for key, value in results.items():
                    out[key].append(value)
            page.close()
        browser.close()
    return out if keep_raw else {key: summary(values) for key, values in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    with launch_app(timeout_s=STARTUP_TIMEOUT_S) as app:
        figures = measure(app.url, args.repeats)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
