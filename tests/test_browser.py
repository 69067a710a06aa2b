"""The app in a real browser: headless Chromium (Debian's package, driven by Playwright)
against ``python app.py`` as conftest's ``app_url`` launches it (once, shared).

Three sizes a reviewer meets: a phone (390x844), a projector with the detail sidebar open
(1280x720) and full HD (1920x1080). At each, no two result cards overlap and the element at
each card's centre is that card (so every card can be clicked). Screenshots of every tab and
the detail view go to test-artifacts/ (git-ignored) for a person to look at.
Chromium is required: .ci/run installs it, and a missing browser fails this test.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
TIMEOUT_MS = 120_000
UNJUDGED = "a red fire truck"
JUDGED = "An elephant."
SHARED = {"corpus": "scenes", "q": "a blue bicycle beside an elephant"}

#: Pairs of cards whose boxes overlap by more than a pixel each way (layout coordinates, so
#: cards scrolled out of a horizontal scroller count too).
OVERLAPS_JS = """
(scope) => {
  const boxes = [...document.querySelectorAll(scope + ' .ciea-card')].map(c => c.getBoundingClientRect());
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 1 && h > 1) out.push([i, j]);
  }
  return out;
}
"""
#: Cards whose centre, once scrolled into view, is covered by something other than the card.
COVERED_JS = """
(scope) => {
  const bad = [];
  for (const card of document.querySelectorAll(scope + ' .ciea-card')) {
    card.scrollIntoView({block: 'center', inline: 'center'});
    const r = card.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!hit || hit.closest('.ciea-card') !== card) bad.push(card.dataset.retriever + ' ' + card.dataset.docId);
  }
  window.scrollTo(0, 0);
  return bad;
}
"""
#: Column headers whose text overflows their box (a word too long to wrap between words).
OVERFLOWING_HEADERS_JS = """
(scope) => [...document.querySelectorAll(scope + ' .ciea-head')]
  .filter(h => h.scrollWidth > h.clientWidth + 1).map(h => h.textContent)
