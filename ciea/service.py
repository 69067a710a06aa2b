"""The search service: loads backbone and indexes once, answers the app and the CLI.

A damaged or mismatched index disables only its own retriever; the reason is kept and
shown, and the other retrievers keep answering.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ciea.backbones import Backbone, load_backbone
from ciea.config import DEFAULT_K, Settings, configure_threads
from ciea.data.materialise import document_image
from ciea.data.schema import Corpus, available_corpora, load_corpus
from ciea.index import Expectation, IndexStoreError, VectorIndex
from ciea.retrievers import REGISTRY, Retriever, create_retriever
from ciea.validation import InputError, check_k, clean_query_text

log = logging.getLogger(__name__)
QUERY_CACHE_SIZE = 512


@dataclass(frozen=True)
class ResultRow:
    rank: int
    doc_id: str
    score: float
    text: str
    image: Path | None
    category: str


@dataclass
class SearchResponse:
    query: str
    corpus: str
    k: int
    results: dict[str, list[ResultRow]]
    notices: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "corpus": self.corpus,
            "k": self.k,
            "notices": self.notices,
            "results": {
                name: [{"rank": r.rank, "doc_id": r.doc_id, "score": round(r.score, 6), "text": r.text,
                        "category": r.category} for r in rows]
                for name, rows in self.results.items()
            },
        }


@dataclass
class RetrieverState:
    """A retriever and its index for one corpus, or why it is unavailable."""

    name: str
    retriever: Retriever | None = None
    index: VectorIndex | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.index is not None


class SearchService:
    """Everything a query needs, loaded once per process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        configure_threads()
        self._lock = threading.Lock()
        self._backbone: Backbone | None = None
        self._corpora: dict[str, Corpus] = {}
        self._states: dict[str, dict[str, RetrieverState]] = {}

    # -- loading ---------------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        with self._lock:
            if self._backbone is None:
                self._backbone = load_backbone(self.settings.backbone)
            return self._backbone

    def corpora(self) -> list[str]:
        return available_corpora(self.settings.assets_dir)

    def corpus(self, name: str) -> Corpus:
        if name not in self._corpora:
            if name not in self.corpora():
                raise InputError(f"Unknown corpus {name!r}. Available: {', '.join(self.corpora()) or 'none'}.")
            self._corpora[name] = load_corpus(name, self.settings.assets_dir)
        return self._corpora[name]

    def states(self, corpus: str) -> dict[str, RetrieverState]:
        """Every registered retriever for ``corpus``, loaded or with its error."""
        if corpus not in self._states:
            self.corpus(corpus)
            self._states[corpus] = {name: self._load_state(corpus, name) for name in REGISTRY}
        return self._states[corpus]

    def _load_state(self, corpus: str, name: str) -> RetrieverState:
        try:
            retriever = create_retriever(name, self.backbone)
            expect = Expectation(corpus, name, self.backbone.spec, retriever.dim, retriever.checkpoint_sha256)
            index = VectorIndex.load(self.settings.index_dir(corpus, name), expect)
        except (IndexStoreError, OSError, ValueError) as exc:
            log.warning("retriever %s unavailable for %s: %s", name, corpus, exc)
            return RetrieverState(name, error=str(exc))
        return RetrieverState(name, retriever, index)

    def retrievers(self, corpus: str) -> list[str]:
        """Names of the retrievers that can answer on ``corpus``."""
        return [name for name, st in self.states(corpus).items() if st.ready]

    def unavailable(self, corpus: str) -> dict[str, str]:
        return {name: st.error or "" for name, st in self.states(corpus).items() if not st.ready}

    def benchmarks(self, corpus: str) -> dict[str, dict]:
        """Saved evaluation reports (``python -m ciea eval``) for ``corpus``, by split."""
        import json

        folder = self.settings.indexes_dir / corpus
        reports = {}
        for path in sorted(folder.glob("eval_*.json")):
            try:
                reports[path.stem.removeprefix("eval_")] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("unreadable evaluation report %s: %s", path, exc)
        return reports

    def retriever(self, corpus: str, name: str) -> RetrieverState:
        states = self.states(corpus)
        if name not in states:
            raise InputError(f"Unknown retriever {name!r}. Known: {', '.join(states)}.")
        return states[name]

    # -- querying --------------------------------------------------------------------
    @functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
    def _query_vector(self, corpus: str, name: str, text: str) -> np.ndarray:
        return self.retriever(corpus, name).retriever.encode_queries([text])[0]

    def search(self, query: str, corpus: str, retrievers: Sequence[str] | None = None,
               k: int = DEFAULT_K) -> SearchResponse:
        """Top-k results of each requested retriever for one text query."""
        clean = clean_query_text(query)
        k = check_k(k)
        names = list(retrievers) if retrievers is not None else self.retrievers(corpus)
        if not names:
            raise InputError("Select at least one retriever.")
        notices = list(clean.notices)
        tokens = self.backbone.count_tokens(clean.text)
        if tokens > self.backbone.max_text_tokens:
            notices.append(f"The query is {tokens} tokens long; only the first "
                           f"{self.backbone.max_text_tokens} were used.")
        docs = self.corpus(corpus)
        results: dict[str, list[ResultRow]] = {}
        for name in names:
            state = self.retriever(corpus, name)
            if not state.ready:
                notices.append(f"{name} is unavailable: {state.error}")
                continue
            hits = state.index.search(self._query_vector(corpus, name, clean.text)[None, :], k)[0]
            results[name] = [self._row(docs, rank, h.doc_id, h.score) for rank, h in enumerate(hits, 1)]
        return SearchResponse(clean.text, corpus, k, results, notices)

    def search_batch(self, texts: Sequence[str], corpus: str, name: str, k: int):
        """Hits for many queries with one retriever (CLI runs, evaluation)."""
        k = check_k(k)
        state = self.retriever(corpus, name)
        if not state.ready:
            raise InputError(f"{name} is unavailable on {corpus}: {state.error}")
        cleaned = [clean_query_text(t).text for t in texts]
        vectors = state.retriever.encode_queries(cleaned) if cleaned else np.zeros((0, state.index.manifest.dim))
        return state.index.search(vectors, k)

    @staticmethod
    def _row(docs: Corpus, rank: int, doc_id: str, score: float) -> ResultRow:
        doc = docs.get(doc_id)
        return ResultRow(rank, doc_id, score, doc.text, document_image(docs, doc), doc.category)
