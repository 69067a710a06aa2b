"""CIEA Explorer: the Gradio app. Assembly and event wiring only; each tab's layout and
actions live in ciea/ui/, everything else in ciea/.

Start-up is lazy on purpose: the page is built from files only (corpus lists, index
manifests, saved reports), the server starts, and then a background thread loads the
backbone and indexes. Events that need them wait for that load; nothing heavy runs before
the first page renders. Every event has an explicit api_name; README.md lists them all.
"""

from __future__ import annotations

# First, before anything that imports torch: on ZeroGPU hardware the `spaces` package must be
# imported before torch, and ciea.ui.zerogpu imports it where it exists.
from ciea.ui.zerogpu import on_gpu  # isort: skip

import atexit
import logging
import os
import shutil
import tempfile
import threading

import gradio as gr

from ciea.config import Settings
from ciea.images import MAX_UPLOAD_BYTES
from ciea.service import SearchService
from ciea.ui.about import about_markdown, towers_markdown
from ciea.ui.benchmark_tab import BenchmarkActions, build_benchmark_tab
from ciea.ui.common import guarded, retriever_choices, towers_of
from ciea.ui.detail import MARKS_JS, DetailActions, build_detail_view
from ciea.ui.geometry_tab import GeometryActions, build_geometry_tab, default_retriever
from ciea.ui.plots import THUMB_HOVER_JS
from ciea.ui.results import availability_html, message_html
from ciea.ui.search_tab import COPY_LINK_JS, SearchActions, build_search_tab
from ciea.ui.style import CSS, THEME

log = logging.getLogger("ciea.app")
DEFAULT_CORPUS = "stamps"
# Queue: at most this many requests wait; beyond it users are told the app is busy.
QUEUE_SIZE = 64
# Events run at most this many at once each: queries take ~0.1 s on 2 CPU cores once loaded.
CONCURRENCY = 4
# The exact-W2 recompute is cubic in its sample size (seconds to a minute): one at a time.
W2_CONCURRENCY = 1
# Image queries run the image tower once (~50 ms on one core) for all retrievers: their own
# group, so text queries never wait behind a burst of uploads. With 2 slots, upload handling
# made images the queue's tail (16-client soak p95 2.3 s); 4 gave 1.5 s (BENCHMARKS.md).
IMAGE_CONCURRENCY = 4
LOADING = "*Loading the retrievers (first start loads the towers and indexes, about 15 s on 2 cores)...*"


#: Keeps the page's address in step with the results shown, so it can be shared:
#: ``?corpus=C&q=TEXT`` (an image query keeps only the corpus).
URL_STATE_JS = """
(raw) => {
  if (!raw || raw.error || !raw.corpus) return;
  const url = new URL(window.location.href);
  url.searchParams.set('corpus', raw.corpus);
  if (raw.mode === 'text' && raw.query) url.searchParams.set('q', raw.query); else url.searchParams.delete('q');
  window.history.replaceState(null, '', url);
}
"""


