"""The search service: loads backbone and indexes once, answers the app and the CLI.

A damaged or mismatched index disables only its own retriever; the reason is kept and
shown, and the other retrievers keep answering. Everything heavy (backbone, indexes,
geometry artefacts) loads on first use or in ``warm_up``, never when the service is made.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ciea.backbones import Backbone, load_backbone
from ciea.config import DEFAULT_K, SERVING_THREADS, Settings, configure_threads
from ciea.data.materialise import document_image
from ciea.data.schema import (
    Corpus,
    Query,
    available_corpora,
    load_corpus,
    split_query_files,
)
from ciea.evaluate import QuerySet
from ciea.index import MANIFEST_FILE, SCORE_DECIMALS, Expectation, Hit, IndexStoreError, VectorIndex
from ciea.retrievers import REGISTRY, Retriever, create_retriever
from ciea.validation import (
    InputError,
    check_corpus,
    check_k,
    check_retrievers,
    clean_query_text,
    echo,
)

log = logging.getLogger(__name__)
QUERY_CACHE_SIZE = 512
#: Documents whose complementary-patch weights are kept (detail views are revisited).
PATCH_CACHE_SIZE = 256
#: The split name under which a corpus without shipped query sets is judged caption-as-query.
CAPTIONS_SPLIT = "captions"
#: Largest per-side sample a user may ask the live exact-W2 recompute for: POT's exact EMD is
#: cubic in the sample size, and about 2k per side still answers within a minute on 2 cores.
MAX_W2_SAMPLES = 2000
MIN_W2_SAMPLES = 10


def unavailable_notice(name: str, reason: str) -> str:
    """The notice a response carries for a requested retriever that cannot answer."""
    return f"{name} is unavailable: {reason}"


def geometry_hint(corpus: str, retriever: str) -> str:
    """How to build a retriever's geometry artefacts (report, UMAP, clouds)."""
    return f"Build them with: python -m ciea geometry --corpus {corpus} --retriever {retriever}"


def normalise_query(text: str) -> str:
    """The key under which a query text matches a judged query: case, spacing and final
    punctuation do not matter ("A frog." and "a frog" are the same query)."""
    return " ".join(str(text).split()).casefold().rstrip(" .!?")


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


