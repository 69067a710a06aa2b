"""Dual-encoder baselines: text tower + image tower aligned into the text space.

- ``dual-split`` (divide and conquer): image and caption are scored separately and the
  scores averaged. Stored as one vector per document, [t ; i] / sqrt(2), queried with
  [q ; q] / sqrt(2), so the inner product is exactly (q.t + q.i) / 2.
- ``dual-fused`` (universal, UniIR score fusion): one vector normalise(t + i).
- ``dual-gcl``: the fused form with an alignment trained by Generalized Contrastive Learning.

Each class's ``query_form`` and ``document_form`` are the one statement of its formula: they take
numpy arrays (indexing, the service) or torch tensors (training, differentiable) alike.

The image side is a trained linear map (``python -m ciea train``) when a checkpoint exists for
the backbone, else the training-free default (ConSE, or CLIP's joint space); the index
manifest records which, by checkpoint hash.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ciea.backbones import Backbone, ImageFeatures, l2_normalize
from ciea.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from ciea.config import Settings
from ciea.data.schema import Corpus
from ciea.features import CorpusFeatures
from ciea.retrievers.alignment import ImageAlignment, TrainedAlignment, default_alignment
from ciea.retrievers.base import Retriever


def _concat_halves(a, b):
    """[a ; b] / sqrt(2) row-wise: numpy in, numpy out; torch in, torch out."""
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b], dim=1) / np.sqrt(2.0)
    return np.concatenate([a, b], axis=1) / np.sqrt(2.0)


def _normalised(x):
    """Row-wise L2 normalisation for numpy arrays or torch tensors."""
    return F.normalize(x, dim=-1) if isinstance(x, torch.Tensor) else l2_normalize(x)


def load_trained_alignment(backbone: Backbone, name: str, settings: Settings | None = None,
                           required: bool = False) -> tuple[ImageAlignment | None, Checkpoint | None]:
    """The trained alignment of retriever ``name`` for ``backbone``, or (None, None) if untrained."""
    stem = (settings or Settings()).checkpoint_stem(backbone.spec, name)
    try:
        checkpoint = load_checkpoint(stem, f"python -m ciea train --retriever {name} --backbone {backbone.spec}")
    except CheckpointError:
        if required or stem.with_suffix(".safetensors").exists():
            raise
        return None, None
    alignment = TrainedAlignment.for_backbone(backbone)
    alignment.load_state_dict(checkpoint.state)
    return alignment.eval(), checkpoint


class DualEncoderRetriever(Retriever):
    supports_image_queries = True
    trainable = True
    requires_training = False  # True: no training-free fallback, a checkpoint must exist

    def __init__(self, backbone: Backbone, alignment: ImageAlignment | None = None,
                 settings: Settings | None = None) -> None:
        super().__init__(backbone)
        self.checkpoint: Checkpoint | None = None
        if alignment is None:
            alignment, self.checkpoint = load_trained_alignment(backbone, self.name, settings, self.requires_training)
        self.alignment = alignment or default_alignment(backbone)

    @property
    def checkpoint_sha256(self) -> str | None:
        return self.checkpoint.sha256 if self.checkpoint else None

    def towers(self) -> str:
        how = ("shared CLIP space" if self.alignment.name == "joint space"
               else f"{self.alignment.name} into the text space")
        return f"text: {self.backbone.text_tower}; image: {self.backbone.image_tower}, {how}"

    @staticmethod
    def query_form(q):
        """Query vectors in this retriever's space from text-space ones (numpy or torch)."""
        return q

    @staticmethod
    def document_form(text, image):
        """Document vectors from caption and aligned image vectors (numpy or torch)."""
        raise NotImplementedError

    def text_queries(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(self.query_form(q), dtype=np.float32)

    def encode_documents(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        return np.asarray(self.document_form(*self.document_parts(features)), dtype=np.float32)

    def document_parts(self, features: CorpusFeatures) -> tuple[np.ndarray, np.ndarray]:
        """Caption vectors and aligned image vectors (zeros for text-only documents)."""
        image = self.alignment(features.image) * features.has_image[:, None]
        return features.text, image.astype(np.float32)

    def image_queries(self, features: ImageFeatures) -> np.ndarray:
        return self.text_queries(self.alignment(features))

    def text_side(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        return self.text_queries(features.text)

    def image_side(self, corpus: Corpus, features: CorpusFeatures) -> np.ndarray:
        return self.text_queries(self.alignment(features.image))


class DualSplitRetriever(DualEncoderRetriever):
    name = "dual-split"
    title = "Dual encoder, split scores"

    @property
    def dim(self) -> int:
        return 2 * self.backbone.text_dim

    @staticmethod
    def query_form(q):
        return _concat_halves(q, q)

    @staticmethod
    def document_form(text, image):
        return _concat_halves(text, image)


class DualFusedRetriever(DualEncoderRetriever):
    name = "dual-fused"
    title = "Dual encoder, fused vector"

    @property
    def dim(self) -> int:
        return self.backbone.text_dim

    @staticmethod
    def document_form(text, image):
        return _normalised(text + image)


class DualGCLRetriever(DualFusedRetriever):
    """The fused dual encoder whose alignment was trained with GCL (Lee et al., 2025)."""

    name = "dual-gcl"
    title = "Dual encoder, GCL-trained"
    requires_training = True

    def towers(self) -> str:
        return super().towers() + " (trained with GCL)"
