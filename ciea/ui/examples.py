"""Curated example queries per corpus, read from ``examples.json`` beside this module.

Each entry is a judged query (its text occurs in one of the corpus's query sets), its query
kind, and one line saying which retriever should win and why, shown above its results. A corpus
without curated entries gets the first judged queries of its query sets, one per kind, so
every corpus (including ones added later) has examples whose results can be scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ciea.service import SearchService, normalise_query

EXAMPLES_FILE = Path(__file__).with_name("examples.json")
#: How many examples a corpus without curated ones gets.
FALLBACK_COUNT = 4


@dataclass(frozen=True)
class Example:
    """A curated query; ``kind`` names its query kind, ``expect`` who should win and why."""

    text: str
    kind: str = ""
    expect: str = ""

    @property
    def label(self) -> str:
        return f"{self.text}  ·  {self.kind}" if self.kind else self.text


def curated(path: Path = EXAMPLES_FILE) -> dict[str, list[Example]]:
    """The curated examples of every corpus named in ``path``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {corpus: [Example(e["text"], e.get("kind", ""), e.get("expect", "")) for e in entries]
            for corpus, entries in data.items()}


def examples_for(service: SearchService, corpus: str, path: Path = EXAMPLES_FILE) -> list[Example]:
    """The curated examples of ``corpus``, else its first judged queries (one per kind first)."""
    chosen = curated(path).get(corpus)
    if chosen:
        return chosen
    picked: list[Example] = []
    for split in service.query_splits(corpus):
        queries, qrels = service.query_set(corpus, split)
        judged = [q for q in queries if q.qid in qrels]
        firsts = list({q.kind: q for q in reversed(judged)}.values())[::-1]  # first query of each kind
        for q in firsts + judged:
            if len(picked) >= FALLBACK_COUNT:
                return picked
            if all(e.text != q.text for e in picked):
                picked.append(Example(q.text, q.kind, f"Judged query from the {split} set of {corpus}."))
    return picked


def expectation(examples: list[Example], query: str) -> str:
    """The "who should win" line of the example whose text is ``query`` ("" for other queries)."""
    key = normalise_query(query)
    return next((e.expect for e in examples if normalise_query(e.text) == key), "")
