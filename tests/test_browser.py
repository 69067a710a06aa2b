"""The app in a real browser: headless Chromium (Debian's package, driven by Playwright)
against ``python app.py`` as conftest's ``app_url`` launches it.

Screenshots go to test-artifacts/ (git-ignored) for a person to look at: the Search tab, a
result's detail view and the Geometry tab, at projector (1280x720) and full-HD sizes.
Chromium is required: .ci/run installs it, and a missing browser fails this test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
TIMEOUT_MS = 120_000
QUERY = "a red fire truck"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -r requirements-dev.txt (.ci/run does this)")

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Chromium is not installed: apt-get install chromium (.ci/run does this)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_app(browser, url: str, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector(".ciea-results .ciea-card")  # the default query's results on first sight
    return page, errors


def run_query(page, text: str) -> None:
    page.locator("#ciea-query textarea, #ciea-query input").first.fill(text)
    page.locator("#ciea-search").click()
    page.wait_for_function("q => document.querySelector('#ciea-results .ciea-results')?.dataset.query === q", arg=text)


def card_retrievers(page, scope: str = "#ciea-results") -> set[str]:
    return set(page.eval_on_selector_all(f"{scope} .ciea-card", "cards => cards.map(c => c.dataset.retriever)"))


def test_search_detail_and_geometry_in_chromium(browser, app_url):
    page, errors = open_app(browser, app_url, 1280, 720)
    run_query(page, QUERY)
    assert len(card_retrievers(page)) >= 2  # one column per retriever
    first_row = page.locator("#ciea-results tbody tr").first.locator(".ciea-card")
    tops = [first_row.nth(i).bounding_box()["y"] for i in range(first_row.count())]
    assert max(tops) - min(tops) < 1  # aligned by rank
    assert max(tops) < 720  # on a projector the first results show without scrolling
    page.screenshot(path=str(ARTIFACTS / "search-1280x720.png"))

    card = page.locator("#ciea-results .ciea-card").first
    caption = card.locator(".cap").inner_text().lstrip("✓ ").strip()
    card.focus()
    page.keyboard.press("Enter")  # keyboard users open the detail view too
    page.wait_for_selector("#ciea-detail .js-plotly-plot")
    page.wait_for_function("c => document.querySelector('#ciea-detail .cap')?.textContent === c", arg=caption)
    page.screenshot(path=str(ARTIFACTS / "detail-1280x720.png"))

    page.get_by_role("tab", name="Geometry").click()
    page.wait_for_selector("#ciea-umap .js-plotly-plot .gl-container canvas")  # a WebGL scatter
    legend = page.eval_on_selector_all("#ciea-umap .legendtext", "texts => texts.map(t => t.textContent)")
    assert {"text", "image", "document", "query"} <= set(legend)
    page.screenshot(path=str(ARTIFACTS / "geometry-1280x720.png"), full_page=True)
    assert errors == []
    page.close()


def test_full_hd_layout(browser, app_url):
    page, errors = open_app(browser, app_url, 1920, 1080)
    assert len(card_retrievers(page)) >= 2
    page.screenshot(path=str(ARTIFACTS / "search-1920x1080.png"))
    page.get_by_role("tab", name="Benchmark").click()
    page.wait_for_selector("#ciea-drilldown .ciea-card")
    assert len(card_retrievers(page, "#ciea-drilldown")) >= 2
    page.screenshot(path=str(ARTIFACTS / "benchmark-1920x1080.png"), full_page=True)
    assert errors == []
    page.close()
