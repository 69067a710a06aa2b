"""The one place that decides paths, environment variables and runtime defaults."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Environment variables a user (or a Space) can set.
BACKBONE_ENV = "CIEA_BACKBONE"
ASSETS_ENV = "CIEA_ASSETS_DIR"
INDEXES_ENV = "CIEA_INDEX_DIR"
THREADS_ENV = "CIEA_THREADS"
CHECKPOINTS_ENV = "CIEA_CHECKPOINT_DIR"
CACHE_ENV = "CIEA_CACHE_DIR"

DEFAULT_BACKBONE = "bundled"
#: Corpora under assets/ that only feed training (``python -m ciea train``): never served,
#: indexed or uploaded to a Space. Their images are drawings of train-split concepts only.
TRAINING_ONLY_CORPORA = frozenset({"emoji-train"})
DEFAULT_INDEX_FACTORY = "Flat"
DEFAULT_K = 10
MAX_K = 100


def default_backbone_spec() -> str:
    """The backbone spec from the environment, else the offline default."""
    return os.environ.get(BACKBONE_ENV, "").strip() or DEFAULT_BACKBONE


@dataclass(frozen=True)
class Settings:
    """Where artefacts live and which backbone answers queries."""

    backbone: str = field(default_factory=default_backbone_spec)
    assets_dir: Path = field(
        default_factory=lambda: Path(os.environ.get(ASSETS_ENV, PROJECT_ROOT / "assets"))
    )
    indexes_dir: Path = field(
        default_factory=lambda: Path(os.environ.get(INDEXES_ENV, PROJECT_ROOT / "indexes"))
    )

    checkpoints_dir: Path = field(
        default_factory=lambda: Path(os.environ.get(CHECKPOINTS_ENV, PROJECT_ROOT / "indexes" / "checkpoints"))
    )
    #: Frozen-backbone features cached between training runs (not shipped; git-ignored).
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get(CACHE_ENV, PROJECT_ROOT / ".cache")))

    def corpus_dir(self, corpus: str) -> Path:
        return self.assets_dir / corpus

    def index_dir(self, corpus: str, retriever: str) -> Path:
        return self.indexes_dir / corpus / retriever

    def checkpoint_stem(self, backbone: str, retriever: str) -> Path:
        """Where a trained retriever's weights (.safetensors) and config (.json) live."""
        return self.checkpoints_dir / backbone_slug(backbone) / retriever


def backbone_slug(spec: str) -> str:
    """A backbone spec as a safe folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", spec).strip("-.")[:120] or "backbone"


#: Threads per process when serving queries (the app, the search service). A query is a tiny
#: forward pass; concurrency comes from Gradio's workers, and with two OpenMP threads per query a
#: second busy process makes every query wait for a descheduled, spinning thread (10x slower in
#: BENCHMARKS.md's contention section). Batch work (build, train) keeps every core.
SERVING_THREADS = 1


def configure_threads(n: int | None = None, default: int | None = None) -> int:
    """Set torch and FAISS thread counts once, explicitly (they fight otherwise).

    ``n`` if given, else $CIEA_THREADS, else ``default``, else every core.
    """
    if n is None:
        n = int(os.environ.get(THREADS_ENV, "0") or 0) or default or (os.cpu_count() or 1)
    import faiss  # imported before torch on purpose: both ship an OpenMP runtime
    import torch

    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)
    return n
