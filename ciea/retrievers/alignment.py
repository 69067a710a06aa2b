"""Image-to-text-space alignments for the dual encoder.

A CLIP backbone already has a joint space (``JointSpaceAlignment``). The bundled towers do
not, so the training-free start is ConSE (Norouzi et al., 2014): an image's text-space vector
is the probability-weighted mean of the text embeddings of its top-T ImageNet class names.
``TrainedAlignment`` is a linear map on pooled image features learnt contrastively
(``python -m ciea train``); it must beat ConSE.
"""

from __future__ import annotations

import functools
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ciea.backbones import Backbone, ImageFeatures, l2_normalize

CONSE_TOP_T = 10
CLASS_NAME_TEMPLATE = "{}"


class ImageAlignment(Protocol):
    name: str

    def __call__(self, features: ImageFeatures) -> np.ndarray:
        """(B, text_dim) L2-normalised image vectors in the text space."""


def conse_embed(probs: np.ndarray, class_embeddings: np.ndarray, top_t: int = CONSE_TOP_T) -> np.ndarray:
    """ConSE: sum over the top-T classes of p(class) * embedding(class), renormalised by the
    top-T mass, then L2-normalised. probs (B, C), class_embeddings (C, D) -> (B, D)."""
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    top_t = max(1, min(top_t, probs.shape[1]))
    top = np.argpartition(-probs, top_t - 1, axis=1)[:, :top_t]
    weights = np.take_along_axis(probs, top, axis=1)
    weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    mixed = np.einsum("bt,btd->bd", weights, class_embeddings[top].astype(np.float64))
    return l2_normalize(mixed)


class ConSEAlignment:
    """Training-free image -> text mapping through a classifier's class names."""

    name = "ConSE"

    def __init__(self, backbone: Backbone, top_t: int = CONSE_TOP_T) -> None:
        if not backbone.class_names:
            raise ValueError(f"ConSE needs a classifier image tower; {backbone.spec} has no class names")
        self.top_t = top_t
        self.class_embeddings = backbone.encode_text(
            [CLASS_NAME_TEMPLATE.format(c) for c in backbone.class_names]
        )

    def __call__(self, features: ImageFeatures) -> np.ndarray:
        if features.class_probs is None:
            raise ValueError("ConSE needs class probabilities from the image tower")
        return conse_embed(features.class_probs, self.class_embeddings, self.top_t)


class JointSpaceAlignment:
    """The backbone's own joint space (CLIP): pooled image vectors, normalised."""

    name = "joint space"

    def __call__(self, features: ImageFeatures) -> np.ndarray:
        return l2_normalize(features.pooled)


class TrainedAlignment(nn.Module):
    """A learnt linear map from pooled image features into the text space.

    Initialised to the identity where the backbone already has a joint space (CLIP), so
    training starts from the pretrained alignment rather than from noise.
    """

    name = "trained linear map"

    def __init__(self, image_dim: int, text_dim: int, identity_init: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(image_dim, text_dim)
        if identity_init and image_dim == text_dim:
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(text_dim))
                self.linear.bias.zero_()

    @classmethod
    def for_backbone(cls, backbone: Backbone) -> "TrainedAlignment":
        return cls(backbone.image_dim, backbone.text_dim, identity_init=backbone.joint_space)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, text_dim) L2-normalised image vectors; differentiable (training)."""
        return torch.nn.functional.normalize(self.linear(pooled), dim=-1)

    def __call__(self, features):  # type: ignore[override]
        if isinstance(features, ImageFeatures):
            with torch.inference_mode():
                return super().__call__(torch.as_tensor(features.pooled, dtype=torch.float32)).numpy()
        return super().__call__(features)


@functools.lru_cache(maxsize=4)
def default_alignment(backbone: Backbone) -> ImageAlignment:
    """The training-free alignment for ``backbone`` (cached: ConSE encodes 1000 class names)."""
    return JointSpaceAlignment() if backbone.joint_space else ConSEAlignment(backbone)