def build_demo(service: SearchService) -> gr.Blocks:
    """The whole app over ``service``; reads only files while building (no backbone)."""
    corpora = service.corpora()
    default_corpus = DEFAULT_CORPUS if DEFAULT_CORPUS in corpora else (corpora[0] if corpora else None)
    indexed = {c: service.indexed_retrievers(c) for c in corpora}
    names = indexed.get(default_corpus, [])
    search = SearchActions(service)
    detail = DetailActions(service)
    geometry = GeometryActions(service)
    bench = BenchmarkActions(service)
    search_text = on_gpu(search.search)
    examples = {c: search.examples_of(c) for c in corpora}
    default_query = examples[default_corpus][0].text if examples.get(default_corpus) else ""

    def refresh(corpus: str, geo_retriever: str | None):
        """Availability of every retriever on ``corpus`` (waits for loading), for every tab."""
        def run():
            ready = service.retrievers(corpus)
            unavailable = service.unavailable(corpus)
            towers = towers_of(service, corpus, ready)
            about = about_markdown(towers_markdown(service.backbone.spec, towers, service.retriever_titles(),
                                                   unavailable, service.alignments(corpus)))
            return (gr.CheckboxGroup(choices=retriever_choices(ready), value=ready),
                    availability_html(unavailable),
                    gr.Dropdown(choices=retriever_choices(ready), value=default_retriever(ready, geo_retriever)),
                    about)

        return guarded(run, lambda msg: (gr.CheckboxGroup(), message_html(msg), gr.Dropdown(), about_markdown(msg)),
                       "refresh")

    def page_load(query: str, corpus: str, geo_retriever: str | None, k: float, request: gr.Request):
        """The corpus and query the address names (``?corpus=C&q=TEXT``), else the defaults;
        ``refresh`` for that corpus, then that query's results on every retriever that can answer."""
        params = dict(request.query_params) if request is not None else {}
        wanted = params.get("corpus")
        corpus = wanted if wanted in corpora else corpus
        query = params.get("q") or (query if corpus == default_corpus else
                                    (examples[corpus][0].text if examples.get(corpus) else query))
        updates = refresh(corpus, geo_retriever)
        ready = guarded(lambda: service.retrievers(corpus), lambda msg: [], "page load")
        return (*updates, corpus, query, *search_text(query, corpus, ready, k))

    def switch_corpus(query: str, corpus: str, k: float):
        """A corpus picked by the user: the current query on every retriever of that corpus."""
        ready = guarded(lambda: service.retrievers(corpus), lambda msg: [], "corpus switch")
        return search_text(query, corpus, ready, k)

    def switch_views(tab: str, corpus: str, geo_retriever: str, colour_by: str, geo_query: str, split: str,
                     metric: str) -> tuple:
        """After a corpus switch, the Geometry and Benchmark views: refreshed if open, else cleared."""
        return (*geometry.on_switch(tab == "geometry", corpus, geo_retriever, colour_by, geo_query),
                *bench.on_switch(tab == "benchmark", corpus, split, metric))

    def shown_query(results: dict | None):
        """The text query behind the results on screen, for the query boxes (an image query
        empties them; a failed search leaves them as typed)."""
        results = results or {}
        if "error" in results:
            return gr.skip(), gr.skip()
        text = str(results.get("query", "")) if results.get("mode", "text") == "text" else ""
        return text, text

    with gr.Blocks(title="CIEA Explorer") as demo:
        active = gr.State("search")  # the open tab: hidden tabs refresh when opened, not on every switch
        with gr.Row(elem_id="ciea-header", equal_height=True):
            gr.Markdown("# CIEA Explorer\nCaptions say only part of what an image shows. Compare retrievers, "
                        "inspect their embedding spaces, read the benchmark.", scale=4, min_width=240)
            corpus = gr.Dropdown(corpora, value=default_corpus, label="Corpus", scale=1, min_width=160,
                                 elem_id="ciea-corpus")
        availability = gr.HTML()
        with gr.Tabs():
            with gr.Tab("Search", id="search") as search_tab:
                s = build_search_tab(corpus, indexed, default_corpus, search_text, default_query, examples, LOADING)
            with gr.Tab("Geometry", id="geometry") as geo_tab:
                g = build_geometry_tab(names, default_retriever(names, None))
            with gr.Tab("Benchmark", id="benchmark") as bench_tab:
                b = build_benchmark_tab(bench.splits(default_corpus) if default_corpus else [])
            with gr.Tab("About", id="about") as about_tab:
                about = gr.Markdown(about_markdown(LOADING), elem_id="ciea-about")
        d = build_detail_view()
        for tab, name in ((search_tab, "search"), (geo_tab, "geometry"), (bench_tab, "benchmark"),
                          (about_tab, "about")):
            tab.select(lambda name=name: name, None, active, api_visibility="private", show_progress="hidden",
                       queue=False, api_name=f"open_{name}")

        # Page and corpus: which retrievers can answer (UI-only, so private); the page opens
        # with the results of the query its address names, or the default one.
        refreshed = [s.retrievers, availability, g.retriever, about]
        demo.load(page_load, [s.query, corpus, g.retriever, s.k], refreshed + [corpus, s.query, s.results, s.raw],
                  api_name="page_load", api_visibility="private", show_progress="minimal")
        corpus.change(refresh, [corpus, g.retriever], refreshed, api_name="refresh", api_visibility="private",
                      show_progress="minimal")
        corpus.change(s.example_visibility, corpus, list(s.examples.values()), api_name="show_examples",
                      api_visibility="private", show_progress="hidden", queue=False)
        corpus.input(switch_corpus, [s.query, corpus, s.k], [s.results, s.raw], api_name="switch_corpus",
                     api_visibility="private", show_progress="minimal")
        # Views of the other tabs: refreshed now if open, else cleared (they refresh when opened).
        corpus.change(switch_views, [active, corpus, g.retriever, g.colour_by, g.query, b.split, b.metric],
                      [g.scatter, g.table, g.chart, g.gap_shift, g.notice, g.w2_result,
                       b.split, b.table, b.chart, b.kind, b.query],
                      api_name="switch_views", api_visibility="private", show_progress="hidden",
                      trigger_mode="always_last")

        # Search tab.
        gr.on([s.search.click, s.query.submit], search_text, [s.query, corpus, s.retrievers, s.k],
              [s.results, s.raw], api_name="search")
        s.image_search.click(on_gpu(search.search_by_image), [s.image, corpus, s.retrievers, s.k],
                             [s.results, s.raw], api_name="search_by_image", concurrency_limit=IMAGE_CONCURRENCY,
                             concurrency_id="image")
        s.raw.change(shown_query, s.raw, [g.query, s.query], api_name="track_query", api_visibility="private",
                     show_progress="hidden")
        s.raw.change(None, s.raw, None, js=URL_STATE_JS, api_name="share_url", api_visibility="private",
                     show_progress="hidden")
        s.copy_link.click(None, None, None, js=COPY_LINK_JS, api_name="copy_link", api_visibility="private")

        # Detail view: a click on any result card opens the sidebar, then /document fills it; the
        # map's clouds travel once per corpus and retriever, later clicks move only its markers.
        shown = [d.info, d.image, d.plot, d.marks, d.map_key]
        gr.on([s.results.click, b.results.click], detail.select, None,
              [d.corpus, d.retriever, d.doc_id, d.query, d.sidebar, d.scale], api_name="select_result",
              api_visibility="private", show_progress="hidden", queue=False
              ).then(on_gpu(detail.document), [d.corpus, d.retriever, d.doc_id, d.query, d.scale, d.map_key],
                     shown, api_name="document"
              ).then(None, d.marks, None, js=MARKS_JS, api_name="move_marks", api_visibility="private",
                     show_progress="hidden", queue=False)
        d.scale.input(on_gpu(detail.document), [d.corpus, d.retriever, d.doc_id, d.query, d.scale, d.map_key],
                      shown, api_name="document_scale", api_visibility="private"
                      ).then(None, d.marks, None, js=MARKS_JS, api_name="move_marks_scale", api_visibility="private",
                             show_progress="hidden", queue=False)
        demo.load(None, None, None, js=THUMB_HOVER_JS, api_name="map_previews", api_visibility="private",
                  queue=False)
        d.search_image.click(on_gpu(search.search_by_document), [d.corpus, d.doc_id, s.retrievers, s.k],
                             [s.results, s.raw], api_name="search_by_document", api_visibility="private",
                             concurrency_limit=IMAGE_CONCURRENCY, concurrency_id="image")

        gr.on([geo_tab.select, bench_tab.select, about_tab.select], detail.close, None, d.sidebar,
              api_name="close_detail", api_visibility="private", show_progress="hidden", queue=False)

        # Geometry tab.
        gr.on([geo_tab.select, g.retriever.change, g.colour_by.change, g.query.submit],
              on_gpu(geometry.view), [corpus, g.retriever, g.colour_by, g.query],
              [g.scatter, g.table, g.chart, g.gap_shift, g.notice], api_name="geometry",
              trigger_mode="always_last")
        g.w2_button.click(geometry.recompute_w2, [corpus, g.retriever, g.w2_samples], g.w2_result,
                          api_name="recompute_w2", concurrency_limit=W2_CONCURRENCY, concurrency_id="w2")

        # Benchmark tab: opening it sets the corpus's query sets, then the table and queries follow.
        bench_tab.select(bench.open, [corpus, b.split], b.split, api_name="benchmark_open", api_visibility="private",
                         show_progress="hidden", queue=False
                         ).then(bench.table, [corpus, b.split, b.metric], [b.table, b.chart],
                                api_visibility="private", api_name="benchmark_table"
                         ).then(bench.queries, [corpus, b.split, b.kind], [b.kind, b.query],
                                api_visibility="private", api_name="benchmark_kinds")
        gr.on([b.split.change, b.metric.change], bench.table, [corpus, b.split, b.metric], [b.table, b.chart],
              api_name="benchmark", trigger_mode="always_last")
        b.intervals.click(bench.table_with_intervals, [corpus, b.split, b.metric], [b.table, b.chart],
                          api_name="benchmark_intervals", api_visibility="private", concurrency_limit=1,
                          concurrency_id="intervals")
        b.split.change(bench.queries, [corpus, b.split, b.kind], [b.kind, b.query], api_name="benchmark_queries",
                       api_visibility="private", trigger_mode="always_last")
        b.kind.input(bench.choose_kind, [corpus, b.split, b.kind], [b.kind, b.query], api_name="benchmark_kind",
                     api_visibility="private", trigger_mode="always_last")
        gr.on([b.query.change, b.k.release], on_gpu(bench.drilldown), [corpus, b.split, b.query, b.k],
              [b.results, b.raw], api_name="drilldown", trigger_mode="always_last")
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    service = SearchService(settings)
    if "GRADIO_EXAMPLES_CACHE" not in os.environ:
        # Examples are cached lazily, per process: results never outlive the indexes they came from.
        cache = tempfile.mkdtemp(prefix="ciea-examples-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        os.environ["GRADIO_EXAMPLES_CACHE"] = cache
    gr.set_static_paths([settings.assets_dir])
    demo = build_demo(service)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    demo.launch(theme=THEME, css=CSS, allowed_paths=[str(settings.assets_dir)], max_file_size=MAX_UPLOAD_BYTES,
                prevent_thread_lock=True)
    threading.Thread(target=service.warm_up, args=(DEFAULT_CORPUS,), name="warm-up", daemon=True).start()
    demo.block_thread()


if __name__ == "__main__":
    main()
