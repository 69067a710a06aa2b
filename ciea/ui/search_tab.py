"""The Search tab: a text or image query, every selected retriever's results side by side.

Layout (``build_search_tab``) and actions (``SearchActions``) live here; app.py wires events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from ciea.compat import pass_upload_path
from ciea.config import DEFAULT_K, MAX_K
from ciea.service import SearchResponse, SearchService
from ciea.ui.common import guarded, retriever_choices, towers_of
from ciea.ui.examples import Example, examples_for, expectation
from ciea.ui.results import CARD_CLICK_JS, loading_html, message_html, results_html


EXAMPLE_HELP = "Examples (each judged; the line above the results says who should win)"
#: Copies the page's address (which carries corpus and query) to the clipboard.
COPY_LINK_JS = """
() => {
  const url = window.location.href;
  const button = document.querySelector('#ciea-copy-link');
  const say = (text) => { if (button) { const old = button.textContent; button.textContent = text;
                                        setTimeout(() => { button.textContent = old; }, 1500); } };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(url).then(() => say('Link copied'), () => window.prompt('Copy this link:', url));
  } else {
    window.prompt('Copy this link:', url);
  }
}
"""


@dataclass
class SearchTab:
    query: gr.Textbox
    search: gr.Button
    retrievers: gr.CheckboxGroup
    k: gr.Slider
    image: gr.Image
    image_search: gr.Button
    copy_link: gr.Button
    results: gr.HTML
    raw: gr.JSON
    examples: dict[str, gr.Dataset]  # per corpus; only the selected corpus's set is shown

    def example_visibility(self, corpus: str) -> list[gr.Dataset]:
        """Updates that show the examples of ``corpus`` and hide the others (in ``examples`` order)."""
        return [gr.Dataset(visible=name == corpus) for name in self.examples]


class SearchActions:
    """What the Search tab's events call (wrapped so bad input becomes a message)."""

    def __init__(self, service: SearchService) -> None:
        self.service = service
        self.examples: dict[str, list[Example]] = {}

    def examples_of(self, corpus: str) -> list[Example]:
        """The examples of ``corpus`` (read once: curated ones, else judged queries)."""
        if corpus not in self.examples:
            self.examples[corpus] = examples_for(self.service, corpus)
        return self.examples[corpus]

    def render(self, response: SearchResponse) -> tuple[str, dict]:
        towers = towers_of(self.service, response.corpus, list(response.results))
        note = expectation(self.examples_of(response.corpus), response.query) if response.mode == "text" else ""
        return results_html(response, towers, note), response.to_json()

    def search(self, query: str, corpus: str, retrievers: list[str], k: float) -> tuple[str, dict]:
        """Top-k documents of each retriever for a text query: (results table, JSON)."""
        return guarded(lambda: self.render(self.service.search(query, corpus, retrievers or [], int(k))),
                       _error, "search")

    def search_by_image(self, image: str | None, corpus: str, retrievers: list[str], k: float) -> tuple[str, dict]:
        """Top-k documents of each image-capable retriever for an uploaded image: (table, JSON)."""
        return guarded(lambda: self.render(self.service.search_by_image(image, corpus, retrievers or [], int(k))),
                       _error, "image search")

    def search_by_document(self, corpus: str, doc_id: str, retrievers: list[str], k: float) -> tuple[str, dict]:
        """A document's own image used as the query ("Search with this image" in the detail view)."""
        def run():
            view = self.service.document(corpus, doc_id)
            if view.image is None:
                return _error(f"{doc_id} has no image to search with.")
            return self.render(self.service.search_by_image(str(view.image), corpus, retrievers or [], int(k),
                                                            label=f"the image of {doc_id}"))

        return guarded(run, _error, "search by document image")


def _error(message: str) -> tuple[str, dict]:
    return message_html(message), {"error": message}


def build_search_tab(corpus: gr.Dropdown, indexed: dict[str, list[str]], default_corpus: str,
                     search_fn: Callable, default_query: str, examples: dict[str, list[Example]],
                     loading: str) -> SearchTab:
    """The Search tab's components (call inside ``gr.Tab``). ``indexed`` maps each corpus to
    its retrievers with an index; ``search_fn`` answers (and lazily caches) the ``examples``;
    ``loading`` is shown where the results will appear until the first ones arrive."""
    names = indexed.get(default_corpus, [])
    results = gr.HTML(loading_html(loading), js_on_load=CARD_CLICK_JS, elem_id="ciea-results", min_height=120,
                      render=False, label="Results")
    raw = gr.JSON(label="Results JSON", render=False)
    with gr.Row(elem_id="ciea-controls"):
        with gr.Column(scale=3, min_width=300):
            with gr.Row(equal_height=True):
                query = gr.Textbox(value=default_query, label="Query", show_label=False, container=False,
                                   placeholder="Type a query, e.g. an elephant", scale=5, max_lines=1,
                                   autofocus=True, elem_id="ciea-query", min_width=180)
                search = gr.Button("Search", variant="primary", scale=1, min_width=90, elem_id="ciea-search")
                copy_link = gr.Button("Copy link", variant="secondary", scale=1, min_width=90, size="sm",
                                      elem_id="ciea-copy-link")
            with gr.Row():
                retrievers = gr.CheckboxGroup(retriever_choices(names), value=names, label="Retrievers", scale=3,
                                              elem_id="ciea-retrievers", min_width=240)
                k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="k per retriever", scale=1,
                              min_width=160)
            with (gr.Accordion("Search with an image instead (image-to-document)", open=False),
                  gr.Row(equal_height=True)):
                image = pass_upload_path(gr.Image(type="filepath", image_mode=None, label="Query image",
                                                 sources=["upload", "clipboard"], height=180, scale=2))
                with gr.Column(scale=3):
                    gr.Markdown("PNG, JPEG, GIF, WebP, BMP or TIFF, up to 10 MB. Retrievers with an image "
                                "tower rank documents by it; caption-only ones are skipped with a note.")
                    image_search = gr.Button("Search by image", variant="secondary")
        sets = {}
        with gr.Column(scale=2, min_width=300, elem_id="ciea-examples"):
            for name, chosen in examples.items():
                if name not in indexed or not chosen:
                    continue
                sets[name] = gr.Examples(
                    [[e.text, name, indexed[name], DEFAULT_K] for e in chosen],
                    inputs=[query, corpus, retrievers, k], outputs=[results, raw], fn=search_fn,
                    cache_examples=True, cache_mode="lazy", label=EXAMPLE_HELP,
                    example_labels=[e.label for e in chosen], examples_per_page=len(chosen),
                    api_name=f"example_{name}", visible=name == default_corpus).dataset
    results.render()
    with gr.Accordion("Raw results (JSON, as the /search API returns them)", open=False):
        raw.render()
    return SearchTab(query, search, retrievers, k, image, image_search, copy_link, results, raw, sets)
