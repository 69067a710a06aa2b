"""Side-by-side results: one column per retriever, one grid row per rank, a verdict per column.

The layout is a CSS grid (not a table): each retriever's header, verdict and cards are placed in
its column, so a row's cards line up by rank and stretch to the tallest. The grid scrolls
sideways when its columns would get narrower than a card can be; on a phone each retriever
becomes a stacked section (``ciea.ui.style``).

The verdict row says how each column did: for judged queries from the relevance judgements;
for unjudged ones from the reviewer's own marks (the mark button on each card, handled in the
browser by ``CARD_CLICK_JS``; a document marked in one column is marked in every column).

Everything that comes from data or users (captions, ids, queries, messages) goes through
``html.escape``; image URLs are built from paths under the served assets folder only.
Cards carry their document id and retriever as data attributes, so one click handler can open
the detail view for any of them.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ciea.service import ResultRow, SearchResponse, retriever_title, unavailable_notice

#: Two scores closer than this are the same score (FAISS returns float32 inner products).
TIE_TOLERANCE = 1e-5
SCORES_NOTE = ("Scores are not comparable across columns: each retriever scores on its own scale, so compare "
               "ranks and verdicts.")

#: ``js_on_load`` of every results ``gr.HTML``. A click (or Enter / Space) on a card fires the
#: component's click event with the card's document id and retriever, and the grid's corpus and
#: text query (read in Python as gr.EventData). A click on a card's mark button instead toggles
#: the reviewer's relevance mark on that document in every column and rescores the verdict row
#: with the same formula as ``column_verdict``.
CARD_CLICK_JS = """
const verdictText = (ranks, k) => {
  if (!ranks.length) return `no relevant result in the top ${k} · RR 0.00`;
  return `first relevant at rank ${ranks[0]} · RR ${(1 / ranks[0]).toFixed(2)} · ${ranks.length} of ${k} relevant`;
};
const rescore = (grid) => {
  const marked = new Set([...grid.querySelectorAll('.ciea-card[data-marked]')].map(c => c.dataset.docId));
  const cols = [...grid.querySelectorAll('.ciea-verdict[data-manual]')].map(v => {
    const cards = [...grid.querySelectorAll('.ciea-card')].filter(c => c.dataset.retriever === v.dataset.retriever);
    const ranks = cards.filter(c => marked.has(c.dataset.docId)).map(c => Number(c.dataset.rank));
    return {v, ranks, k: cards.length, rr: ranks.length ? 1 / ranks[0] : 0};
  });
  const best = Math.max(0, ...cols.map(c => c.rr));
  const top = Math.max(0, ...cols.filter(c => c.rr === best).map(c => c.ranks.length));
  for (const c of cols) {
    const isBest = best > 0 && c.rr === best && c.ranks.length === top;
    c.v.querySelector('.text').textContent = marked.size
      ? verdictText(c.ranks, c.k) + ' (your marks)' : c.v.dataset.empty;
    c.v.toggleAttribute('data-best', isBest);
    c.v.querySelector('.best').hidden = !isBest;
  }
};
const mark = (button) => {
  const card = button.closest('.ciea-card');
  const grid = card.closest('.ciea-results');
  const on = !card.hasAttribute('data-marked');
  for (const c of grid.querySelectorAll('.ciea-card')) {
    if (c.dataset.docId !== card.dataset.docId) continue;
    c.toggleAttribute('data-marked', on);
    const b = c.querySelector('.ciea-mark');
    if (b) { b.setAttribute('aria-pressed', String(on)); b.textContent = on ? '\\u2713 relevant' : 'mark relevant'; }
  }
  rescore(grid);
};
const open = (e) => {
  const button = e.target.closest('.ciea-mark');
  if (button && element.contains(button)) { e.preventDefault(); e.stopPropagation(); mark(button); return; }
  const card = e.target.closest('.ciea-card');
  if (!card || !element.contains(card)) return;
  e.preventDefault();
  const grid = card.closest('.ciea-results');
  trigger('click', {doc_id: card.dataset.docId, retriever: card.dataset.retriever,
                    corpus: grid ? grid.dataset.corpus : '', query: grid ? grid.dataset.query : ''});
};
element.addEventListener('click', open);
element.addEventListener('keydown', (e) => {
  if (e.target.closest('.ciea-mark')) return;  // the button's own click handles Enter and Space
  if (e.key === 'Enter' || e.key === ' ') open(e);
});
"""


def file_url(path: Path) -> str:
    """URL under which Gradio serves a file inside its static paths."""
    return "/gradio_api/file=" + quote(str(Path(path).resolve()))


def thumbnail_urls(paths: Sequence[Path | None]) -> dict:
    """Compact hover-preview URLs for a map: {"base": URL of the folder the images share,
    "paths": each path below it, URL-quoted, or None}. One shared prefix keeps the list small
    (it travels with every map's clouds)."""
    existing = [Path(p).resolve() for p in paths if p is not None]
    if not existing:
        return {"base": "", "paths": [None] * len(paths)}
    root = Path(os.path.commonpath([p.parent for p in existing]))
    return {"base": file_url(root) + "/",
            "paths": [None if p is None else quote(Path(p).resolve().relative_to(root).as_posix()) for p in paths]}


@dataclass(frozen=True)
class Verdict:
    """How one column did on a judged query: the first relevant rank (None when there is
    none in the top k), its reciprocal rank, and how many of the k shown are relevant."""

    first: int | None
    reciprocal_rank: float
    relevant: int
    k: int

    @property
    def text(self) -> str:
        if self.first is None:
            return f"no relevant result in the top {self.k} · RR 0.00"
        return (f"first relevant at rank {self.first} · RR {self.reciprocal_rank:.2f} · "
                f"{self.relevant} of {self.k} relevant")


def column_verdict(rows: Sequence[ResultRow]) -> Verdict:
    """The verdict of one retriever's rows (``relevant`` flags from the judgements)."""
    ranks = [r.rank for r in rows if r.relevant]
    first = min(ranks) if ranks else None
    return Verdict(first, 1.0 / first if first else 0.0, len(ranks), len(rows))


def best_columns(verdicts: Mapping[str, Verdict]) -> set[str]:
    """The columns with the highest reciprocal rank (ties broken by relevant count); none
    when no column found anything."""
    if not verdicts:
        return set()
    top = max((v.reciprocal_rank, v.relevant) for v in verdicts.values())
    return {n for n, v in verdicts.items() if (v.reciprocal_rank, v.relevant) == top} if top[0] > 0 else set()


def ties(rows: Sequence[ResultRow]) -> dict[int, tuple[int, bool]]:
    """Rank -> (how many shown rows share its score, whether the run reaches the last shown
    row, so more may follow below), for rows whose score is tied with a neighbour's."""
    out: dict[int, tuple[int, bool]] = {}
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or abs(rows[i].score - rows[start].score) > TIE_TOLERANCE:
            if i - start > 1:
                for r in rows[start:i]:
                    out[r.rank] = (i - start, i == len(rows))
            start = i
    return out


def _card(row: ResultRow, retriever: str, grid_row: int, tie: tuple[int, bool] | None, markable: bool) -> str:
    img = (f'<img src="{html.escape(file_url(row.image))}" alt="" loading="lazy">'
           if row.image is not None else "")
    tick = '<span class="ciea-rel" aria-hidden="true">&#10003;</span>' if row.relevant else ""
    flag = ' data-relevant="true"' if row.relevant else ""
    label = f"Rank {row.rank}: {row.text}" + (" (judged relevant)" if row.relevant else "") + ". Open details."
    tie_note = ""
    if tie is not None:
        count = f"{tie[0]} or more" if tie[1] else str(tie[0])
        tie_note = (f'<div class="ciea-tie" title="Their order is arbitrary.">tie: {count} documents share '
                    f"this score</div>")
    button = ('<button type="button" class="ciea-mark" aria-pressed="false" '
              'title="Mark as relevant (marks this document in every column)">mark relevant</button>'
              if markable else "")
    return (
        f'<div class="ciea-card"{flag} role="button" tabindex="0" style="grid-row:{grid_row}" '
        f'data-doc-id="{html.escape(row.doc_id)}" data-retriever="{html.escape(retriever)}" '
        f'data-rank="{row.rank}" aria-label="{html.escape(label)}"><div class="body">{img}<div class="words">'
        f'<div class="cap"><span class="rank">{row.rank}</span>{tick}{html.escape(row.text)}</div>'
        f'<div class="meta">score {row.score:.3f} · {html.escape(row.doc_id)}</div>{tie_note}</div></div>'
        f"{button}</div>"
    )


def notices_html(notices: list[str]) -> str:
    return "".join(f'<div class="ciea-notice" role="status">{html.escape(n)}</div>' for n in notices)


def legend_html(response: SearchResponse, note: str = "") -> str:
    """What the query was, what the marks mean here, that scores are per column, and
    ``note`` (e.g. which retriever a curated example expects to win)."""
    if response.mode == "image":
        text = (f"Image query: {response.query}. Not judged: mark the results you find relevant to score "
                "each column. Click a result for details.")
    elif response.judged:
        n = len({r.doc_id for rows in response.results.values() for r in rows if r.relevant})
        text = (f"This query has relevance judgements on {response.corpus}: green cards with a tick "
                f"are relevant ({n} shown). Click a result for details.")
    else:
        text = ("No relevance judgements for this query: mark the results you find relevant (a document "
                "marks in every column) and the verdict row scores each column. Click a result for details.")
    lines = [text, SCORES_NOTE] + ([note] if note else [])
    return "".join(f'<div class="ciea-legend">{html.escape(line)}</div>' for line in lines)


def _head(name: str, towers: str) -> str:
    return (f'<div class="ciea-head" style="grid-row:1"><b>{html.escape(retriever_title(name))}</b>'
            f"<small>{html.escape(name)}</small>"
            f'<small class="towers" title="{html.escape(towers)}">{html.escape(towers)}</small></div>')


def _verdict(name: str, verdict: Verdict | None, best: bool, k: int) -> str:
    """A column's verdict cell; without judgements it waits for the reviewer's marks."""
    badge = f'<span class="best"{"" if best else " hidden"}>best</span>'
    if verdict is not None:
        return (f'<div class="ciea-verdict" style="grid-row:2" data-retriever="{html.escape(name)}"'
                f'{" data-best" if best else ""}>{badge}<span class="text">{html.escape(verdict.text)}</span></div>')
    empty = f"not judged: mark relevant results to score the top {k}"
    return (f'<div class="ciea-verdict" style="grid-row:2" data-retriever="{html.escape(name)}" data-manual '
            f'data-empty="{html.escape(empty)}">{badge}<span class="text">{html.escape(empty)}</span></div>')


def results_html(response: SearchResponse, towers: Mapping[str, str], note: str = "") -> str:
    """The results of every retriever side by side, aligned by rank, with a verdict per column."""
    names = list(response.results)
    verdicts = {n: column_verdict(rows) for n, rows in response.results.items()} if response.judged else {}
    best = best_columns(verdicts)
    columns = []
    for c, name in enumerate(names, 1):
        rows = response.results[name]
        tied = ties(rows)
        cards = "".join(_card(r, name, i + 3, tied.get(r.rank), not response.judged) for i, r in enumerate(rows))
        columns.append(f'<section class="ciea-col" style="--c:{c}" aria-label="{html.escape(retriever_title(name))}">'
                       f"{_head(name, towers.get(name, ''))}"
                       f"{_verdict(name, verdicts.get(name), name in best, len(rows))}{cards}</section>")
    query = response.query if response.mode == "text" else ""
    grid = (f'<div class="ciea-results" data-corpus="{html.escape(response.corpus)}" '
            f'data-query="{html.escape(query)}" data-judged="{str(response.judged).lower()}">'
            f'<div class="ciea-grid" style="--cols:{len(names)}">{"".join(columns)}</div></div>') if names else ""
    skipped = {unavailable_notice(n, why) for n, why in response.skipped.items()}
    notices = notices_html([n for n in response.notices if n not in skipped])
    return notices + availability_html(response.skipped) + (legend_html(response, note) if names else "") + grid


def message_html(message: str) -> str:
    return notices_html([message])


def loading_html(message: str) -> str:
    """A banner shown where results will appear while the retrievers load."""
    return f'<div class="ciea-notice ciea-loading" role="status">{html.escape(message)}</div>'


def availability_html(unavailable: Mapping[str, str]) -> str:
    """A collapsed note naming the retrievers that cannot answer here, with each reason."""
    if not unavailable:
        return ""
    names = ", ".join(unavailable)
    items = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(why)}</li>" for n, why in unavailable.items())
    return (f'<details class="ciea-notice" role="status"><summary>Not available on this corpus: '
            f"{html.escape(names)} (open for why)</summary><ul>{items}</ul></details>")