"""


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
    page.wait_for_selector(".ciea-results .ciea-card")  # the first results replace the loading banner
    return page, errors


def shown(page, scope: str = "#ciea-results") -> dict:
    """Corpus and query of the results on screen."""
    return page.eval_on_selector(f"{scope} .ciea-results", "g => ({corpus: g.dataset.corpus, query: g.dataset.query})")


def query_box(page) -> str:
    return page.locator("#ciea-query textarea, #ciea-query input").first.input_value()


def run_query(page, text: str) -> None:
    page.locator("#ciea-query textarea, #ciea-query input").first.fill(text)
    page.locator("#ciea-search").click()
    page.wait_for_function("q => document.querySelector('#ciea-results .ciea-results')?.dataset.query === q", arg=text)


def card_retrievers(page, scope: str = "#ciea-results") -> set[str]:
    return set(page.eval_on_selector_all(f"{scope} .ciea-card", "cards => cards.map(c => c.dataset.retriever)"))


def verdicts(page, scope: str = "#ciea-results") -> dict[str, tuple[str, bool]]:
    """Retriever -> (verdict text, marked best)."""
    cells = page.eval_on_selector_all(f"{scope} .ciea-verdict", """cells => cells.map(v => [v.dataset.retriever,
        v.querySelector('.text').textContent, v.hasAttribute('data-best')])""")
    return {name: (text, best) for name, text, best in cells}


def on_map(expr: str) -> str:
    """A page function of one argument ``m`` that evaluates ``expr`` over the detail view's
    Plotly map ``gd`` (null while there is none)."""
    return ("(m) => { const gd = document.querySelector('#ciea-detail-map .js-plotly-plot');"
            f" return gd && gd.data ? ({expr}) : null; }}")


def assert_thumbnail_on_hover(page, scope: str, shot: str) -> None:
    """The pointer over an image point of the map in ``scope`` shows that document's thumbnail
    (screenshot ``shot`` taken while it shows)."""
    where = page.evaluate("""(scope) => {
        const gd = document.querySelector(scope + ' .js-plotly-plot');
        const i = gd.data.findIndex(t => t.name === 'image' || (t.customdata && t.visible !== 'legendonly'));
        const t = gd._fullData[i], L = gd._fullLayout, box = gd.getBoundingClientRect();
        const j = Math.floor(t.x.length / 2);
        return {x: box.left + L._size.l + L.xaxis.l2p(t.x[j]), y: box.top + L._size.t + L.yaxis.l2p(t.y[j])};
    }""", scope)
    page.mouse.move(where["x"] - 30, where["y"] - 30)
    page.mouse.move(where["x"], where["y"], steps=5)
    page.wait_for_function("() => { const t = document.querySelector('#ciea-map-thumb');"
                           " return t && !t.hidden && t.complete && t.naturalWidth > 0; }")
    assert "/gradio_api/file=" in page.get_attribute("#ciea-map-thumb", "src")
    page.screenshot(path=str(ARTIFACTS / shot))
    page.mouse.move(1, 1)
    page.wait_for_function("() => document.querySelector('#ciea-map-thumb').hidden")


def assert_grid_usable(page, scope: str = "#ciea-results") -> None:
    assert len(card_retrievers(page, scope)) >= 2
    assert page.evaluate(OVERLAPS_JS, scope) == []
    assert page.evaluate(COVERED_JS, scope) == []
    assert page.evaluate(OVERFLOWING_HEADERS_JS, scope) == []


def test_phone_opens_a_shared_link_as_stacked_columns(browser, app_url):
    page, errors = open_app(browser, app_url + "?" + urlencode(SHARED), 390, 844)
    page.wait_for_function("c => document.querySelector('#ciea-results .ciea-results')?.dataset.corpus === c",
                           arg=SHARED["corpus"])
    assert shown(page) == {"corpus": SHARED["corpus"], "query": SHARED["q"]}
    assert query_box(page) == SHARED["q"]
    assert page.locator("#ciea-corpus input").first.input_value() == SHARED["corpus"]
    assert_grid_usable(page)
    # stacked: every card lies within the phone's width, none needs a sideways scroll
    lefts_rights = page.eval_on_selector_all("#ciea-results .ciea-card", """cards => cards.map(c => {
        const r = c.getBoundingClientRect(); return [r.left, r.right]; })""")
    assert all(left >= 0 and right <= 390 for left, right in lefts_rights)
    page.screenshot(path=str(ARTIFACTS / "search-390x844.png"), full_page=True)
    assert errors == []
    page.close()


def test_projector_with_the_sidebar_open_marks_and_every_tab(browser, app_url):
    page, errors = open_app(browser, app_url, 1280, 720)
    run_query(page, UNJUDGED)
    assert all("not judged" in text for text, _ in verdicts(page).values())
    # hand-marking: a document marked in one column is marked in every column it appears in
    card = page.locator("#ciea-results .ciea-card").first
    doc_id, retriever = card.get_attribute("data-doc-id"), card.get_attribute("data-retriever")
    card.locator(".ciea-mark").click()
    marked = page.eval_on_selector_all("#ciea-results .ciea-card[data-marked]", "cs => cs.map(c => c.dataset.docId)")
    same = page.eval_on_selector_all("#ciea-results .ciea-card", "cs => cs.map(c => c.dataset.docId)").count(doc_id)
    assert set(marked) == {doc_id} and len(marked) == same
    text, best = verdicts(page)[retriever]
    assert text.startswith("first relevant at rank 1 · RR 1.00") and "(your marks)" in text and best
    assert page.locator("#ciea-detail .cap").count() == 0  # marking does not open the detail view
    page.screenshot(path=str(ARTIFACTS / "search-marked-1280x720.png"))

    mapped = page.locator('#ciea-results .ciea-card[data-retriever="text-dense"]')  # has a map on stamps here
    card = mapped.nth(1)
    caption = card.locator(".cap").inner_text()
    card.focus()
    page.keyboard.press("Enter")  # keyboard users open the detail view too
    page.wait_for_selector("#ciea-detail .js-plotly-plot")
    page.wait_for_function("c => c.includes(document.querySelector('#ciea-detail .cap')?.textContent)", arg=caption)
    assert_grid_usable(page)  # with the sidebar open, the grid scrolls sideways instead of overlapping
    page.locator("#ciea-results .ciea-grid").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "detail-1280x720.png"))
    page.locator("#ciea-detail .js-plotly-plot").scroll_into_view_if_needed()
    map_ready = "k => document.querySelector('#ciea-detail-map .js-plotly-plot')?.layout?.meta?.ciea_map === k"
    page.wait_for_function(map_ready, arg="stamps/text-dense")
    # clouds first (documents, images, captions), the markers last so they sit on top
    assert page.evaluate(on_map("gd.data.map(t => t.name)")) == ["document", "image", "text", "this document",
                                                                    "query"]
    assert_thumbnail_on_hover(page, "#ciea-detail-map", "detail-map-hover-1280x720.png")
    page.screenshot(path=str(ARTIFACTS / "detail-map-1280x720.png"))

    # A later open on the same retriever moves the markers only: the clouds are not sent again.
    before = page.evaluate(on_map("{marks: Array.from(gd.data[3].x), clouds: (window.cieaClouds = gd.data[0], 1)}"))
    # another caption, so another place (documents with equal captions share one here)
    words = [c.locator(".cap").inner_text().removeprefix(c.locator(".rank").inner_text()).strip()
             for c in mapped.all()]
    later = mapped.nth(next(i for i in range(2, len(words)) if words[i] != words[1]))
    caption = later.locator(".cap").inner_text()
    later.click()
    page.wait_for_function("c => c.includes(document.querySelector('#ciea-detail .cap')?.textContent)", arg=caption)
    page.wait_for_function(on_map("JSON.stringify(Array.from(gd.data[3].x)) !== JSON.stringify(m)"),
                           arg=before["marks"])
    assert page.evaluate(on_map("gd.data[0] === window.cieaClouds"))  # the same cloud trace, moved markers

    page.locator("#ciea-search-this-image").click()  # the document's image becomes the query
    page.wait_for_function("() => document.querySelector('#ciea-results .ciea-legend')?.textContent"
                           ".startsWith('Image query')")
    page.wait_for_function("() => !document.querySelector('#ciea-query textarea, #ciea-query input').value")

    page.get_by_role("tab", name="Geometry").click()
    # CIEA first; on stamps the launched app has geometry for text-dense and dual-fused only
    page.wait_for_function("() => document.querySelector('#ciea-geo-retriever input')?.value === 'CIEA'")
    page.get_by_text("python -m ciea geometry --corpus stamps --retriever ciea").wait_for()
    page.locator("#ciea-geo-retriever input").first.click()
    page.get_by_role("option", name="Text only (captions)").click()
    page.wait_for_selector("#ciea-umap .js-plotly-plot .gl-container canvas")  # a WebGL scatter
    legend = page.eval_on_selector_all("#ciea-umap .legendtext", "texts => texts.map(t => t.textContent)")
    assert {"text", "image", "document"} <= set(legend)
    # a legend entry hides its cloud and shows it again
    entry = page.locator("#ciea-umap g.traces", has=page.locator("text.legendtext", has_text="image")).locator(
        ".legendtoggle").first
    visible = "() => document.querySelector('#ciea-umap .js-plotly-plot').data.find(t => t.name === 'image').visible"
    entry.click()
    page.wait_for_function(visible + " === 'legendonly'")
    entry.click()
    page.wait_for_function(visible + " !== 'legendonly'")
    assert_thumbnail_on_hover(page, "#ciea-umap", "geometry-hover-1280x720.png")
    page.screenshot(path=str(ARTIFACTS / "geometry-1280x720.png"), full_page=True)
    page.get_by_role("tab", name="Benchmark").click()
    page.wait_for_selector("#ciea-drilldown .ciea-card")
    page.screenshot(path=str(ARTIFACTS / "benchmark-1280x720.png"), full_page=True)
    page.get_by_role("tab", name="About").click()
    page.get_by_text("How to cite").wait_for()
    page.screenshot(path=str(ARTIFACTS / "about-1280x720.png"), full_page=True)
    assert errors == []
    page.close()


def test_full_hd_verdicts_benchmark_and_corpus_switch(browser, app_url):
    page, errors = open_app(browser, app_url, 1920, 1080)
    run_query(page, JUDGED)
    assert_grid_usable(page)
    judged = verdicts(page)
    assert len(judged) >= 2 and all(text.startswith("first relevant at rank") for text, _ in judged.values())
    assert any(best for _, best in judged.values())
    assert page.locator("#ciea-results .ciea-mark").count() == 0  # judged: the judgements decide
    query = parse_qs(urlparse(page.url).query)
    assert query == {"corpus": ["stamps"], "q": [JUDGED]}  # the address carries the state
    page.screenshot(path=str(ARTIFACTS / "search-1920x1080.png"))

    page.locator("#ciea-corpus input").first.click()
    page.get_by_role("option", name="scenes").click()
    page.wait_for_function("() => document.querySelector('#ciea-results .ciea-results')?.dataset.corpus === 'scenes'")
    assert shown(page)["query"] == query_box(page) == JUDGED  # the same query, on the new corpus
    assert all(d.startswith("scene-") for d in page.eval_on_selector_all(
        "#ciea-results .ciea-card", "cs => cs.map(c => c.dataset.docId)"))

    page.get_by_role("tab", name="Benchmark").click()
    page.wait_for_selector("#ciea-drilldown .ciea-card")
    assert_grid_usable(page, "#ciea-drilldown")
    assert page.locator("#ciea-drilldown .ciea-verdict[data-best]").count() >= 1
    # the drill-down opens on a query the image must answer, not a caption query all get right
    assert page.locator("#ciea-drill-kind input").first.input_value() == "complementary"
    page.screenshot(path=str(ARTIFACTS / "benchmark-1920x1080.png"), full_page=True)
    page.get_by_role("tab", name="Geometry").click()
    page.wait_for_selector("#ciea-umap .js-plotly-plot .gl-container canvas")
    page.screenshot(path=str(ARTIFACTS / "geometry-1920x1080.png"), full_page=True)
    assert errors == []
    page.close()
