"""Build and save the FAISS index of every retriever for a corpus."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ciea.backbones import load_backbone
from ciea.checkpoints import CheckpointError
from ciea.config import DEFAULT_INDEX_FACTORY, Settings
from ciea.data.materialise import ensure_corpus_images
from ciea.data.schema import Corpus, load_corpus
from ciea.evaluate import Evaluator, QuerySet
from ciea.features import CorpusFeatures, cached_corpus_features
from ciea.index import Expectation, IndexManifest, IndexStoreError, VectorIndex
from ciea.retrievers import Retriever, create_retriever, retriever_names

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    corpus: str
    retriever: str
    folder: Path
    count: int
    dim: int
    seconds: float


def build_indexes(
    corpus_name: str,
    settings: Settings,
    retrievers: Sequence[str] | None = None,
    factory: str = DEFAULT_INDEX_FACTORY,
    progress: bool = True,
) -> list[BuildReport]:
    """Encode the corpus once with the settings' backbone, then index it per retriever.

    Without an explicit list, trained retrievers that have no checkpoint for this backbone
    are skipped with a warning (train them first); named ones raise ``CheckpointError``.
    """
    corpus = load_corpus(corpus_name, settings.assets_dir)
    backbone = load_backbone(settings.backbone)
    ensure_corpus_images(corpus, progress=progress)
    start = time.perf_counter()
    features = cached_corpus_features(corpus, backbone, settings.cache_dir, progress)
    shared_seconds = time.perf_counter() - start
    reports = []
    for name in retrievers or retriever_names():
        t0 = time.perf_counter()
        try:
            retriever = create_retriever(name, backbone, settings)
        except CheckpointError as exc:
            if retrievers:
                raise
            log.warning("skipping %s: %s", name, exc)
            continue
        vectors = retriever.encode_documents(corpus, features)
        manifest = IndexManifest(
            corpus=corpus.name,
            retriever=name,
            backbone=backbone.spec,
            dim=retriever.dim,
            count=len(corpus),
            factory=factory,
            checkpoint_sha256=retriever.checkpoint_sha256,
        )
        index = VectorIndex.build(vectors, [d.doc_id for d in corpus], manifest)
        folder = index.save(settings.index_dir(corpus.name, name))
        seconds = shared_seconds + time.perf_counter() - t0
        reports.append(BuildReport(corpus.name, name, folder, len(index), retriever.dim, seconds))
        log.info("built %s/%s: %d x %d in %.1fs", corpus.name, name, len(index), retriever.dim, seconds)
    return reports


@dataclass
class GeometryBuild:
    corpus: str
    retriever: str
    report: dict
    umap_seconds: float


def query_set(corpus: Corpus) -> tuple[str, QuerySet]:
    """The corpus's evaluation queries for the gap-shift curve: its test split, else captions."""
    shipped = QuerySet.shipped(corpus.root, "test")
    return ("test", shipped) if shipped else ("captions", QuerySet.captions(corpus))


def gap_shift_evaluator(retriever: Retriever, documents: np.ndarray, doc_ids: Sequence[str], corpus: Corpus
                        ) -> Callable[[float], dict[str, float]]:
    """Retrieval quality after closing the query-document gap by a factor (Liang et al.).

    Documents move by -factor * gap / 2 and queries by +factor * gap / 2, gap = mean(documents)
    - mean(queries); both are renormalised; exact search, MRR@10 over all queries and per kind.
    """
    from ciea.geometry import gap_shift

    split, queries = query_set(corpus)
    evaluator = Evaluator.from_query_set(queries, metrics=["mrr@10"], k=10)
    query_vectors = retriever.encode_queries(queries.texts)

    def evaluate(factor: float) -> dict[str, float]:
        docs, qs = gap_shift(documents, query_vectors, factor)
        by_kind = evaluator.score_matrix(qs.astype(np.float64) @ docs.astype(np.float64).T, doc_ids)
        return {f"{split}/{kind} mrr@10": m["mrr@10"] for kind, m in by_kind.items()}

    return evaluate


def build_geometry(corpus_name: str, settings: Settings, retrievers: Sequence[str] | None = None,
                   features: CorpusFeatures | None = None, with_umap: bool = True, progress: bool = True
                   ) -> list[GeometryBuild]:
    """Geometry report (gap, W2, sliced W, cosines, gap shift) and UMAP projection per built index,
    saved next to the index so the app loads rather than recomputes them."""
    from ciea.geometry import compute_report, fit_projection, save_report

    corpus = load_corpus(corpus_name, settings.assets_dir)
    backbone = load_backbone(settings.backbone)
    if features is None:
        ensure_corpus_images(corpus, progress=progress)
        features = cached_corpus_features(corpus, backbone, settings.cache_dir, progress)
    out = []
    for name in retrievers or retriever_names():
        folder = settings.index_dir(corpus.name, name)
        try:
            retriever = create_retriever(name, backbone, settings)
            index = VectorIndex.load(folder, Expectation(corpus.name, name, backbone.spec, retriever.dim,
                                                         retriever.checkpoint_sha256))
        except (CheckpointError, IndexStoreError) as exc:
            if retrievers:
                raise
            log.warning("no geometry for %s: %s", name, exc)
            continue
        documents = index.reconstruct_all()
        position = {doc_id: i for i, doc_id in enumerate(index.ids)}
        documents = documents[[position[d.doc_id] for d in corpus]]  # corpus order, like the features
        sides = retriever.embedding_sides(corpus, features, documents)
        report = compute_report(sides["text"], sides["image"], sides["document"], corpus=corpus.name,
                                retriever=name, backbone=backbone.spec,
                                shift_eval=gap_shift_evaluator(retriever, documents, [d.doc_id for d in corpus], corpus))
        save_report(report, folder)
        umap_seconds = 0.0
        if with_umap:
            t0 = time.perf_counter()
            fit_projection(sides, seed=0).save(folder)
            umap_seconds = time.perf_counter() - t0
        log.info("geometry %s/%s: gap %.3f W2 %.3f (n=%d) in %.1fs + UMAP %.1fs", corpus.name, name,
                 report.centroid_gap, report.wasserstein2["distance"], report.wasserstein2["n"],
                 sum(report.timings.values()), umap_seconds)
        out.append(GeometryBuild(corpus.name, name, report.to_json(), umap_seconds))
    return out
