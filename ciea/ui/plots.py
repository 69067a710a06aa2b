"""Plotly figures for the app (pure functions: data in, figures out).

Every figure sets its own height (``gr.Plot`` in Gradio 6.31 takes none) and big scatters
use WebGL (``Scattergl``). Text that comes from data is escaped before it reaches a hover label.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

SCATTER_HEIGHT = 540
CHART_HEIGHT = 400
SMALL_HEIGHT = 300
#: One colour per cloud when colouring by modality.
MODALITY_COLOURS = {"text": "#2563eb", "image": "#ea580c", "document": "#16a34a"}
#: One marker per cloud when colour is taken by the category.
MODALITY_SYMBOLS = {"text": "circle", "image": "diamond", "document": "square-open"}
#: Marker size per cloud, largest drawn first: where two clouds coincide (text-dense's documents
#: are its captions) the later, smaller markers sit inside the earlier ones and both stay visible.
MODALITY_SIZES = {"document": 9, "image": 6, "text": 4}
#: Clouds are drawn in this order (unknown ones first).
DRAW_ORDER = ("document", "image", "text")
#: Clouds whose points are pictures (a hover shows the document's thumbnail); text points are captions.
PREVIEW_CLOUDS = ("image", "document")
#: Names of the marker traces (the browser finds them by name to move them: ciea/ui/detail.py).
MARK_DOCUMENT = "this document"
MARK_QUERY = "query"
CATEGORY_COLOURS = qualitative.Dark24
COLOUR_MODES = ("modality", "category")

#: The browser side of ``thumbs``: one floating <img> (``#ciea-map-thumb``) that shows the
#: thumbnail of the image or document point under the pointer, on every Plotly map that carries
#: ``layout.meta.thumbs``. Installed once per page (``demo.load``); it (re)binds to a plot when
#: the pointer enters it, because Gradio may redraw a plot (and drop its listeners) at any time.
THUMB_HOVER_JS = """
() => {
  if (window.cieaThumbs) return;
  window.cieaThumbs = true;
  const tip = document.createElement('img');
  tip.id = 'ciea-map-thumb'; tip.alt = ''; tip.hidden = true;
  tip.addEventListener('error', () => { tip.hidden = true; });
  document.body.appendChild(tip);
  let pointer = {x: 0, y: 0};
  document.addEventListener('mousemove', (e) => { pointer = {x: e.clientX, y: e.clientY}; }, {passive: true});
  const place = () => {
    const size = 132, gap = 18;
    const x = pointer.x + gap + size > window.innerWidth ? pointer.x - gap - size : pointer.x + gap;
    const y = pointer.y + gap + size > window.innerHeight ? pointer.y - gap - size : pointer.y + gap;
    tip.style.left = Math.max(0, x) + 'px'; tip.style.top = Math.max(0, y) + 'px';
  };
  const hide = () => { tip.hidden = true; };
  const bind = (gd) => {
    if (!gd.cieaShow) {
      gd.cieaShow = (ev) => {
        const thumbs = gd.layout && gd.layout.meta && gd.layout.meta.thumbs;
        const point = ev && ev.points && ev.points[0];
        const row = point ? Number(point.customdata) : NaN;
        const rel = thumbs && Number.isInteger(row) ? thumbs.paths[row] : null;
        if (!rel) { hide(); return; }
        const src = thumbs.base + rel;
        if (tip.getAttribute('src') !== src) tip.src = src;
        place(); tip.hidden = false;
      };
    }
    gd.removeListener('plotly_hover', gd.cieaShow); gd.on('plotly_hover', gd.cieaShow);
    gd.removeListener('plotly_unhover', hide); gd.on('plotly_unhover', hide);
  };
  document.addEventListener('mouseover', (e) => {
    const gd = e.target && e.target.closest ? e.target.closest('.js-plotly-plot') : null;
    if (gd && typeof gd.on === 'function') bind(gd);
  }, true);
  document.addEventListener('mouseout', (e) => {
    if (e.target && e.target.closest && e.target.closest('.js-plotly-plot') && !e.relatedTarget?.closest?.('.js-plotly-plot')) hide();
  }, true);
}
"""


def _layout(fig: go.Figure, height: int, title: str = "", legend: dict | None = None, **kwargs) -> go.Figure:
    fig.update_layout(height=height, title={"text": html.escape(title), "x": 0.01, "font": {"size": 16}},
                      template="plotly_white", margin={"l": 50, "r": 20, "t": 50 if title else 20, "b": 40},
                      font={"size": 14}, legend=dict(itemsizing="constant", **(legend or {})), **kwargs)
    return fig


def notice_figure(message: str, height: int = SMALL_HEIGHT, width: int = 70) -> go.Figure:
    """An empty figure that says why there is nothing to plot (wrapped to ``width`` characters)."""
    fig = go.Figure()
    lines = textwrap.wrap(message, width, break_long_words=True, break_on_hyphens=False) or [""]
    fig.add_annotation(text="<br>".join(html.escape(line) for line in lines), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 15})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height)


def top_category(category: str) -> str:
    """The first level of a category path ("animals/birds" -> "animals"); "" -> "uncategorised"."""
    return category.split("/", 1)[0] or "uncategorised"


def map_marks(coords: Mapping[str, np.ndarray], highlight: int | None = None,
              query_xy: np.ndarray | None = None, query_label: str = "") -> dict[str, dict]:
    """The points of the two marker traces drawn over a UMAP: "this document" (row
    ``highlight`` of every cloud) and "query"; each {x, y, hovertext}, empty when absent.
    Small on purpose: the detail view sends only these when its map's clouds are already shown."""
    doc = {"x": [], "y": [], "hovertext": []}
    if highlight is not None:
        for cloud, xy in coords.items():
            xy = np.asarray(xy)
            if highlight < len(xy):
                doc["x"].append(round(float(xy[highlight][0]), 4))
                doc["y"].append(round(float(xy[highlight][1]), 4))
                doc["hovertext"].append(f"this document ({cloud})")
    query = {"x": [], "y": [], "hovertext": []}
    if query_xy is not None:
        query = {"x": [round(float(query_xy[0]), 4)], "y": [round(float(query_xy[1]), 4)],
                 "hovertext": [html.escape(query_label)]}
    return {MARK_DOCUMENT: doc, MARK_QUERY: query}