@dataclass
class GeometryArtefacts:
    """A retriever's saved geometry report and UMAP projection, each None with the reason."""

    report: dict | None = None
    projection: object | None = None  # ciea.geometry.Projection
    errors: list[str] = field(default_factory=list)


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
        configure_threads(default=SERVING_THREADS)
        self._lock = threading.Lock()
        self._backbone: Backbone | None = None
        self._states_lock = threading.Lock()
        self._corpora: dict[str, Corpus] = {}
        self._states: dict[str, dict[str, RetrieverState]] = {}
        self._relevance: dict[str, dict[str, frozenset[str]]] = {}
        self._geometry: dict[tuple[str, str], GeometryArtefacts] = {}
        self._query_sets: dict[tuple[str, str], QuerySet] = {}
        self._positions: dict[str, dict[str, int]] = {}
        self._reciprocal_ranks: dict[tuple[str, str, str, int], dict[str, float]] = {}
        # Per-instance caches (a cache on the method would keep every service alive).
        self._text_vector = functools.lru_cache(maxsize=QUERY_CACHE_SIZE)(self._encode_text)
        #: One text-tower pass per query text, cached and shared by every retriever. False runs the
        #: tower once per retriever and query, uncached (the benchmarks' before-and-after peer).
        self.share_text_encoding = True
        self._patch_weights = functools.lru_cache(maxsize=PATCH_CACHE_SIZE)(self._compute_patch_weights)

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
        if not isinstance(name, str) or name not in self._corpora:
            check_corpus(name, self.corpora())  # refuses non-text and unknown names with a message
            self._corpora[name] = load_corpus(name, self.settings.assets_dir)
        return self._corpora[name]

    def states(self, corpus: str) -> dict[str, RetrieverState]:
        """Every registered retriever for ``corpus``, loaded or with its error."""
        self.corpus(corpus)  # validates the name first
        if corpus not in self._states:
            with self._states_lock:  # a request and the warm-up thread may both ask first
                if corpus not in self._states:
                    self._states[corpus] = {name: self._load_state(corpus, name) for name in REGISTRY}
        return self._states[corpus]

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

    def indexed_retrievers(self, corpus: str) -> list[str]:
        """Registered retrievers with an index folder for ``corpus``: the loaded ones when
        loading already happened, else a file check (no backbone, so a page can render at once)."""
        if corpus in self._states:
            return self.retrievers(corpus)
        return [name for name in REGISTRY if (self.settings.index_dir(corpus, name) / MANIFEST_FILE).is_file()]

    def _load_state(self, corpus: str, name: str) -> RetrieverState:
        try:
            retriever = create_retriever(name, self.backbone, self.settings)
            expect = Expectation(corpus, name, self.backbone.spec, retriever.dim, retriever.checkpoint_sha256)
            index = VectorIndex.load(self.settings.index_dir(corpus, name), expect)
        except (IndexStoreError, OSError, ValueError) as exc:
            log.warning("retriever %s unavailable for %s: %s", name, corpus, exc)
            return RetrieverState(name, error=self._public(str(exc)))
        return RetrieverState(name, retriever, index)

    def _public(self, reason: str) -> str:
        """A reason fit for users: server paths shown relative to the artefact folders (the log
        keeps the full text)."""
        from ciea.config import PROJECT_ROOT

        for folder, label in ((self.settings.checkpoints_dir, "indexes/checkpoints"),
                              (self.settings.indexes_dir, "indexes"), (self.settings.assets_dir, "assets"),
                              (PROJECT_ROOT, ".")):
            reason = reason.replace(str(folder.resolve()), label).replace(str(folder), label)
        return reason

    def retrievers(self, corpus: str) -> list[str]:
        """Names of the retrievers that can answer on ``corpus``."""
        return [name for name, st in self.states(corpus).items() if st.ready]

    def unavailable(self, corpus: str) -> dict[str, str]:
        return {name: st.error or "" for name, st in self.states(corpus).items() if not st.ready}

    def alignments(self, corpus: str) -> dict[str, str]:
        """How each ready retriever with an image alignment places images in the text space
        (e.g. "trained linear map" from a checkpoint, or "ConSE" where none exists)."""
        out = {}
        for name in self.retrievers(corpus):
            alignment = getattr(self.retriever(corpus, name).retriever, "alignment", None)
            if alignment is not None:
                out[name] = str(getattr(alignment, "name", type(alignment).__name__))
        return out

    def reciprocal_ranks(self, corpus: str, split: str, name: str, k: int = 10) -> dict[str, float]:
        """Reciprocal rank at ``k`` of every judged query of one split under retriever ``name``
        (0 when no relevant document is in the top k): the per-query values behind MRR@k, for
        intervals over queries. Computed once per process (a few seconds per retriever)."""
        key = (corpus, str(split), name, int(k))
        if key not in self._reciprocal_ranks:
            queries, qrels = self.query_set(corpus, split)
            judged = [q for q in queries if q.qid in qrels]
            hits = self.search_batch([q.text for q in judged], corpus, name, k)
            out = {}
            for q, row in zip(judged, hits):
                relevant = {d for d, rel in qrels[q.qid].items() if rel > 0}
                out[q.qid] = next((1.0 / rank for rank, h in enumerate(row, 1) if h.doc_id in relevant), 0.0)
            self._reciprocal_ranks[key] = out
        return self._reciprocal_ranks[key]

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
        if not isinstance(name, str) or name not in states:
            raise InputError(f"Unknown retriever {echo(name)}. Known: {', '.join(states)}.")
        return states[name]

    # -- querying --------------------------------------------------------------------
    def _encode_text(self, text: str) -> np.ndarray:
        """The backbone's vector for a query text: computed once, shared by every retriever."""
        vector = self.backbone.encode_text([text])[0]
        vector.setflags(write=False)
        return vector

    def _query_vector(self, corpus: str, name: str, text: str) -> np.ndarray:
        text_vector = self._text_vector(text) if self.share_text_encoding else self._encode_text(text)
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
        results: dict[str, list[ResultRow]] = {}
        skipped: dict[str, str] = {}
        for name in names:
            state = self.retriever(corpus, name)
            if not state.ready:
                skipped[name] = state.error or ""
                notices.append(unavailable_notice(name, skipped[name]))
                continue
            hits = state.index.search(self._query_vector(corpus, name, text)[None, :], k)[0]
            results[name] = self.result_rows(corpus, hits, judged)
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
        notices: list[str] = []
        skipped: dict[str, str] = {}
        results: dict[str, list[ResultRow]] = {}
        features = None  # the image tower runs once, for the first retriever that needs it
        for name in names:
            state = self.retriever(corpus, name)
            if not state.ready:
                skipped[name] = state.error or ""
                notices.append(unavailable_notice(name, skipped[name]))
            elif not state.retriever.supports_image_queries:
                notices.append(f"{name} takes text queries only ({state.retriever.towers()}).")
            else:
                if features is None:
                    features = self.backbone.encode_images([picture])
                vector = state.retriever.image_queries(features)
                hits = state.index.search(np.asarray(vector, dtype=np.float32), k)[0]
                results[name] = self.result_rows(corpus, hits)
        if not results and not notices:
            notices.append("No retriever answered.")
        return SearchResponse(label, corpus, k, results, notices, mode="image", skipped=skipped)

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
        if corpus not in self._positions:
            self._positions[corpus] = {d.doc_id: i for i, d in enumerate(docs)}
        return DocumentView(corpus, doc_id, doc.text, doc.category, document_image(docs, doc),
                            self._positions[corpus][doc_id])

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
        return self._patch_weights(corpus, name, doc_id)

    def _compute_patch_weights(self, corpus: str, name: str, doc_id: str) -> np.ndarray | None:
        from ciea.images import load_image

        view = self.document(corpus, doc_id)
        if view.image is None:
            return None
        weights = self.retriever(corpus, name).retriever.patch_weights([load_image(view.image)], [view.text])
        return np.clip(np.asarray(weights, dtype=np.float32)[0], 0.0, 1.0)

    # -- judgements ------------------------------------------------------------------
    def query_splits(self, corpus: str) -> list[str]:
        """Names of the judged query sets of ``corpus``: its shipped splits, else captions."""
        root = self.corpus(corpus).root
        prefix, suffix = split_query_files(root, "{}")[0].name.split("{}")  # schema names the files
        shipped = sorted(p.name[len(prefix):len(p.name) - len(suffix)]
                         for p in root.glob(f"{prefix}*{suffix}") if p.is_file())
        return [s for s in shipped if split_query_files(root, s)[1].is_file()] or [CAPTIONS_SPLIT]

    def query_set(self, corpus: str, split: str) -> QuerySet:
        """Queries and qrels of one split: a shipped set, or caption-as-query for ``captions``
        (on any corpus). Unpacks as ``queries, qrels``."""
        root = self.corpus(corpus).root  # validates the name first
        key = (corpus, str(split))
        if key not in self._query_sets:
            if split != CAPTIONS_SPLIT and split not in self.query_splits(corpus):
                raise InputError(f"No query set {echo(split)} for corpus {corpus!r}. "
                                 f"Known: {', '.join(self.query_splits(corpus))}; '{CAPTIONS_SPLIT}' "
                                 "asks each caption to find its own document.")
            self._query_sets[key] = QuerySet.shipped(root, split) or QuerySet.captions(self.corpus(corpus))
        return self._query_sets[key]

    def relevance_table(self, corpus: str) -> dict[str, frozenset[str]]:
        """Normalised query text -> relevant doc ids, over every judged split of ``corpus``
        (a text judged in several splits is relevant to the union of their documents)."""
        self.corpus(corpus)  # validates the name first
        if corpus not in self._relevance:
            table: dict[str, set[str]] = {}
            for split in self.query_splits(corpus):
                queries, qrels = self.query_set(corpus, split)
                for q in queries:
                    if q.qid in qrels:
                        table.setdefault(normalise_query(q.text), set()).update(
                            d for d, rel in qrels[q.qid].items() if rel > 0)
            self._relevance[corpus] = {text: frozenset(docs) for text, docs in table.items()}
        return self._relevance[corpus]

    def relevant(self, corpus: str, query: str) -> frozenset[str]:
        """Doc ids judged relevant to this query text on ``corpus`` (empty when unjudged)."""
        return self.relevance_table(corpus).get(normalise_query(query), frozenset())

    # -- geometry --------------------------------------------------------------------
    def geometry(self, corpus: str, name: str) -> GeometryArtefacts:
        """The saved geometry report and UMAP projection of one retriever (loaded once)."""
        self.retriever(corpus, name)  # validates both names first
        key = (corpus, name)
        if key not in self._geometry:
            self._geometry[key] = self._load_geometry(corpus, name)
        return self._geometry[key]

    def _load_geometry(self, corpus: str, name: str) -> GeometryArtefacts:
        from ciea import geometry

        folder = self.settings.index_dir(corpus, name)
        if not any((folder / f).exists() for f in (geometry.REPORT_FILE, geometry.PROJECTION_META)):
            missing = f"No geometry artefacts for {name} on {corpus} yet. {geometry_hint(corpus, name)}"
            return GeometryArtefacts(errors=[missing])
        out = GeometryArtefacts()
        try:
            out.report = geometry.load_report(folder)
        except (geometry.GeometryStoreError, OSError) as exc:
            out.errors.append(f"Geometry report of {name} on {corpus}: {exc}.")
        try:
            out.projection = geometry.Projection.load(folder)
        except (geometry.GeometryStoreError, OSError) as exc:
            out.errors.append(f"UMAP projection of {name} on {corpus}: {exc}.")
        return out

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
        from ciea import geometry

        try:
            n = int(n)
        except (TypeError, ValueError):
            raise InputError("The sample size must be a whole number.") from None
        if not MIN_W2_SAMPLES <= n <= MAX_W2_SAMPLES:
            raise InputError(f"The sample size must be between {MIN_W2_SAMPLES} and {MAX_W2_SAMPLES} "
                             f"(exact optimal transport is cubic in it); got {n}.")
        projection = self.geometry(corpus, name).projection
        if projection is None:
            raise InputError(f"{name} has no saved embedding clouds on {corpus}. {geometry_hint(corpus, name)}")
        rows = projection.offsets()
        missing = {"image", "text"} - set(rows)
        if missing:
            raise InputError(f"{name}'s saved clouds lack {', '.join(sorted(missing))} vectors.")
        image, text = (projection.points[slice(*rows[c])].astype(np.float32) for c in ("image", "text"))
        return geometry.wasserstein2(image, text, max_samples=n, seed=0)
