"""FAISS index store: one folder per corpus and retriever, with ids and a manifest.

Layout: ``indexes/<corpus>/<retriever>/`` holds ``index.faiss`` (FAISS's own format),
``ids.json`` (document id per row) and ``manifest.json`` (what built it). Loading checks the
manifest against the running configuration and refuses a mismatch with the rebuild command.
Scores are inner products of L2-normalised vectors (cosine similarity).
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
#: Scores equal to this many decimal places are ties (a cosine's float32 noise is ~1e-7).
SCORE_DECIMALS = 6
#: How far below the k-th FAISS score a candidate must fall before search stops fetching:
#: well above the float32 error of an inner product of unit vectors (~1e-6 at 1,024 dims).
CANDIDATE_SLACK = 1e-4


class IndexStoreError(RuntimeError):
    """Base class; the message always says how to rebuild."""


class IndexMissingError(IndexStoreError):
    pass


class IndexCorruptError(IndexStoreError):
    pass


class IndexMismatchError(IndexStoreError):
    pass


def rebuild_command(corpus: str, retriever: str, backbone: str) -> str:
    return f"python -m ciea build --corpus {corpus} --retriever {retriever} --backbone {backbone}"


def library_versions() -> dict[str, str]:
    import torch

    return {"faiss": faiss.__version__, "numpy": np.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class IndexManifest:
    """What built an index; compared field by field with the running configuration."""

    corpus: str
    retriever: str
    backbone: str
    dim: int
    count: int
    factory: str = "Flat"
    checkpoint_sha256: str | None = None
    built_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    versions: dict[str, str] = field(default_factory=library_versions)
    format_version: int = FORMAT_VERSION

    def rebuild_hint(self) -> str:
        return rebuild_command(self.corpus, self.retriever, self.backbone)


@dataclass(frozen=True)
class Expectation:
    """What the running configuration needs from an index."""

    corpus: str
    retriever: str
    backbone: str
    dim: int
    checkpoint_sha256: str | None = None

    def mismatches(self, manifest: IndexManifest) -> list[str]:
        pairs = [
            ("corpus", self.corpus, manifest.corpus),
            ("retriever", self.retriever, manifest.retriever),
            ("backbone", self.backbone, manifest.backbone),
            ("dim", self.dim, manifest.dim),
            ("checkpoint_sha256", self.checkpoint_sha256, manifest.checkpoint_sha256),
            ("format_version", FORMAT_VERSION, manifest.format_version),
        ]
        return [f"{name}: index has {got!r}, running configuration needs {want!r}"
                for name, want, got in pairs if want != got]


@dataclass
class Hit:
    """One search result row."""

    doc_id: str
    score: float


class VectorIndex:
    """A FAISS index plus the document id of each row and its manifest."""

    def __init__(self, index: faiss.Index, ids: Sequence[str], manifest: IndexManifest) -> None:
        if index.ntotal != len(ids):
            raise IndexCorruptError(
                f"Index for {manifest.corpus}/{manifest.retriever} has {index.ntotal} vectors but "
                f"{len(ids)} ids. Rebuild with: {manifest.rebuild_hint()}"
            )
        self.index = index
        self.ids = list(ids)
        self.manifest = manifest
        self._reconstructable: bool | None = None  # decided on the first search

    def __len__(self) -> int:
        return self.index.ntotal

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[str], manifest: IndexManifest) -> "VectorIndex":
        """Index ``vectors`` (rows L2-normalised) with the manifest's factory string."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or vectors.shape[1] != manifest.dim:
            raise ValueError(f"vectors {vectors.shape} do not match {len(ids)} ids of dim {manifest.dim}")
        index = faiss.index_factory(manifest.dim, manifest.factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        return cls(index, ids, manifest)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / IDS_FILE).write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")
        (folder / MANIFEST_FILE).write_text(json.dumps(asdict(self.manifest), indent=2) + "\n",
                                            encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path, expect: Expectation | None = None) -> "VectorIndex":
        """Load and validate; every failure names the folder and the rebuild command."""
        hint = rebuild_command(expect.corpus, expect.retriever, expect.backbone) if expect else \
            "python -m ciea build --corpus CORPUS"
        missing = [name for name in (INDEX_FILE, IDS_FILE, MANIFEST_FILE) if not (folder / name).is_file()]
        if missing:
            raise IndexMissingError(f"Index at {folder} is missing {', '.join(missing)}. Build it with: {hint}")
        try:
            manifest = IndexManifest(**json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8")))
            ids = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError("ids.json must be a list of strings")
        except (ValueError, TypeError) as exc:
            raise IndexCorruptError(f"Index at {folder} has a damaged manifest or ids ({exc}). "
                                    f"Rebuild with: {hint}") from exc
        if expect is not None:
            problems = expect.mismatches(manifest)
            if problems:
                raise IndexMismatchError(f"Index at {folder} was built for another configuration ("
                                         + "; ".join(problems) + f"). Rebuild with: {hint}")
        try:
            index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            raise IndexCorruptError(f"Index file {folder / INDEX_FILE} is damaged or truncated. "
                                    f"Rebuild with: {hint}") from exc
        if index.d != manifest.dim or index.ntotal != manifest.count:
            raise IndexCorruptError(f"Index at {folder} holds {index.ntotal} x {index.d} vectors, manifest "
                                    f"says {manifest.count} x {manifest.dim}. Rebuild with: {hint}")
        return cls(index, ids, manifest)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-k hits per query, best first, the same on every run and thread count.

        FAISS's float32 scores move in the 7th digit with the thread count and a vector's row
        (BLAS blocks rows differently), so FAISS only proposes candidates: it searches until the
        last candidate is clearly below the k-th, then the candidates are re-scored exactly and
        ordered by ``ranking_key`` (equal scores by a hash of the doc id, never by corpus order).
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(0, min(int(k), len(self)))
        if k == 0:
            return [[] for _ in range(len(queries))]
        fetch = min(len(self), k + max(10, k))
        while True:
            scores, rows = self.index.search(queries, fetch)
            # A document within float noise of the k-th score (or tied with it) may lie past the
            # fetched rows: fetch more until every query's last candidate is clearly below.
            open_end = scores[:, fetch - 1] >= scores[:, k - 1] - CANDIDATE_SLACK
            if fetch == len(self) or not open_end.any():
                break
            fetch = min(len(self), fetch * 4)
        out = []
        for query, score_row, id_row in zip(queries, scores, rows):
            found = id_row >= 0
            exact = self._exact_scores(query, id_row[found])
            row_scores = exact if exact is not None else score_row[found]
            hits = [Hit(self.ids[i], float(s)) for s, i in zip(row_scores, id_row[found])]
            hits.sort(key=lambda h: ranking_key(h.doc_id, h.score))
            out.append(hits[:k])
        return out

    def _exact_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """Inner products of ``query`` with the stored vectors of ``rows`` in float64 by numpy's
        own loops (no BLAS threads): equal vectors get equal scores. None where the index cannot
        give its vectors back (e.g. IVF without a direct map); FAISS's scores are used then."""
        if self._reconstructable is None:
            try:
                self.index.reconstruct(0)
                self._reconstructable = True
            except RuntimeError:
                self._reconstructable = False
        if not self._reconstructable:
            return None
        vectors = self.index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))
        return np.multiply(vectors.astype(np.float64), query.astype(np.float64)).sum(axis=1)

    def reconstruct_all(self) -> np.ndarray:
        """All stored vectors (exact for Flat indexes), e.g. for geometry."""
        return self.index.reconstruct_n(0, len(self))


def tie_breaker(doc_id: str) -> int:
    """A relevance-free, stable ordering key for equal scores."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big")


def ranking_key(doc_id: str, score: float) -> tuple[float, int]:
    """The one ordering of ranked documents: higher score first, where scores equal to
    ``SCORE_DECIMALS`` places are ties ordered by ``tie_breaker``."""
    return -round(float(score), SCORE_DECIMALS), tie_breaker(doc_id)
