"""What a reviewer waits for in a real browser: headless Chromium (Debian's package, driven by
Playwright) against ``python app.py`` on the committed indexes (``python -m benchmarks.run --only
browser``). Each figure summarises ``repeats`` rounds after one warm-up round:
query to results (a new query each time), the detail view's first open on a fresh page, a later
open on the same retriever and one on another retriever, a Geometry retriever switch, and a
corpus switch. Timed from the user's action to the moment the page shows the answer. The detail
opens also count the bytes the page received for them (Chrome's network events: the event
stream and any file it fetched), which shows the map's clouds travelling once per retriever.
"""

from __future__ import annotations

import logging
import shutil
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
          "detail_first_open": "detail view, first open on a fresh page (card click to caption and map shown)",
          "detail_later_open": "detail view, a later open on the same retriever (map markers only)",
          "detail_other_retriever": "detail view, a later open on another retriever (its map's clouds sent: "
                                    "what every open cost before)",
          "geometry_switch": "Geometry retriever switch (to the new UMAP's title)",
          "corpus_switch": "corpus switch (to the new corpus's results)"}
#: The detail view shows the clicked card: its caption, and the map of its corpus and retriever.
DETAIL_SHOWN_JS = """
(a) => {
  const cap = document.querySelector('#ciea-detail .cap');
  const gd = document.querySelector('#ciea-detail-map .js-plotly-plot');
  return cap && a.caption.includes(cap.textContent) && gd && gd.layout && gd.layout.meta
    && gd.layout.meta.ciea_map === a.map;
}
"""
#: The detail opens whose received bytes are counted too.
PAYLOADS = ("detail_first_open", "detail_later_open", "detail_other_retriever")
#: Wait after a detail open's answer before its bytes are read (files the page fetches for it).
SETTLE_S = 0.5


def run(config: BrowserConfig) -> dict:
    """The section for ``benchmarks.run``: one app launch, ``config.repeats`` rounds."""
    with launch_app(timeout_s=STARTUP_TIMEOUT_S) as app:
        raw = measure(app.url, config.repeats)
    seconds = [figure(LABELS[k], v, "s") for k, v in raw.items() if k in LABELS]
    sizes = [figure(f"{LABELS[k]}: kB received", [b / 1e3 for b in raw[f"{k}_bytes"]], "kB") for k in PAYLOADS]
    return {"title": "Browser (headless Chromium, Playwright, python app.py on the committed indexes)",
            "figures": seconds + sizes,
            "notes": ["One page per round at 1920x1080; the first round warms the server and is not counted. "
                      "Each round starts once the page has loaded its plotting library (Plotly, 4.6 MB, fetched "
                      "with the page for the detail view's map).",
                      "Timed from the user's action to the answer on screen, so it includes the browser's "
                      "rendering and Gradio's queue."]}


def timed(action: Callable[[], None], done: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    done()
    return time.perf_counter() - start


def byte_counter(page) -> Callable[[], int]:
    """Bytes the page has received so far (decoded), from Chrome's network events."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    total = [0]
    cdp.on("Network.dataReceived", lambda event: total.__setitem__(0, total[0] + int(event.get("dataLength", 0))))
    return lambda: total[0]


def measure(url: str, repeats: int) -> dict[str, list[float]]:
    """Per figure key, its value in each counted round (seconds; bytes for ``*_bytes``)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("Chromium is not installed: apt-get install chromium")
    out: dict[str, list[float]] = {key: [] for key in LABELS} | {f"{key}_bytes": [] for key in PAYLOADS}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        for rep in range(repeats + 1):  # the first round warms the server's caches and is not counted
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.set_default_timeout(TIMEOUT_MS)
            received = byte_counter(page)
            page.goto(url)
            page.wait_for_selector(".ciea-results .ciea-card")
            page.wait_for_function("() => typeof window.Plotly === 'object'")  # the page has finished loading
            box = page.locator("#ciea-query textarea, #ciea-query input").first
            text = QUERIES[rep % len(QUERIES)] + f" {rep}"
            results = {
                "query_to_results": timed(lambda: (box.fill(text), page.locator("#ciea-search").click()),
                                          lambda: page.wait_for_function(
                                              "q => document.querySelector('#ciea-results .ciea-results')"
                                              "?.dataset.query === q", arg=text)),
            }
            cards = page.locator("#ciea-results .ciea-card")
            first = cards.nth(0).get_attribute("data-retriever")
            other = page.locator(f'#ciea-results .ciea-card:not([data-retriever="{first}"])').first
            for key, card in (("detail_first_open", cards.nth(0)), ("detail_later_open", cards.nth(1)),
                              ("detail_other_retriever", other)):
                caption = card.locator(".cap").inner_text()
                shown = {"caption": caption, "map": f"stamps/{card.get_attribute('data-retriever')}"}
                before = received()
                results[key] = timed(card.click, lambda a=shown: page.wait_for_function(DETAIL_SHOWN_JS, arg=a))
                page.wait_for_timeout(SETTLE_S * 1e3)
                results[f"{key}_bytes"] = received() - before
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
    return out

