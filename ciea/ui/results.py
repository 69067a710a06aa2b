"""Side-by-side result table: one column per retriever, one row per rank.

Everything that comes from data or users (captions, ids, queries, messages) goes through
``html.escape``; image URLs are built from paths under the served assets folder only.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

from ciea.retrievers import REGISTRY
from ciea.service import ResultRow, SearchResponse

CSS = """
.ciea-results { width: 100%; border-collapse: separate; border-spacing: 6px; table-layout: fixed; border: none; }
.ciea-results th { text-align: left; font-weight: 600; padding: 4px 6px; border: none; background: none; }
.ciea-results th:first-child { width: 2.5em; }
.ciea-results th small { display: block; font-weight: 400; opacity: .75; }
.ciea-results td { vertical-align: top; padding: 6px; border-radius: 8px;
  background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.ciea-results td.rank { width: 2.5em; text-align: center; font-weight: 600; background: none; border: none; }
.ciea-card { display: flex; gap: 8px; align-items: flex-start; }
.ciea-card img { width: 72px; height: 72px; object-fit: contain; background: #fff; border-radius: 6px; flex: none; }
.ciea-card .cap { font-size: .92em; line-height: 1.25; overflow-wrap: anywhere; }
.ciea-card .meta { font-size: .78em; opacity: .7; margin-top: 3px; overflow-wrap: anywhere; }
.ciea-notice { padding: 6px 10px; border-radius: 6px; margin-bottom: 6px;
  background: var(--color-accent-soft); }
"""


def file_url(path: Path) -> str:
    """URL under which Gradio serves a file inside its static paths."""
    return "/gradio_api/file=" + quote(str(Path(path).resolve()))


def _card(row: ResultRow) -> str:
    img = (f'<img src="{html.escape(file_url(row.image))}" alt="{html.escape(row.text)}" loading="lazy">'
           if row.image is not None else "")
    return (
        f'<div class="ciea-card" data-doc-id="{html.escape(row.doc_id)}">{img}<div>'
        f'<div class="cap">{html.escape(row.text)}</div>'
        f'<div class="meta">score {row.score:.3f} · {html.escape(row.doc_id)}</div></div></div>'
    )


def notices_html(notices: list[str]) -> str:
    return "".join(f'<div class="ciea-notice">{html.escape(n)}</div>' for n in notices)


def results_html(response: SearchResponse, towers: Mapping[str, str]) -> str:
    """The results of every retriever side by side, aligned by rank."""
    names = list(response.results)
    head = "".join(
        f"<th>{html.escape(REGISTRY[n].title if n in REGISTRY else n)}"
        f"<small>{html.escape(n)} · {html.escape(towers.get(n, ''))}</small></th>"
        for n in names
    )
    depth = max((len(rows) for rows in response.results.values()), default=0)
    body = []
    for i in range(depth):
        cells = "".join(
            f"<td>{_card(response.results[n][i])}</td>" if i < len(response.results[n]) else "<td></td>"
            for n in names
        )
        body.append(f'<tr><td class="rank">{i + 1}</td>{cells}</tr>')
    table = (f'<table class="ciea-results"><thead><tr><th></th>{head}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table>') if names else ""
    return notices_html(response.notices) + table


def message_html(message: str) -> str:
    return notices_html([message])