def umap_figure(coords: Mapping[str, np.ndarray], captions: Sequence[str], doc_ids: Sequence[str],
                categories: Sequence[str], colour_by: str = "modality", query_xy: np.ndarray | None = None,
                query_label: str = "", highlight: int | None = None, title: str = "",
                height: int = SCATTER_HEIGHT, opacity: float = 0.55, thumbs: Mapping | None = None,
                key: str = "", always_marks: bool = False) -> go.Figure:
    """UMAP scatter of a retriever's clouds (each in corpus order), optional query marker and
    one highlighted document (shown in every cloud it appears in).

    ``thumbs`` ({"base": URL prefix, "paths": one per document or None}) puts each image and
    document point's row in its ``customdata`` and the list in ``layout.meta``, for the hover
    preview (``THUMB_HOVER_JS``); ``key`` names the clouds in ``layout.meta`` too. With
    ``always_marks`` both marker traces exist even when empty, so the browser can move them."""
    if colour_by not in COLOUR_MODES:
        raise ValueError(f"colour_by must be one of {COLOUR_MODES}, got {colour_by!r}")
    hover = [f"<b>{html.escape(c)}</b><br>{html.escape(d)}" for c, d in zip(captions, doc_ids)]
    groups = [top_category(c) for c in categories]
    fig = go.Figure()
    ordered = sorted(coords.items(), key=lambda item: DRAW_ORDER.index(item[0]) if item[0] in DRAW_ORDER else -1)
    for cloud, xy in ordered:
        xy = np.asarray(xy)
        size = MODALITY_SIZES.get(cloud, 6)
        previews = thumbs is not None and cloud in PREVIEW_CLOUDS  # a caption point has no picture
        if colour_by == "modality":
            fig.add_trace(go.Scattergl(
                x=xy[:, 0], y=xy[:, 1], mode="markers", name=cloud, hovertext=hover[:len(xy)],
                hovertemplate=f"%{{hovertext}}<br>{cloud}<extra></extra>",
                customdata=np.arange(len(xy), dtype=np.int32) if previews else None,
                marker={"size": size, "color": MODALITY_COLOURS.get(cloud, "#6b7280"), "opacity": opacity,
                            "symbol": MODALITY_SYMBOLS.get(cloud, "circle")}))
            continue
        for i, group in enumerate(sorted(set(groups))):
            rows = [j for j in range(len(xy)) if groups[j] == group]
            fig.add_trace(go.Scattergl(
                x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=group, legendgroup=group,
                showlegend=cloud == ordered[0][0], hovertext=[hover[j] for j in rows],
                hovertemplate=f"%{{hovertext}}<br>{cloud} · {html.escape(group)}<extra></extra>",
                customdata=np.asarray(rows, dtype=np.int32) if previews else None,
                marker={"size": size, "color": CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)], "opacity": opacity,
                            "symbol": MODALITY_SYMBOLS.get(cloud, "circle")}))
    # The current document and the query are drawn last, on the same WebGL layer as the clouds,
    # so they sit on top; which cloud a ring marks is in its hover text, not printed beside it.
    marks = map_marks(coords, highlight, query_xy, query_label)
    doc, query = marks[MARK_DOCUMENT], marks[MARK_QUERY]
    if doc["x"] or always_marks:
        fig.add_trace(go.Scattergl(
            **doc, mode="markers", name=MARK_DOCUMENT, showlegend=bool(doc["x"]),
            hovertemplate="%{hovertext}<extra></extra>",
            marker={"size": 18, "symbol": "circle", "color": "rgba(0,0,0,0)",
                    "line": {"width": 3, "color": "#111827"}}))
    if query["x"] or always_marks:
        fig.add_trace(go.Scattergl(
            **query, mode="markers", name=MARK_QUERY, showlegend=bool(query["x"]),
            hovertemplate="query: %{hovertext}<extra></extra>",
            marker={"size": 20, "symbol": "star", "color": "#facc15", "line": {"width": 2, "color": "#111827"}}))
    if thumbs is not None or key:
        fig.update_layout(meta={"ciea_map": key, "thumbs": dict(thumbs) if thumbs is not None else None})
    fig.update_xaxes(showticklabels=False, title=None, zeroline=False)
    fig.update_yaxes(showticklabels=False, title=None, zeroline=False)
    if height < SCATTER_HEIGHT:  # small (detail view): legend under the plot, not beside it
        return _layout(fig, height, title, legend={"orientation": "h", "y": -0.02, "yanchor": "top", "x": 0})
    return _layout(fig, height, title, legend_title_text=colour_by)


