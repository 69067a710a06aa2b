"""The retriever interface: encode queries, encode documents, into one searchable space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from ciea.backbones import Backbone, ImageFeatures
from ciea.config import Settings
from ciea.data.schema import Corpus
from ciea.features import CorpusFeatures


class Retriever(ABC):
    """A retrieval system over one backbone.

    Query and document vectors are L2-normalised and scored by inner product, so any
    retriever plugs into the same FAISS index store. Trained retrievers report the hash of
    their checkpoint so indexes built with other weights are refused.
    """

    name: str
    title: str  # short UI label
    supports_image_queries: bool = False
    #: Has heads that ``python -m ciea train --retriever NAME`` trains (and a checkpoint to load).
    trainable: bool = False

    def __init__(self, backbone: Backbone, settings: Settings | None = None) -> None:
        """Every retriever is made as ``cls(backbone, settings=...)``; ``settings`` says where
        trained ones find their checkpoint."""
        self.backbone = backbone

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of query and document vectors."""

    @property
    def checkpoint_sha256(self) -> str | None:
        return None

    @abstractmethod
    def towers(self) -> str:
        """Which towers (and heads) produce this retriever's vectors, in plain words."""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(Q, dim) query vectors."""
        return self.text_queries(self.backbone.encode_text(list(texts)))

    def text_queries(self, text_vectors: np.ndarray) -> np.ndarray:
        """Query vectors from the backbone's text vectors. The backbone pass is the costly
        part and the same for every retriever, so the service runs it once per query."""
        return text_vectors

    @abstractmethod
    def encode_documents(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        """(N, dim) document vectors in corpus order."""

    def image_queries(self, features: ImageFeatures) -> np.ndarray:
        """Query vectors from the backbone's image features (shared across retrievers, like
        :meth:`text_queries`)."""
        raise NotImplementedError(f"{self.name} does not take image queries")

    def image_side(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        """Image vectors in this retriever's search space (geometry). Text-only retrievers have
        no image side of their own; the training-free image map into the text space stands in."""
        from ciea.retrievers.alignment import default_alignment

        return default_alignment(self.backbone)(features.image)

    def text_side(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        """Caption vectors in this retriever's search space, in query form (geometry)."""
        return features.text

    def embedding_sides(self, corpus: Corpus, features: CorpusFeatures, documents: np.ndarray
                        ) -> dict[str, np.ndarray]:
        """The text, image and document clouds of the image documents, row-aligned (geometry)."""
        rows = np.flatnonzero(features.has_image)
        return {"text": np.asarray(self.text_side(corpus, features)[rows], np.float32),
                "image": np.asarray(self.image_side(corpus, features)[rows], np.float32),
                "document": np.asarray(documents[rows], np.float32)}
