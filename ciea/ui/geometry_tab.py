"""The Geometry tab: each retriever's embedding space as a UMAP scatter, the modality-gap
statistics (centroid gap, exact and sliced Wasserstein, cosines) with their intervals, the
gap-shift curve, and a live exact-W2 recompute on a sample size the user picks.

Everything shown is read from artefacts saved at build time (``ciea.geometry``); only the
query marker (one encode and a nearest-neighbour placement) and the W2 recompute run live.
"""

from __future__ import annotations

import html
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from ciea.service import MAX_W2_SAMPLES, MIN_W2_SAMPLES, SearchService, retriever_title
from ciea.ui.common import guarded, retriever_choices
from ciea.ui.plots import (
    COLOUR_MODES,
    STATISTICS_HEADERS,
    gap_shift_figure,
    notice_figure,
    statistics_figure,
    statistics_rows,
    umap_figure,
)
from ciea.ui.results import thumbnail_urls

DEFAULT_W2_SAMPLES = 500
#: Exact OT cost grows with the cube of the sample size; used to pace the progress bar.
W2_COST_EXPONENT = 3.0
PROGRESS_TICK_S = 0.25
#: Geometry views kept in memory (each a few figures; the saved artefacts never change while serving).
VIEW_CACHE_SIZE = 64


@dataclass
class GeometryTab:
    retriever: gr.Dropdown
    colour_by: gr.Radio
    query: gr.Textbox
    notice: gr.Markdown
    scatter: gr.Plot
    table: gr.Dataframe
    chart: gr.Plot
    gap_shift: gr.Plot
    w2_samples: gr.Slider
    w2_button: gr.Button
    w2_result: gr.Markdown


#: The retriever the tab opens on when it can answer: the method this app is about.
PREFERRED_RETRIEVER = "ciea"
#: What each statistic measures and which way is better, shown under the table.
DEFINITIONS = """
**How to read the statistics** (image side = what the retriever makes of a document's image alone, text side =
its caption in query form, both L2-normalised, so distances are in units of the unit sphere, 0 to 2):
- **centroid gap**: distance between the mean image vector and the mean caption vector. Lower = smaller modality gap.
- **Wasserstein-2, exact / sliced**: optimal-transport distance between the image and caption clouds as wholes
  (sliced: averaged over random 1-D projections). Lower = the two clouds overlap more.
- **cosine, matched pairs**: mean cosine of each image with its own caption (−1 to 1). Higher = better aligned.
- **cosine, random pairs / within images / within captions**: the baseline and the cone effect (how bunched each
  cloud is). Lower = less crowded.
- **document gap**: centroid gap between the indexed document vectors and the captions. Lower = the index sits
  closer to the caption side.
- **gap-shift curve**: MRR@10 on the corpus's queries after moving images and captions toward each other along the
  centroid gap (factor 0 = as trained, 1 = centroids aligned). Rising = closing the gap would help.
"""


def default_retriever(names: list[str], current: str | None) -> str | None:
    """``current`` if it can answer, else CIEA, else the first retriever (None without any)."""
    if current in names:
        return current
    if PREFERRED_RETRIEVER in names:
        return PREFERRED_RETRIEVER
    return names[0] if names else None


def build_geometry_tab(names: list[str], default: str | None) -> GeometryTab:
    """The Geometry tab's components (call inside ``gr.Tab``); filled when the tab opens."""
    with gr.Row(equal_height=True):
        retriever = gr.Dropdown(retriever_choices(names), value=default, label="Retriever",
                                scale=2, elem_id="ciea-geo-retriever", allow_custom_value=True)
        colour_by = gr.Radio(list(COLOUR_MODES), value="modality", label="Colour by", scale=1)
        query = gr.Textbox(label="Query to place on the map (from the Search tab; edit and press Enter)",
                           scale=3, max_lines=1)
    notice = gr.Markdown(label="Notes")
    scatter = gr.Plot(label="UMAP of text, image and document embeddings", elem_id="ciea-umap")
    with gr.Row():
        table = gr.Dataframe(headers=STATISTICS_HEADERS, interactive=False, wrap=True, scale=1, min_width=460,
                             label="Statistics of the selected retriever",
                             column_widths=["30%", "13%", "12%", "12%", "33%"])
        chart = gr.Plot(label="All retrievers compared", scale=1, min_width=460)
    gr.Markdown(DEFINITIONS, elem_id="ciea-geo-definitions")
    with gr.Row():
        gap_shift = gr.Plot(label="Gap shift", scale=1, min_width=460)
        with gr.Column(scale=1, min_width=360):
            gr.Markdown(f"### Recompute exact W2\nExact optimal transport between the image and the caption "
                        f"clouds (POT's network simplex, squared Euclidean cost) on a fixed-seed sample. "
                        f"Its cost grows with the cube of the sample, so the size is capped at {MAX_W2_SAMPLES} "
                        "per side; one recompute runs at a time.")
            w2_samples = gr.Slider(MIN_W2_SAMPLES, MAX_W2_SAMPLES, value=DEFAULT_W2_SAMPLES, step=10,
                                   label="Sample size per side")
            w2_button = gr.Button("Recompute W2")
            w2_result = gr.Markdown(label="W2 result")
    return GeometryTab(retriever, colour_by, query, notice, scatter, table, chart, gap_shift, w2_samples,
                       w2_button, w2_result)


