"""The search service: what the app and the CLI ask, answered from parts with one job each.

``Catalogue`` (ciea/catalogue.py) knows the corpora and each retriever's index or why it has
none; ``Judgements`` (ciea/judgements.py) the query sets and relevance; ``GeometryStore``
(ciea/geometry_store.py) the saved geometry. This module encodes queries, runs the one search
loop that text and image queries share, and assembles result rows. Every cache is a
thread-safe ``Memo`` (ciea/memo.py). Everything heavy (backbone, indexes, geometry artefacts)
loads on first use or in ``warm_up``, never when the service is made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ciea.backbones import Backbone
from ciea.catalogue import Catalogue, RetrieverState, retriever_title
from ciea.config import DEFAULT_K, SERVING_THREADS, Settings, configure_threads
from ciea.data.materialise import document_image
from ciea.data.schema import Corpus, Query
from ciea.evaluate import QuerySet
from ciea.geometry_store import (MAX_W2_SAMPLES, MIN_W2_SAMPLES, GeometryArtefacts, GeometryStore, check_w2_samples,
                                 geometry_hint)
from ciea.index import SCORE_DECIMALS, Hit
from ciea.judgements import CAPTIONS_SPLIT, Judgements, normalise_query
from ciea.memo import Memo
from ciea.retrievers import REGISTRY
from ciea.validation import InputError, check_k, check_retrievers, clean_query_text

log = logging.getLogger(__name__)
QUERY_CACHE_SIZE = 512
#: Documents whose complementary-patch weights are kept (detail views are revisited).
PATCH_CACHE_SIZE = 256
#: Re-exported for the UI and tests, which import them from here.
__all__ = ["CAPTIONS_SPLIT", "MAX_W2_SAMPLES", "MIN_W2_SAMPLES", "DocumentView", "GeometryArtefacts", "ResultRow",
           "RetrieverState", "SearchResponse", "SearchService", "geometry_hint", "normalise_query", "retriever_title",
           "unavailable_notice"]


def unavailable_notice(name: str, reason: str) -> str:
    """The notice a response carries for a requested retriever that cannot answer."""
    return f"{name} is unavailable: {reason}"


@dataclass(frozen=True)
class ResultRow:
    rank: int
    doc_id: str
    score: float
    text: str
    image: Path | None
    category: str
    relevant: bool = False


@dataclass
class SearchResponse:
    """Top-k rows per retriever. ``mode`` is "text" or "image"; ``judged`` says whether the
    query has relevance judgements (so an unmarked row is known to be non-relevant);
    ``skipped`` names requested retrievers that could not answer, with the reason (each also
    has its ``unavailable_notice`` in ``notices``)."""

    query: str
    corpus: str
    k: int
    results: dict[str, list[ResultRow]]
    notices: list[str] = field(default_factory=list)
    mode: str = "text"
    judged: bool = False
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "mode": self.mode,
            "corpus": self.corpus,
            "k": self.k,
            "judged": self.judged,
            "notices": self.notices,
            "results": {
                name: [{"rank": r.rank, "doc_id": r.doc_id, "score": round(r.score, SCORE_DECIMALS), "text": r.text,
                        "category": r.category, "relevant": r.relevant} for r in rows]
                for name, rows in self.results.items()
            },
        }


@dataclass(frozen=True)
class DocumentView:
    """One document as the detail view shows it; ``position`` is its row in corpus order."""

    corpus: str
    doc_id: str
    text: str
    category: str
    image: Path | None
    position: int


class SearchService:
    """Everything a query needs, loaded once per process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        configure_threads(default=SERVING_THREADS)
        self.catalogue = Catalogue(self.settings)
        self.judgements = Judgements(self.catalogue)
        self.geometry_store = GeometryStore(self.settings)
        self._text_vectors: Memo[np.ndarray] = Memo(QUERY_CACHE_SIZE)
        self._patch_weights: Memo[np.ndarray | None] = Memo(PATCH_CACHE_SIZE)
        self._reciprocal_ranks: Memo[dict[str, float]] = Memo()

    # -- the catalogue ---------------------------------------------------------------
    @property
    def backbone(self) -> Backbone:
        return self.catalogue.backbone

    def corpora(self) -> list[str]:
        return self.catalogue.corpora()

    def corpus(self, name: str) -> Corpus:
        return self.catalogue.corpus(name)

    def states(self, corpus: str) -> dict[str, RetrieverState]:
        """Every registered retriever for ``corpus``, loaded or with its error."""
        return self.catalogue.states(corpus)

    def retriever(self, corpus: str, name: str) -> RetrieverState:
        return self.catalogue.retriever(corpus, name)

    def retrievers(self, corpus: str) -> list[str]:
        """Names of the retrievers that can answer on ``corpus``."""
        return self.catalogue.retrievers(corpus)

    def unavailable(self, corpus: str) -> dict[str, str]:
        return self.catalogue.unavailable(corpus)

    def indexed_retrievers(self, corpus: str) -> list[str]:
        """Retrievers with an index for ``corpus``, without loading anything (see ``Catalogue``)."""
        return self.catalogue.indexed_retrievers(corpus)

    def retriever_titles(self) -> dict[str, str]:
        """Every registered retriever's name and short UI label, in registry order."""
        return {name: retriever_title(name) for name in REGISTRY}

    def alignments(self, corpus: str) -> dict[str, str]:
        """How each ready retriever with an image alignment places images in the text space
        (e.g. "trained linear map" from a checkpoint, or "ConSE" where none exists)."""
        out = {}
        for name in self.retrievers(corpus):
            alignment = getattr(self.retriever(corpus, name).retriever, "alignment", None)
            if alignment is not None:
                out[name] = str(getattr(alignment, "name", type(alignment).__name__))
        return out

    def warm_up(self, first: str | None = None) -> None:
        """Load the backbone, then every corpus's indexes and judgements (``first`` first), so
        that queries do not pay for them; meant for a background thread after launch."""
        order = sorted(self.corpora(), key=lambda name: name != first)
        for name in order:
            try:
                self.states(name)
                self.relevance_table(name)
            except Exception:  # a warm-up failure must not kill the server; requests report it
                log.exception("warm-up of %s failed", name)

    # -- judgements ------------------------------------------------------------------
    def query_splits(self, corpus: str) -> list[str]:
        """Names of the judged query sets of ``corpus``: its shipped splits, else captions."""
        return self.judgements.query_splits(corpus)

    def query_set(self, corpus: str, split: str) -> QuerySet:
        """Queries and qrels of one split (``captions``: caption-as-query); unpacks as ``queries, qrels``."""
        return self.judgements.query_set(corpus, split)

    def relevance_table(self, corpus: str) -> dict[str, frozenset[str]]:
        """Normalised query text -> relevant doc ids, over every judged split of ``corpus``."""
        return self.judgements.relevance_table(corpus)

    def relevant(self, corpus: str, query: str) -> frozenset[str]:
        """Doc ids judged relevant to this query text on ``corpus`` (empty when unjudged)."""
        return self.judgements.relevant(corpus, query)

    def reciprocal_ranks(self, corpus: str, split: str, name: str, k: int = 10) -> dict[str, float]:
        """Reciprocal rank at ``k`` of every judged query of one split under retriever ``name``
        (0 when no relevant document is in the top k): the per-query values behind MRR@k, for
        intervals over queries. Computed once per process (a few seconds per retriever)."""
        queries, qrels = self.query_set(corpus, split)

        def compute() -> dict[str, float]:
            judged = [q for q in queries if q.qid in qrels]
            hits = self.search_batch([q.text for q in judged], corpus, name, k)
            out = {}
            for q, row in zip(judged, hits):
                relevant = {d for d, rel in qrels[q.qid].items() if rel > 0}
                out[q.qid] = next((1.0 / rank for rank, h in enumerate(row, 1) if h.doc_id in relevant), 0.0)
            return out

        return self._reciprocal_ranks.get((corpus, str(split), name, int(k)), compute)

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

    # -- querying --------------------------------------------------------------------
    def _encode_text(self, text: str) -> np.ndarray:
        """The backbone's vector for a query text: computed once, shared by every retriever."""
        vector = self.backbone.encode_text([text])[0]
        vector.setflags(write=False)
        return vector

    def _query_vector(self, corpus: str, name: str, text: str) -> np.ndarray:
        text_vector = self._text_vectors.get(text, lambda: self._encode_text(text))
        return self.retriever(corpus, name).retriever.text_queries(text_vector[None, :])[0]

    def search(self, query: str, corpus: str, retrievers: Sequence[str] | None = None,
               k: int = DEFAULT_K) -> SearchResponse:
        """Top-k results of each requested retriever for one text query; rows are marked
        relevant where the corpus has judgements for this query text."""
        clean = clean_query_text(query)
        judged = self.relevance_table(corpus).get(normalise_query(clean.text))
        return self._text_search(clean.text, clean.notices, corpus, retrievers, k, judged)

    def search_judged(self, corpus: str, split: str, qid: str, retrievers: Sequence[str] | None = None,
                      k: int = DEFAULT_K) -> tuple[Query, SearchResponse]:
        """One benchmark query (by id) searched, its rows marked by exactly that query's qrels."""
        queries, qrels = self.query_set(corpus, split)
        query = next((q for q in queries if q.qid == qid), None)
        if query is None:
            raise InputError(f"No query {qid!r} in the {split!r} set of {corpus!r}.")
        judged = frozenset(d for d, rel in qrels.get(qid, {}).items() if rel > 0)
        clean = clean_query_text(query.text)
        return query, self._text_search(clean.text, clean.notices, corpus, retrievers, k, judged)

    def _names(self, corpus: str, retrievers: Sequence[str] | None) -> list[str]:
        """The requested retrievers, checked; None means every one that can answer here."""
        self.corpus(corpus)
        if retrievers is not None:
            return check_retrievers(retrievers, list(REGISTRY))
        ready = self.retrievers(corpus)
        if not ready:  # nothing the user chose is wrong: say what is missing and how to fix it
            reasons = " ".join(f"{name}: {why}" for name, why in self.unavailable(corpus).items())
            raise InputError(f"No retriever can answer on {corpus!r}. {reasons}")
        return ready

    def _text_search(self, text: str, notices: Sequence[str], corpus: str, retrievers: Sequence[str] | None,
                     k: int, judged: frozenset[str] | None) -> SearchResponse:
        k = check_k(k)
        names = self._names(corpus, retrievers)
        notices = list(notices)
        tokens = self.backbone.count_tokens(text)
        if tokens > self.backbone.max_text_tokens:
            notices.append(f"The query is {tokens} tokens long; only the first "
                           f"{self.backbone.max_text_tokens} were used.")
        results, skipped = self._search_each(corpus, names, k, notices, judged,
                                             lambda state: self._query_vector(corpus, state.name, text))
        return SearchResponse(text, corpus, k, results, notices, judged=judged is not None, skipped=skipped)

    def search_by_image(self, image: str | Path | bytes | Image.Image, corpus: str,
                        retrievers: Sequence[str] | None = None, k: int = DEFAULT_K,
                        label: str = "") -> SearchResponse:
        """Top-k results of each requested retriever for an image used as the query.

        Raises ``ImageInputError`` (an ``InputError`` with a user-facing message) for an
        unusable upload; retrievers without an image tower are skipped with a notice.
        """
        from ciea.images import load_query_image

        k = check_k(k)
        names = self._names(corpus, retrievers)
        if image is None or (isinstance(image, str) and not image.strip()):
            raise InputError("Upload an image to search with.")
        picture = load_query_image(image)
        if not label:
            label = Path(image).name if isinstance(image, (str, Path)) else "uploaded image"
        features = []  # the image tower runs once, for the first retriever that needs it

        def vector(state: RetrieverState) -> np.ndarray | None:
            if not state.retriever.supports_image_queries:
                return None
            if not features:
                features.append(self.backbone.encode_images([picture]))
            return state.retriever.image_queries(features[0])[0]

        notices: list[str] = []
        results, skipped = self._search_each(corpus, names, k, notices, None, vector)
        if not results and not notices:
            notices.append("No retriever answered.")
        return SearchResponse(label, corpus, k, results, notices, mode="image", skipped=skipped)

    def _search_each(self, corpus: str, names: Sequence[str], k: int, notices: list[str],
                     judged: frozenset[str] | None, vector: Callable[[RetrieverState], np.ndarray | None]
                     ) -> tuple[dict[str, list[ResultRow]], dict[str, str]]:
        """The one search loop of text and image queries: each ready retriever's top-k rows for
        its query ``vector`` (None: it does not take this kind of query, said in ``notices``);
        unavailable retrievers are skipped with their reason."""
        results: dict[str, list[ResultRow]] = {}
        skipped: dict[str, str] = {}
        for name in names:
            state = self.retriever(corpus, name)
            if not state.ready:
                skipped[name] = state.error or ""
                notices.append(unavailable_notice(name, skipped[name]))
                continue
            query = vector(state)
            if query is None:
                notices.append(f"{name} takes text queries only ({state.retriever.towers()}).")
                continue
            hits = state.index.search(np.asarray(query, dtype=np.float32)[None, :], k)[0]
            results[name] = self.result_rows(corpus, hits, judged)
        return results, skipped

    def search_batch(self, texts: Sequence[str], corpus: str, name: str, k: int):
        """Hits for many queries with one retriever (CLI runs, evaluation)."""
        k = check_k(k)
        state = self.retriever(corpus, name)
        if not state.ready:
            raise InputError(f"{name} is unavailable on {corpus}: {state.error}")
        cleaned = [clean_query_text(t).text for t in texts]
        vectors = state.retriever.encode_queries(cleaned) if cleaned else np.zeros((0, state.index.manifest.dim))
        return state.index.search(vectors, k)

    def result_rows(self, corpus: str, hits: Sequence[Hit], judged: frozenset[str] | None = None) -> list[ResultRow]:
        """Ranked hits as result rows with each document's text, image and category, marked
        relevant where ``judged`` names them (the result-assembly step the benchmarks time)."""
        docs = self.corpus(corpus)
        rows = []
        for rank, hit in enumerate(hits, 1):
            doc = docs.get(hit.doc_id)
            rows.append(ResultRow(rank, hit.doc_id, hit.score, doc.text, document_image(docs, doc), doc.category,
                                  judged is not None and hit.doc_id in judged))
        return rows

    # -- documents -------------------------------------------------------------------
    def document(self, corpus: str, doc_id: str) -> DocumentView:
        """One document with its image file (scenes are rendered on demand)."""
        docs = self.corpus(corpus)
        try:
            doc = docs.get(doc_id)
        except KeyError:
            raise InputError(f"No document {doc_id!r} in corpus {corpus!r}.") from None
        return DocumentView(corpus, doc_id, doc.text, doc.category, document_image(docs, doc),
                            self.catalogue.position(corpus, doc_id))

    def thumbnails(self, corpus: str) -> list[Path | None]:
        """Each document's image file in corpus order, None where it has none or it is not on
        disk yet (scenes are drawn on demand); for hover previews, so nothing is rendered here."""
        docs = self.corpus(corpus)
        paths = [docs.image_path(doc) for doc in docs.documents]
        return [p if p is not None and p.is_file() else None for p in paths]

    def patch_weights(self, corpus: str, name: str, doc_id: str) -> np.ndarray | None:
        """The (g, g) complementary-patch weights of a document under retriever ``name``
        (1 = the caption does not cover that region), or None when the retriever has none."""
        state = self.retriever(corpus, name)
        if not state.ready or getattr(state.retriever, "patch_weights", None) is None:
            return None
        return self._patch_weights.get((corpus, name, doc_id),
                                       lambda: self._compute_patch_weights(corpus, name, doc_id))

    def _compute_patch_weights(self, corpus: str, name: str, doc_id: str) -> np.ndarray | None:
        from ciea.images import load_image

        view = self.document(corpus, doc_id)
        if view.image is None:
            return None
        weights = self.retriever(corpus, name).retriever.patch_weights([load_image(view.image)], [view.text])
        return np.clip(np.asarray(weights, dtype=np.float32)[0], 0.0, 1.0)

    # -- geometry --------------------------------------------------------------------
    def geometry(self, corpus: str, name: str) -> GeometryArtefacts:
        """The saved geometry report and UMAP projection of one retriever (loaded once)."""
        self.retriever(corpus, name)  # validates both names first
        return self.geometry_store.artefacts(corpus, name)

    def query_point(self, corpus: str, name: str, query: str) -> np.ndarray | None:
        """Where a text query lands in retriever ``name``'s UMAP: (2,), or None when the
        projection is missing or was fitted on vectors of another width."""
        projection = self.geometry(corpus, name).projection
        state = self.retriever(corpus, name)
        if projection is None or not state.ready:
            return None
        vector = self._query_vector(corpus, name, clean_query_text(query).text)
        if projection.points.shape[1] != vector.shape[0]:
            log.info("%s: query width %d differs from the UMAP's %d", name, vector.shape[0],
                     projection.points.shape[1])
            return None
        return np.asarray(projection.transform(vector[None, :].astype(np.float32)))[0]

    def recompute_w2(self, corpus: str, name: str, n: int):
        """Exact W2 between the saved image and text clouds on a fixed-seed sample of ``n`` per
        side (returns ``ciea.geometry.W2Result``)."""
        n = check_w2_samples(n)
        self.retriever(corpus, name)  # validates both names
        return self.geometry_store.recompute_w2(corpus, name, n)
