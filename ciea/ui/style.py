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
.ciea-results { overflow-x: auto; padding-bottom: 6px; }
.ciea-grid { display: grid; grid-template-columns: repeat(var(--cols), minmax(200px, 1fr)); gap: 6px 8px; }
.ciea-col { display: contents; }
.ciea-col > * { grid-column: var(--c); min-width: 0; }
.ciea-head { padding: 2px 4px; line-height: 1.25; overflow-wrap: normal; word-break: normal; hyphens: manual; }
.ciea-head small { display: block; font-weight: 400; opacity: .75; font-size: .8em; }
.ciea-head small.towers { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;
  overflow: hidden; }
.ciea-verdict { font-size: .85em; line-height: 1.3; padding: 4px 6px; border-radius: 6px;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
.ciea-verdict[data-best] { background: #dcfce7; border: 2px solid #15803d; font-weight: 600; }
.dark .ciea-verdict[data-best] { background: #052e16; }
.ciea-verdict .best { display: inline-block; margin-right: 4px; padding: 0 6px; border-radius: 999px;
  color: #fff; background: #15803d; font-size: .9em; }
.ciea-verdict .best[hidden] { display: none; }
.ciea-card { display: flex; flex-direction: column; justify-content: space-between;
  gap: 4px; padding: 6px; border-radius: 8px; box-sizing: border-box; cursor: pointer; min-width: 0;
  background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
/* The caption sits beside the thumbnail while the card is wide enough, else wraps below it
   (flex-wrap: Gradio's stylesheet processing drops @container rules). */
.ciea-card .body { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: flex-start; min-width: 0; }
.ciea-card .words { flex: 1 1 120px; min-width: 0; }
.ciea-card:hover, .ciea-card:focus-visible { border-color: var(--color-accent); outline: none;
  box-shadow: 0 0 0 2px var(--color-accent-soft); }
.ciea-card[data-relevant] { border: 3px solid #15803d; background: #f0fdf4; }
.dark .ciea-card[data-relevant] { background: #052e16; }
.ciea-card[data-marked] { border: 3px solid #2563eb; background: #eff6ff; }
.dark .ciea-card[data-marked] { background: #172554; }
.ciea-card img { width: 96px; height: 96px; object-fit: contain; background: #fff; border-radius: 6px; flex: none; }
.ciea-card .cap { font-size: 15px; line-height: 1.3; overflow-wrap: break-word; }
.ciea-card .rank { display: inline-block; min-width: 1.4em; margin-right: 4px; font-weight: 700; opacity: .7; }
.ciea-card .meta { font-size: .8em; opacity: .75; margin-top: 3px; overflow-wrap: anywhere; }
.ciea-tie { font-size: .8em; margin-top: 3px; color: #b45309; }
.ciea-mark { align-self: flex-start; font-size: .8em; padding: 1px 10px; border-radius: 999px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); color: inherit; }
.ciea-mark[aria-pressed="true"] { background: #2563eb; border-color: #2563eb; color: #fff; }
.ciea-rel { display: inline-block; margin-right: 4px; padding: 0 6px; border-radius: 999px; font-size: .8em;
  font-weight: 700; color: #fff; background: #15803d; }
/* Phones: each retriever becomes a stacked section (header, verdict, its cards). */
@media (max-width: 700px) {
  .ciea-grid { display: block; }
  .ciea-col { display: block; margin-bottom: 18px; }
  .ciea-col > * { margin-bottom: 6px; }
  .ciea-head { border-top: 2px solid var(--border-color-primary); padding-top: 6px; }
  #ciea-header p { display: none; }
}
.ciea-notice { padding: 6px 10px; border-radius: 6px; margin-bottom: 6px; background: var(--color-accent-soft); }
.ciea-legend { font-size: .9em; opacity: .85; margin: 2px 0 6px; }
.ciea-detail .cap { font-size: 1.15em; font-weight: 600; overflow-wrap: anywhere; }
.ciea-detail .meta { opacity: .75; overflow-wrap: anywhere; }
#ciea-about th, #ciea-about td:first-child { white-space: nowrap; }
#ciea-about td:first-child code { white-space: nowrap; word-break: keep-all; overflow-wrap: normal; }
#ciea-map-thumb { position: fixed; z-index: 1000; width: 132px; height: 132px; object-fit: contain;
  background: #fff; border: 1px solid #9ca3af; border-radius: 6px; box-shadow: 0 4px 14px rgba(0,0,0,.25);
  pointer-events: none; }
#ciea-map-thumb[hidden] { display: none; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0; }
"""
