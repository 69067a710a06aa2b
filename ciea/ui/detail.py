"""The detail view of one result: full image, caption, CIEA's complementary-patch heat map,
and where the document and the query sit in that retriever's UMAP.

It lives in a right-hand sidebar that any results table opens: a click on a card fires the
table's click event (``CARD_CLICK_JS``), ``DetailActions.select`` copies the card's document,
retriever and query into hidden fields, and ``/document`` fills the view from them.

The map's clouds (a few hundred kilobytes) travel once per page, corpus and retriever: the
browser says which maps it holds (``map_key``), and when it holds the one needed ``/document``
sends only the two marker traces ("this document", "query"); ``MARKS_JS`` shows that map and
moves them.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass

import gradio as gr
from gradio.components.plot import PlotData
from PIL import Image

from ciea.compat import event_payload
from ciea.service import SearchService, retriever_title
from ciea.ui.common import guarded
from ciea.ui.heatmap import heat_map
from ciea.ui.plots import MARK_DOCUMENT, MARK_QUERY, SMALL_HEIGHT, map_marks, notice_figure, umap_figure
from ciea.ui.results import thumbnail_urls

log = logging.getLogger("ciea.app")
#: Wide enough for the image and its map, narrow enough to leave the results readable.
SIDEBAR_WIDTH = "min(560px, 40vw)"
#: Characters per line of a notice drawn inside the sidebar's plot.
NOTICE_WIDTH = 48


@dataclass
class DetailView:
    sidebar: gr.Sidebar
    info: gr.HTML
    image: gr.Image
    plot: gr.Plot
    corpus: gr.Textbox
    retriever: gr.Textbox
    doc_id: gr.Textbox
    query: gr.Textbox
    scale: gr.Radio
    search_image: gr.Button
    map_key: gr.Textbox
    marks: gr.JSON


#: The heat map's two scales: absolute weights (the default) or stretched within one image.
FIXED_SCALE = "fixed 0-1 scale"
STRETCHED_SCALE = "stretched within this image"


def build_detail_view() -> DetailView:
    """The sidebar (closed until a result is clicked) and its hidden selection fields."""
    with gr.Sidebar(open=False, position="right", width=SIDEBAR_WIDTH, label="Document",
                    elem_id="ciea-detail") as sidebar:
        info = gr.HTML("<p>Click a result card to see it here.</p>", elem_classes=["ciea-detail"],
                       label="Document")
        image = gr.Image(type="pil", label="Document image", interactive=False, height=340,
                         buttons=["fullscreen", "download"])
        search_image = gr.Button("Search with this image", size="sm", elem_id="ciea-search-this-image")
        scale = gr.Radio([FIXED_SCALE, STRETCHED_SCALE], value=FIXED_SCALE, label="Heat map scale (CIEA)")
        # A placeholder figure, so the page loads the plotting library before the first click.
        plot = gr.Plot(notice_figure("Click a result card to see where it sits in its retriever's map.",
                                     width=NOTICE_WIDTH),
                       label="Where the document and the query sit in this retriever's UMAP",
                       elem_id="ciea-detail-map")
        # What was clicked; hidden, but inputs of /document so API clients pass them directly.
        corpus = gr.Textbox(visible=False)
        retriever = gr.Textbox(visible=False)
        doc_id = gr.Textbox(visible=False)
        query = gr.Textbox(visible=False)
        # The maps the page holds ("corpus/retriever" keys, "|"-separated), and the markers.
        map_key = gr.Textbox(value="", visible=False)
        marks = gr.JSON(visible=False)
    return DetailView(sidebar, info, image, plot, corpus, retriever, doc_id, query, scale, search_image, map_key,
                      marks)


#: Runs after every ``/document``: shows the map of ``marks.key`` and moves its two marker traces.
#: A map the server has just sent (``marks.sent``) is drawn by Gradio's plot component: the script
#: waits up to 5 s for it (``layout.meta.ciea_map``) and keeps it in ``window.cieaMaps``; a map
#: sent earlier on this page is drawn again from there. ``window.Plotly`` is the copy Gradio's
#: plot component loads.
MARKS_JS = f"""
(marks) => {{
  if (!marks || !marks.key) return;
  const maps = window.cieaMaps = window.cieaMaps || {{}};
  const names = [{json.dumps(MARK_DOCUMENT)}, {json.dumps(MARK_QUERY)}];
  let tries = 0;
  const apply = () => {{
    const gd = document.querySelector('#ciea-detail-map .js-plotly-plot');
    const Plotly = window.Plotly;
    const shows = gd && Plotly && gd.data && gd.layout && gd.layout.meta && gd.layout.meta.ciea_map === marks.key;
    if (shows && !maps[marks.key]) maps[marks.key] = {{data: gd.data, layout: gd.layout}};
    if (!shows && !marks.sent && gd && Plotly && maps[marks.key]) {{
      Plotly.react(gd, maps[marks.key].data, maps[marks.key].layout).then(apply);
      return;
    }}
    if (!shows) {{ if (++tries < 100) setTimeout(apply, 50); return; }}
    const idx = names.map(n => gd.data.findIndex(t => t.name === n));
    if (idx.some(i => i < 0)) return;
    const field = (f) => names.map(n => marks[n][f]);
    Plotly.restyle(gd, {{x: field('x'), y: field('y'), hovertext: field('hovertext'),
                         showlegend: names.map(n => marks[n].x.length > 0)}}, idx);
  }};
  apply();
}}
"""
#: Separates the keys of the maps a page holds in ``map_key``.
KEY_SEPARATOR = "|"


class DetailActions:
    def __init__(self, service: SearchService) -> None:
        self.service = service
        #: Each (corpus, retriever)'s map with empty markers, as Plotly JSON (the artefacts never
        #: change while serving, so a first open on a new page only fills in the markers).
        self._maps: dict[tuple[str, str], dict] = {}

    @staticmethod
    def close() -> gr.Sidebar:
        """Closes the sidebar (when another tab opens, so that tab gets the full width)."""
        return gr.Sidebar(open=False)

    @staticmethod
    def select(evt: gr.EventData) -> tuple[str, str, str, str, gr.Sidebar, gr.Radio]:
        """The clicked card's corpus, retriever, document and text query; opens the sidebar
        with the heat map on its fixed scale."""
        data = event_payload(evt)
        fields = ("corpus", "retriever", "doc_id", "query")
        return (*(str(data.get(f) or "") for f in fields), gr.Sidebar(open=True), gr.Radio(value=FIXED_SCALE))

    def document(self, corpus: str, retriever: str, doc_id: str, query: str, scale: str = FIXED_SCALE,
                 shown_map: str = "") -> tuple:
        """One document as retriever ``retriever`` sees it: (description HTML, image with
        CIEA's complementary-patch heat map where available, UMAP plot, the map's markers, the
        keys of the maps the caller then holds). ``shown_map`` lists the maps the caller holds
        (``KEY_SEPARATOR``-separated keys): when this retriever's is one of them, the plot is
        left as it is (``gr.skip()``) and only the markers travel."""
        return guarded(lambda: self._document(corpus, retriever, doc_id, query or "", scale == STRETCHED_SCALE,
                                              shown_map or ""),
                       lambda msg: (f'<div class="ciea-notice" role="status">{html.escape(msg)}</div>', None,
                                    notice_figure(msg, width=NOTICE_WIDTH), {}, shown_map or ""), "document view")

    def _document(self, corpus: str, retriever: str, doc_id: str, query: str, stretched: bool, shown_map: str):
        service = self.service
        view = service.document(corpus, doc_id)
        state = service.retriever(corpus, retriever)
        lines = [f'<div class="cap">{html.escape(view.text)}</div>',
                 (f'<div class="meta">{html.escape(view.doc_id)} · {html.escape(view.category or "no category")}'
                  f" · corpus {html.escape(corpus)}</div>"),
                 f"<p>Retrieved by <b>{html.escape(retriever_title(retriever))}</b> ({html.escape(retriever)})"
                 + ("" if state.ready else f" (unavailable: {html.escape(state.error or '')})") + "</p>"]
        if query:
            judged = service.relevant(corpus, query)
            quoted = f"“{html.escape(query)}”"
            lines.append(f"<p>This document is judged <b>relevant</b> to the query {quoted}.</p>" if doc_id in judged
                         else f"<p>This document is judged not relevant to the query {quoted}.</p>" if judged
                         else f"<p>The query {quoted} has no relevance judgements on {html.escape(corpus)}.</p>")
        picture: Image.Image | str | None = str(view.image) if view.image else None
        weights = None
        if view.image is not None:
            try:
                weights = service.patch_weights(corpus, retriever, doc_id)
            except Exception:
                log.exception("patch weights failed for %s/%s", retriever, doc_id)
                lines.append('<p class="ciea-notice">The heat map could not be computed; the error was logged.</p>')
        if weights is not None:
            from ciea.images import load_image

            picture = heat_map(load_image(view.image), weights, stretched)
            g = weights.shape[0]
            scale = (f"stretched within this image from untinted at its lowest weight ({float(weights.min()):.2f}) "
                     f"to full tint at its highest ({float(weights.max()):.2f}), to show small differences"
                     if stretched else "on a fixed scale from untinted at 0 to full tint at 1")
            lines.append(f"<p><b>Heat map</b>: each of the {g}×{g} patches is tinted by its complementarity "
                         f"weight (printed in the patch), {scale}: the redder, the less the caption covers "
                         f"that region. Weights here run from {float(weights.min()):.2f} to "
                         f"{float(weights.max()):.2f}, mean {float(weights.mean()):.2f}.</p>")
        elif view.image is not None:
            lines.append("<p>Heat map: only CIEA computes complementary-patch weights; this retriever has none.</p>")
        return ("".join(lines), picture, *self._plot(corpus, retriever, view.position, query, shown_map))

    def _plot(self, corpus: str, retriever: str, position: int, query: str, shown_map: str) -> tuple:
        """(plot or ``gr.skip()``, markers, the keys of the maps the caller then holds) for one
        document's place in its retriever's map."""
        held = [k for k in shown_map.split(KEY_SEPARATOR) if k]
        artefacts = self.service.geometry(corpus, retriever)
        if artefacts.projection is None:
            return notice_figure(" ".join(artefacts.errors) or "No UMAP projection for this retriever.",
                                 width=NOTICE_WIDTH), {}, shown_map
        key = f"{corpus}/{retriever}"
        point = self.service.query_point(corpus, retriever, query) if query else None
        marks = {"key": key, "sent": key not in held, **map_marks(artefacts.projection.coords, position, point, query)}
        if not marks["sent"]:
            return gr.skip(), marks, shown_map
        plot = self._map(corpus, retriever, artefacts.projection.coords, marks)
        return plot, marks, KEY_SEPARATOR.join([*held, key])

    def _map(self, corpus: str, retriever: str, coords, marks: dict) -> PlotData:
        """This retriever's map with ``marks`` filled in (its clouds built once, then reused)."""
        base = self._maps.get((corpus, retriever))
        if base is None:
            docs = self.service.corpus(corpus).documents
            fig = umap_figure(coords, [d.text for d in docs], [d.doc_id for d in docs], [d.category for d in docs],
                              "modality", height=SMALL_HEIGHT + 60, opacity=0.25,
                              thumbs=thumbnail_urls(self.service.thumbnails(corpus)), key=marks["key"],
                              always_marks=True)
            base = self._maps[(corpus, retriever)] = json.loads(fig.to_json())
        data = [dict(trace, **marks[trace["name"]], showlegend=bool(marks[trace["name"]]["x"]))
                if trace.get("name") in (MARK_DOCUMENT, MARK_QUERY) else trace for trace in base["data"]]
        return PlotData(type="plotly", plot=json.dumps({**base, "data": data}))
