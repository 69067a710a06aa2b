"""How the app looks: one stylesheet and one theme, passed to ``launch()`` (Gradio 6).

Sized for a projector (1280x720) as much as a laptop: controls are compact so the first rows of
results are visible without scrolling, captions are 15 px and wrap instead of being cut, and
result cards stack their thumbnail above the caption when a column gets narrow.
"""

from __future__ import annotations

import gradio as gr

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber", spacing_size="sm")

CSS = """
.gradio-container { max-width: 1800px !important; }
#ciea-header h1 { margin: 0; font-size: 1.5em; }
#ciea-header p { margin: 0; opacity: .8; }
#ciea-header { align-items: center; }
#ciea-examples .label { margin-bottom: 2px; }
#ciea-examples .gallery-item > div { font-size: 13px; padding: 2px 8px; }
#ciea-examples { gap: 4px; }
.ciea-results { width: 100%; border-collapse: separate; border-spacing: 6px; table-layout: fixed; border: none; }
.ciea-results th { text-align: left; font-weight: 600; padding: 4px 6px; border: none; background: none;
  vertical-align: top; }
.ciea-results th:first-child, .ciea-results td.rank { width: 2.2em; }
.ciea-results th small { display: block; font-weight: 400; opacity: .75; font-size: .8em; }
.ciea-results th small.towers { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;
  overflow: hidden; }
.ciea-results td:not(.rank) { container-type: inline-size; }
.ciea-results td { vertical-align: top; padding: 0; border: none; background: none; }
.ciea-results td.rank { text-align: center; font-weight: 600; padding-top: 8px; }
.ciea-card { display: flex; gap: 10px; align-items: flex-start; padding: 6px; border-radius: 8px; height: 100%;
  box-sizing: border-box; cursor: pointer; background: var(--block-background-fill);
  border: 1px solid var(--border-color-primary); }
.ciea-card:hover, .ciea-card:focus-visible { border-color: var(--color-accent); outline: none;
  box-shadow: 0 0 0 2px var(--color-accent-soft); }
.ciea-card[data-relevant] { border: 3px solid #15803d; background: #f0fdf4; }
.dark .ciea-card[data-relevant] { background: #052e16; }
.ciea-card img { width: 96px; height: 96px; object-fit: contain; background: #fff; border-radius: 6px; flex: none; }
.ciea-card .cap { font-size: 15px; line-height: 1.3; overflow-wrap: break-word; }
.ciea-card .meta { font-size: .8em; opacity: .75; margin-top: 3px; overflow-wrap: anywhere; }
.ciea-rel { display: inline-block; margin-right: 4px; padding: 0 6px; border-radius: 999px; font-size: .8em;
  font-weight: 700; color: #fff; background: #15803d; }
.ciea-notice { padding: 6px 10px; border-radius: 6px; margin-bottom: 6px; background: var(--color-accent-soft); }
.ciea-legend { font-size: .9em; opacity: .85; margin: 2px 0 6px; }
.ciea-detail .cap { font-size: 1.15em; font-weight: 600; overflow-wrap: anywhere; }
.ciea-detail .meta { opacity: .75; overflow-wrap: anywhere; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0; }
@container (max-width: 250px) {
  .ciea-card { flex-direction: column; gap: 4px; }
  .ciea-card img { width: 100%; height: 80px; }
}
"""
