"""Side-by-side result table: one column per retriever, one row per rank.

Everything that comes from data or users (captions, ids, queries, messages) goes through
``html.escape``; image URLs are built from paths under the served assets folder only.
Cards carry their document id and retriever as data attributes, so one click handler
(``CARD_CLICK_JS``) can open the detail view for any of them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from ciea.retrievers import REGISTRY
from ciea.service import ResultRow, SearchResponse, unavailable_notice

#: ``js_on_load`` of every results ``gr.HTML``: a click (or Enter / Space) on a card fires the
#: component's click event with the card's document id and retriever, and the table's corpus
#: and text query (read in Python as gr.EventData).
CARD_CLICK_JS = """
const open = (e) => {
  const card = e.target.closest('.ciea-card');
  if (!card || !element.contains(card)) return;
  e.preventDefault();
  const table = card.closest('.ciea-results');
  trigger('click', {doc_id: card.dataset.docId, retriever: card.dataset.retriever,
                    corpus: table ? table.dataset.corpus : '', query: table ? table.dataset.query : ''});
};
element.addEventListener('click', open);
element.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') open(e); });
"""


def file_url(path: Path) -> str:
    """URL under which Gradio serves a file inside its static paths."""
    return "/gradio_api/file=" + quote(str(Path(path).resolve()))


def retriever_title(name: str) -> str:
    return REGISTRY[name].title if name in REGISTRY else name


def _card(row: ResultRow, retriever: str) -> str:
    img = (f'<img src="{html.escape(file_url(row.image))}" alt="" loading="lazy">'
           if row.image is not None else "")
    mark = '<span class="ciea-rel" aria-hidden="true">&#10003;</span>' if row.relevant else ""
    flag = ' data-relevant="true"' if row.relevant else ""
    label = f"Rank {row.rank}: {row.text}" + (" (judged relevant)" if row.relevant else "") + ". Open details."
    return (
        f'<div class="ciea-card"{flag} role="button" tabindex="0" '
        f'data-doc-id="{html.escape(row.doc_id)}" data-retriever="{html.escape(retriever)}" '
        f'aria-label="{html.escape(label)}">{img}<div>'
        f'<div class="cap">{mark}{html.escape(row.text)}</div>'
        f'<div class="meta">score {row.score:.3f} · {html.escape(row.doc_id)}</div></div></div>'
    )


def notices_html(notices: list[str]) -> str:
    return "".join(f'<div class="ciea-notice" role="status">{html.escape(n)}</div>' for n in notices)


def legend_html(response: SearchResponse) -> str:
    """One line saying what the query was and what the relevance marks mean here."""
    if response.mode == "image":
        text = f"Image query: {response.query}. Click a result for details."
    elif response.judged:
        n = len({r.doc_id for rows in response.results.values() for r in rows if r.relevant})
        text = (f"This query has relevance judgements on {response.corpus}: green cards with a tick "
                f"are relevant ({n} shown). Click a result for details.")
    else:
        text = ("No relevance judgements for this query (try an example query to see relevant results "
                "marked). Click a result for details.")
    return f'<div class="ciea-legend">{html.escape(text)}</div>'


def results_html(response: SearchResponse, towers: Mapping[str, str]) -> str:
    """The results of every retriever side by side, aligned by rank."""
    names = list(response.results)
    head = "".join(
        f'<th scope="col">{html.escape(retriever_title(n))}<small>{html.escape(n)}</small>'
        f'<small class="towers" title="{html.escape(towers.get(n, ""))}">{html.escape(towers.get(n, ""))}</small></th>'
        for n in names
    )
    depth = max((len(rows) for rows in response.results.values()), default=0)
    body = []
    for i in range(depth):
        cells = "".join(
            f"<td>{_card(response.results[n][i], n)}</td>" if i < len(response.results[n]) else "<td></td>"
            for n in names
        )
        body.append(f'<tr><td class="rank">{i + 1}</td>{cells}</tr>')
    query = response.query if response.mode == "text" else ""
    table = (f'<table class="ciea-results" data-corpus="{html.escape(response.corpus)}" '
             f'data-query="{html.escape(query)}"><thead><tr><th scope="col"><span class="sr-only">rank</span></th>'
             f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table>') if names else ""
    skipped = {unavailable_notice(n, why) for n, why in response.skipped.items()}
    notices = notices_html([n for n in response.notices if n not in skipped])
    return notices + availability_html(response.skipped) + (legend_html(response) if names else "") + table


def message_html(message: str) -> str:
    return notices_html([message])


def availability_html(unavailable: Mapping[str, str]) -> str:
    """A collapsed note naming the retrievers that cannot answer here, with each reason."""
    if not unavailable:
        return ""
    names = ", ".join(unavailable)
    items = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(why)}</li>" for n, why in unavailable.items())
    return (f'<details class="ciea-notice" role="status"><summary>Not available on this corpus: '
            f"{html.escape(names)} (open for why)</summary><ul>{items}</ul></details>")