class GeometryActions:
    def __init__(self, service: SearchService) -> None:
        self.service = service
        # Views per (corpus, retriever, colour, query): reopening the tab answers from here.
        self._views: dict[tuple[str, str, str, str], tuple] = {}

    def on_switch(self, open_now: bool, corpus: str, retriever: str, colour_by: str, query: str) -> tuple:
        """After a corpus switch: the view for the new corpus when the tab is open, else
        placeholders (the tab refreshes when opened) and no stale W2 result."""
        if open_now:
            return (*self.view(corpus, retriever, colour_by, query), "")
        blank = notice_figure("Open the Geometry tab to load this corpus.", height=120)
        return blank, [], blank, blank, "", ""

    def view(self, corpus: str, retriever: str, colour_by: str, query: str
             ) -> tuple[go.Figure, list[list], go.Figure, go.Figure, str]:
        """(UMAP scatter with the query marker, statistics rows, comparison chart, gap-shift
        curve, notes) for one retriever on one corpus."""
        def failed(msg: str):
            return notice_figure(msg), [], notice_figure(msg), notice_figure(msg), html.escape(msg)

        key = (str(corpus), str(retriever), str(colour_by or "modality"), (query or "").strip())
        if key in self._views:
            return self._views[key]

        def run():
            view = self._view(*key)
            if len(self._views) >= VIEW_CACHE_SIZE:
                self._views.pop(next(iter(self._views)))
            self._views[key] = view
            return view

        return guarded(run, failed, "geometry view")

    def _view(self, corpus: str, retriever: str, colour_by: str, query: str):
        service = self.service
        names = service.retrievers(corpus)
        if retriever not in names:
            msg = f"Pick a retriever: {', '.join(names) or 'none is available'} on {corpus}."
            return notice_figure(msg), [], notice_figure(msg), notice_figure(msg), html.escape(msg)
        artefacts = service.geometry(corpus, retriever)
        notes = [html.escape(e) for e in artefacts.errors]
        if artefacts.projection is not None:
            docs = service.corpus(corpus).documents
            point = service.query_point(corpus, retriever, query) if query else None
            if query and point is None:
                notes.append("The query could not be placed: this projection was fitted on vectors of another width.")
            title = f"{retriever_title(retriever)}: {len(docs)} documents per cloud"
            scatter = umap_figure(artefacts.projection.coords, [d.text for d in docs], [d.doc_id for d in docs],
                                  [d.category for d in docs], colour_by, point, query, title=title,
                                  thumbs=thumbnail_urls(service.thumbnails(corpus)))
        else:
            scatter = notice_figure("No UMAP projection for this retriever (see the note above).", height=320)
        report = artefacts.report
        reports = {n: r for n in names if (r := service.geometry(corpus, n).report) is not None}
        rows = statistics_rows(report) if report else []
        chart = statistics_figure(reports, selected=retriever)
        gap = gap_shift_figure(report) if report else notice_figure("No geometry report.")
        return scatter, rows, chart, gap, "\n\n".join(notes)

    def recompute_w2(self, corpus: str, retriever: str, n: float,
                     progress=gr.Progress()) -> str:  # noqa: B008 (how Gradio injects a progress bar)
        """Exact W2 between the image and text clouds on ``n`` points per side (Markdown)."""
        return guarded(lambda: self._recompute(corpus, retriever, int(n), progress),
                       lambda msg: f"**Could not recompute:** {html.escape(msg)}", "W2 recompute")

    def _recompute(self, corpus: str, retriever: str, n: int, progress) -> str:
        saved = (self.service.geometry(corpus, retriever).report or {}).get("wasserstein2") or {}
        expected = expected_seconds(saved, n)
        desc = f"Exact optimal transport, {n} + {n} points"
        progress(0.0, desc=desc)
        with ThreadPoolExecutor(max_workers=1) as pool:
            job = pool.submit(self.service.recompute_w2, corpus, retriever, n)
            start = time.monotonic()
            while True:
                try:
                    result = job.result(timeout=PROGRESS_TICK_S)
                    break
                except TimeoutError:
                    elapsed = time.monotonic() - start
                    fraction = min(0.95, elapsed / expected) if expected else 0.5
                    progress(fraction, desc=f"{desc}: {elapsed:.0f} s"
                             + (f" of about {expected:.0f} s" if expected else ""))
        verdict = "converged" if result.converged else "**did not converge** (treat as an upper bound)"
        lines = [(f"**W2 = {result.distance:.4f}** on {result.n} image and {result.n_text or result.n} caption "
                  f"vectors (seed 0, {verdict}, {result.seconds:.1f} s).")]
        if saved.get("distance") is not None:
            lines.append(f"Saved report: {float(saved['distance']):.4f} on {saved.get('n')} per side.")
        return " ".join(lines)


def expected_seconds(saved: dict, n: int) -> float | None:
    """Run time of an exact W2 on ``n`` points, scaled from the saved report's timing."""
    try:
        base_n, base_s = int(saved["n"]), float(saved["seconds"])
    except (KeyError, TypeError, ValueError):
        return None
    if base_n <= 0 or base_s <= 0:
        return None
    return max(base_s * (n / base_n) ** W2_COST_EXPONENT, 0.5)