def _interval(ci: object) -> tuple[float, float] | None:
    """A confidence interval given as {low, high} or [low, high], else None."""
    if isinstance(ci, Mapping) and "low" in ci and "high" in ci:
        return float(ci["low"]), float(ci["high"])
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return float(ci[0]), float(ci[1])
    return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def geometry_statistics(report: Mapping) -> list[tuple[str, float, tuple[float, float] | None, str]]:
    """(statistic, value, confidence interval or None, note) from a saved geometry report;
    statistics the report lacks are left out."""
    out = []

    def add(name: str, value: object, ci: object = None, note: str = "") -> None:
        number = _number(value)
        if number is not None:
            out.append((name, number, _interval(ci), note))

    add("centroid gap", report.get("centroid_gap"), report.get("centroid_gap_ci"),
        _resamples_note(report.get("centroid_gap_ci")))
    w2 = report.get("wasserstein2") or {}
    add("Wasserstein-2, exact", w2.get("distance"), w2.get("ci"),
        f"n = {w2.get('n')} per side" + ("" if w2.get("converged", True) else ", solver did not converge"))
    sliced = report.get("sliced_wasserstein") or {}
    add("Wasserstein-2, sliced", sliced.get("distance"), None,
        f"{sliced.get('n_projections')} projections, n = {sliced.get('n')}")
    cosine = report.get("cosine") or {}
    for key, label in (("matched_mean", "cosine, matched image-caption pairs"),
                       ("random_mean", "cosine, random image-caption pairs"),
                       ("within_image_mean", "cosine, within images"), ("within_text_mean", "cosine, within captions")):
        add(label, cosine.get(key))
    add("document gap", report.get("document_gap"))
    return out


def _resamples_note(ci: object) -> str:
    if isinstance(ci, Mapping) and ci.get("n_resamples"):
        return f"{round(100 * float(ci.get('confidence', 0.95)))}% bootstrap CI, {ci['n_resamples']} resamples"
    return ""


def statistics_rows(report: Mapping) -> list[list]:
    """Table rows: statistic, value, CI low, CI high, note (rounded for reading)."""
    return [[name, round(value, 4), round(ci[0], 4) if ci else "", round(ci[1], 4) if ci else "", note]
            for name, value, ci, note in geometry_statistics(report)]


STATISTICS_HEADERS = ["statistic", "value", "CI low", "CI high", "note"]
#: Which way each statistic points, for the chart's labels.
DIRECTIONS = {"cosine, matched image-caption pairs": "higher = better aligned",
              "cosine, random image-caption pairs": "lower = less crowded",
              "cosine, within images": "lower = less crowded", "cosine, within captions": "lower = less crowded"}


def _direction(statistic: str) -> str:
    return DIRECTIONS.get(statistic, "lower = smaller gap")


