"""Relevance judgements of the corpora: the query sets each ships (or caption-as-query), and
which documents a typed query is judged relevant to."""

from __future__ import annotations

from ciea.catalogue import Catalogue
from ciea.data.schema import split_query_files
from ciea.evaluate import QuerySet
from ciea.memo import Memo
from ciea.validation import InputError, echo

#: The split name under which a corpus without shipped query sets is judged caption-as-query.
CAPTIONS_SPLIT = "captions"


def normalise_query(text: str) -> str:
    """The key under which a query text matches a judged query: case, spacing and final
    punctuation do not matter ("A frog." and "a frog" are the same query)."""
    return " ".join(str(text).split()).casefold().rstrip(" .!?")


class Judgements:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._query_sets: Memo[QuerySet] = Memo()
        self._relevance: Memo[dict[str, frozenset[str]]] = Memo()

    def query_splits(self, corpus: str) -> list[str]:
        """Names of the judged query sets of ``corpus``: its shipped splits, else captions."""
        root = self.catalogue.corpus(corpus).root
        prefix, suffix = split_query_files(root, "{}")[0].name.split("{}")  # schema names the files
        shipped = sorted(p.name[len(prefix):len(p.name) - len(suffix)]
                         for p in root.glob(f"{prefix}*{suffix}") if p.is_file())
        return [s for s in shipped if split_query_files(root, s)[1].is_file()] or [CAPTIONS_SPLIT]

    def query_set(self, corpus: str, split: str) -> QuerySet:
        """Queries and qrels of one split: a shipped set, or caption-as-query for ``captions``
        (on any corpus). Unpacks as ``queries, qrels``."""
        docs = self.catalogue.corpus(corpus)  # validates the name first
        key = (corpus, str(split))
        if key not in self._query_sets and split != CAPTIONS_SPLIT and split not in self.query_splits(corpus):
            raise InputError(f"No query set {echo(split)} for corpus {corpus!r}. "
                             f"Known: {', '.join(self.query_splits(corpus))}; '{CAPTIONS_SPLIT}' "
                             "asks each caption to find its own document.")
        return self._query_sets.get(key, lambda: QuerySet.shipped(docs.root, split) or QuerySet.captions(docs))

    def relevance_table(self, corpus: str) -> dict[str, frozenset[str]]:
        """Normalised query text -> relevant doc ids, over every judged split of ``corpus``
        (a text judged in several splits is relevant to the union of their documents)."""
        self.catalogue.corpus(corpus)  # validates the name first
        return self._relevance.get(corpus, lambda: self._table(corpus))

    def _table(self, corpus: str) -> dict[str, frozenset[str]]:
        table: dict[str, set[str]] = {}
        for split in self.query_splits(corpus):
            queries, qrels = self.query_set(corpus, split)
            for q in queries:
                if q.qid in qrels:
                    table.setdefault(normalise_query(q.text), set()).update(
                        d for d, rel in qrels[q.qid].items() if rel > 0)
        return {text: frozenset(docs) for text, docs in table.items()}

    def relevant(self, corpus: str, query: str) -> frozenset[str]:
        """Doc ids judged relevant to this query text on ``corpus`` (empty when unjudged)."""
        return self.relevance_table(corpus).get(normalise_query(query), frozenset())
