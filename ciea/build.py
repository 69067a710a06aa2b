"""Build and save the FAISS index of every retriever for a corpus."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ciea.backbones import load_backbone
from ciea.config import DEFAULT_INDEX_FACTORY, Settings
from ciea.data.materialise import ensure_corpus_images
from ciea.data.schema import load_corpus
from ciea.features import encode_corpus
from ciea.index import IndexManifest, VectorIndex
from ciea.retrievers import create_retriever, retriever_names

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
    """Encode the corpus once with the settings' backbone, then index it per retriever."""
    corpus = load_corpus(corpus_name, settings.assets_dir)
    backbone = load_backbone(settings.backbone)
    ensure_corpus_images(corpus, progress=progress)
    start = time.perf_counter()
    features = encode_corpus(corpus, backbone, progress=progress)
    shared_seconds = time.perf_counter() - start
    reports = []
    for name in retrievers or retriever_names():
        t0 = time.perf_counter()
        retriever = create_retriever(name, backbone)
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