def statistics_figure(reports: Mapping[str, Mapping], selected: str | None = None,
                      height: int = CHART_HEIGHT) -> go.Figure:
    """Grouped bars: each statistic for every retriever with a report, with CI error bars."""
    if not reports:
        return notice_figure("No geometry reports yet.", height)
    fig = go.Figure()
    for i, (name, report) in enumerate(reports.items()):
        stats = geometry_statistics(report)
        fig.add_trace(go.Bar(
            y=[f"{s[0]}<br><i>{_direction(s[0])}</i>" for s in stats], x=[s[1] for s in stats], name=name,
            orientation="h",
            marker={"color": CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)],
                        "line": {"width": 3 if name == selected else 0, "color": "#111827"}},
            error_x={"type": "data", "symmetric": False,
                         "array": [(s[2][1] - s[1]) if s[2] else 0 for s in stats],
                         "arrayminus": [(s[1] - s[2][0]) if s[2] else 0 for s in stats], "visible": True}))
    fig.update_yaxes(autorange="reversed", automargin=True)  # top to bottom in table order
    fig.update_xaxes(title="distance (0 to 2) or cosine (-1 to 1)")
    n_stats = max(len(geometry_statistics(r)) for r in reports.values())
    per_stat = max(44, 12 * len(reports) + 10)  # room for a two-line label and one bar per retriever
    return _layout(fig, max(height, 140 + n_stats * per_stat),
                   "Gap and cosine statistics (whiskers: confidence intervals)", barmode="group",
                   legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0})


def gap_shift_figure(report: Mapping, height: int = SMALL_HEIGHT + 60) -> go.Figure:
    """How each gap metric moves when the image cloud is shifted along the centroid gap."""
    points = [p for p in report.get("gap_shift") or [] if _number(p.get("factor")) is not None]
    if not points:
        return notice_figure("This report has no gap-shift curve.", height)
    fig = go.Figure()
    for metric in dict.fromkeys(p.get("metric", "value") for p in points):
        rows = sorted((p for p in points if p.get("metric", "value") == metric), key=lambda p: p["factor"])
        fig.add_trace(go.Scatter(x=[p["factor"] for p in rows], y=[p.get("value") for p in rows],
                                 mode="lines+markers", name=str(metric)))
    metrics = list(dict.fromkeys(str(p.get("metric", "value")) for p in points))
    fig.update_xaxes(title="shift factor (0 = as trained, 1 = image and caption centroids aligned)")
    measure = "MRR@10" if all("mrr@10" in m.lower() for m in metrics) else "retrieval metric"
    fig.update_yaxes(title=f"{measure} (higher = better)")
    return _layout(fig, height, "Gap-shift curve: retrieval as the modality gap is closed")


def _whiskers(report: Mapping, metric: str, kind: str, names: Sequence[str],
              intervals: Mapping[tuple[str, str], tuple[float, float] | None] | None) -> dict | None:
    """Asymmetric error bars for MRR@10 bars from bootstrap intervals, else None."""
    if metric != "mrr@10" or not intervals:
        return None
    values = [float(report["metrics"][n][kind].get(metric) or 0.0) for n in names]
    cis = [intervals.get((n, kind)) for n in names]
    return {"type": "data", "symmetric": False, "visible": True,
            "array": [max(0.0, ci[1] - v) if ci else 0.0 for v, ci in zip(values, cis)],
            "arrayminus": [max(0.0, v - ci[0]) if ci else 0.0 for v, ci in zip(values, cis)]}


def benchmark_figure(report: Mapping, metric: str,
                     intervals: Mapping[tuple[str, str], tuple[float, float] | None] | None = None,
                     height: int = CHART_HEIGHT) -> go.Figure:
    """Grouped bars of one metric: x = retriever, one bar per query kind; MRR@10 bars get
    whiskers where ``intervals`` has their (retriever, kind) interval."""
    by_retriever = report.get("metrics", {}) if report else {}
    if not by_retriever:
        return notice_figure("No evaluation report for this split yet.", height)
    kinds = list(dict.fromkeys(kind for by_kind in by_retriever.values() for kind in by_kind))
    fig = go.Figure()
    for i, kind in enumerate(kinds):
        names = [n for n, by_kind in by_retriever.items() if kind in by_kind]
        fig.add_trace(go.Bar(x=names, y=[by_retriever[n][kind].get(metric) for n in names], name=kind,
                             marker_color=CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)],
                             text=[f"{by_retriever[n][kind].get(metric, 0):.2f}" for n in names],
                             textposition="outside", error_y=_whiskers(report, metric, kind, names, intervals)))
    fig.update_traces(cliponaxis=False)  # value labels above the tallest bar stay visible
    fig.update_yaxes(title=metric, rangemode="tozero")
    return _layout(fig, height, f"{metric} per retriever and query kind", barmode="group",
                   legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0})
