"""The Search tab: a text or image query, every selected retriever's results side by side.

Layout (``build_search_tab``) and actions (``SearchActions``) live here; app.py wires events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from ciea.config import DEFAULT_K, MAX_K
from ciea.service import SearchResponse, SearchService
from ciea.ui.common import guarded, retriever_choices, towers_of
from ciea.ui.results import CARD_CLICK_JS, message_html, results_html


@dataclass(frozen=True)
class Example:
    """A curated query; ``kind`` names its query kind where the corpus judges it."""

    text: str
    kind: str = ""

    @property
    def label(self) -> str:
        return f"{self.text}  ·  {self.kind}" if self.kind else self.text


#: Curated example queries per corpus. Scenes' complementary queries name an object that only
#: the image shows (the caption names the other one); all scenes examples are test queries.
EXAMPLES: dict[str, list[Example]] = {
    "stamps": [
        Example("an elephant", "caption"),
        Example("a frog", "caption"),
        Example("a red fire truck"),
        Example("something to eat for breakfast"),
        Example("a musical instrument with strings"),
    ],
    "scenes": [
        Example("a Christmas stocking beside an elephant", "complementary"),
        Example("a Jack-o-lantern beside a crow", "complementary"),
        Example("an abalone beside a wrench", "complementary"),
        Example("a blue bicycle beside an elephant", "complementary"),
        Example("a picture of a Christmas stocking", "caption"),
        Example("a drawing that also shows an Adelaide Rosella", "image-only"),
    ],
}
EXAMPLE_HELP = {
    "stamps": "Examples (complementary ones: switch the corpus to scenes)",
    "scenes": "Examples (complementary: an object only the picture shows)",
}


def unopened_upload(image: gr.Image) -> gr.Image:
    """``image`` changed to hand the event its uploaded file's path without opening it.

    ``gr.Image`` opens uploads with PIL before the event function runs, so a file that is not
    an image fails there with no message; this way ``ciea.images.load_query_image`` decides and
    says why. (An instance override: a ``gr.Image`` subclass would make Gradio write a .pyi
    stub next to this module.) Gradio has already checked that the path is an upload.
    """
    opened = image.preprocess

    def preprocess(payload):
        if payload is not None and payload.path:
            return str(payload.path)
        return opened(payload)  # None, or inline (base64) data

    image.preprocess = preprocess
    return image


@dataclass
class SearchTab:
    query: gr.Textbox
    search: gr.Button
    retrievers: gr.CheckboxGroup
    k: gr.Slider
    image: gr.Image
    image_search: gr.Button
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

    def render(self, response: SearchResponse) -> tuple[str, dict]:
        towers = towers_of(self.service, response.corpus, list(response.results))
        return results_html(response, towers), response.to_json()

    def search(self, query: str, corpus: str, retrievers: list[str], k: float) -> tuple[str, dict]:
        """Top-k documents of each retriever for a text query: (results table, JSON)."""
        return guarded(lambda: self.render(self.service.search(query, corpus, retrievers or [], int(k))),
                       _error, "search")

    def search_by_image(self, image: str | None, corpus: str, retrievers: list[str], k: float) -> tuple[str, dict]:
        """Top-k documents of each image-capable retriever for an uploaded image: (table, JSON)."""
        return guarded(lambda: self.render(self.service.search_by_image(image, corpus, retrievers or [], int(k))),
                       _error, "image search")


def _error(message: str) -> tuple[str, dict]:
    return message_html(message), {"error": message}


def build_search_tab(corpus: gr.Dropdown, indexed: dict[str, list[str]], default_corpus: str,
                     search_fn: Callable, default_query: str) -> SearchTab:
    """The Search tab's components (call inside ``gr.Tab``). ``indexed`` maps each corpus to
    its retrievers with an index; ``search_fn`` answers (and lazily caches) the examples."""
    names = indexed.get(default_corpus, [])
    results = gr.HTML(js_on_load=CARD_CLICK_JS, elem_id="ciea-results", min_height=120, render=False,
                      label="Results")
    raw = gr.JSON(label="Results JSON", render=False)
    with gr.Row(elem_id="ciea-controls"):
        with gr.Column(scale=3, min_width=420):
            with gr.Row(equal_height=True):
                query = gr.Textbox(value=default_query, label="Query", show_label=False, container=False,
                                   placeholder="Type a query, e.g. an elephant", scale=5, max_lines=1,
                                   autofocus=True, elem_id="ciea-query")
                search = gr.Button("Search", variant="primary", scale=1, min_width=110, elem_id="ciea-search")
            with gr.Row():
                retrievers = gr.CheckboxGroup(retriever_choices(names), value=names, label="Retrievers", scale=3,
                                              elem_id="ciea-retrievers")
                k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="k per retriever", scale=1,
                              min_width=160)
            with (gr.Accordion("Search with an image instead (image-to-document)", open=False),
                  gr.Row(equal_height=True)):
                image = unopened_upload(gr.Image(type="filepath", image_mode=None, label="Query image",
                                                 sources=["upload", "clipboard"], height=180, scale=2))
                with gr.Column(scale=3):
                    gr.Markdown("PNG, JPEG, GIF, WebP, BMP or TIFF, up to 10 MB. Retrievers with an image "
                                "tower rank documents by it; caption-only ones are skipped with a note.")
                    image_search = gr.Button("Search by image", variant="secondary")
        sets = {}
        with gr.Column(scale=2, min_width=320, elem_id="ciea-examples"):
            for name, examples in EXAMPLES.items():
                if name not in indexed:
                    continue
                sets[name] = gr.Examples(
                    [[e.text, name, indexed[name], DEFAULT_K] for e in examples],
                    inputs=[query, corpus, retrievers, k], outputs=[results, raw], fn=search_fn,
                    cache_examples=True, cache_mode="lazy", label=EXAMPLE_HELP.get(name, f"Examples on {name}"),
                    example_labels=[e.label for e in examples], examples_per_page=len(examples),
                    api_name=f"example_{name}", visible=name == default_corpus).dataset
    results.render()
    with gr.Accordion("Raw results (JSON, as the /search API returns them)", open=False):
        raw.render()
    return SearchTab(query, search, retrievers, k, image, image_search, results, raw, sets)
