"""The interface every frozen backbone (a text tower plus an image tower) offers."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image


class BackboneLoadError(RuntimeError):
    """A backbone spec could not be turned into loaded towers."""


@dataclass(frozen=True)
class ImageFeatures:
    """What an image tower gives for a batch of images.

    pooled: (B, Dv) global vector; in the text space when the backbone has a joint space.
    patches: (B, N, Dp) grid features (N = 49 for a 7x7 grid) that CIEA attends over.
    class_probs: (B, C) classifier probabilities, for classifier towers only (ConSE needs them).
    """

    pooled: np.ndarray
    patches: np.ndarray
    class_probs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pooled)

    @staticmethod
    def concatenate(parts: Sequence["ImageFeatures"]) -> "ImageFeatures":
        probs = [p.class_probs for p in parts]
        return ImageFeatures(
            pooled=np.concatenate([p.pooled for p in parts]),
            patches=np.concatenate([p.patches for p in parts]),
            class_probs=None if any(p is None for p in probs) else np.concatenate(probs),
        )


@dataclass(frozen=True)
class TokenEmbeddings:
    """The language model's *input* embeddings of tokenised texts (not contextual)."""

    input_ids: torch.Tensor  # (B, L) long
    embeddings: torch.Tensor  # (B, L, D) float
    attention_mask: torch.Tensor  # (B, L) 1 for real tokens, 0 for padding


class Backbone(ABC):
    """Frozen pretrained towers behind one spec string (see ``ciea.backbones.load_backbone``).

    Text embeddings come back L2-normalised as float32 numpy arrays, ready for inner-product
    search; image features come back raw so that heads trained later can use them.
    """

    spec: str
    text_tower: str  # human-readable name of the text tower, shown in the UI
    image_tower: str  # human-readable name of the image tower, shown in the UI
    joint_space: bool  # True when pooled image vectors and text vectors share one space
    text_dim: int
    image_dim: int
    patch_dim: int
    num_patches: int
    token_dim: int
    max_text_tokens: int
    class_names: tuple[str, ...] = ()
    #: The attribute holding the language model that ``encode_token_states`` runs, and the
    #: modules in it that CIEA's optional LoRA adapter wraps (a regular expression matched in
    #: full against module names, as peft's ``target_modules``); "" = no adapter on this backbone.
    language_model_attr: str = ""
    adapter_targets: str = ""

    def language_model_shared(self) -> list[torch.nn.Module]:
        """Submodules of the language model's module that a private copy shares (an image tower)."""
        return []

    def with_private_language_model(self, adapt: Callable[[torch.nn.Module], None]) -> "Backbone":
        """A view of this backbone whose language model is a private copy changed in place by
        ``adapt`` (CIEA's LoRA adapter). Tokenizer and image tower stay shared, and the other
        retrievers keep reading the original, so the view costs one language model more."""
        if not self.language_model_attr:
            raise ValueError(f"Backbone {self.spec!r} offers no language model to adapt.")
        original = getattr(self, self.language_model_attr)
        private = copy.deepcopy(original, memo={id(m): m for m in self.language_model_shared()})
        adapt(private)
        view = copy.copy(self)
        setattr(view, self.language_model_attr, private)
        return view

    @abstractmethod
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(B, text_dim) L2-normalised sentence embeddings."""

    @abstractmethod
    def embed_tokens(self, texts: Sequence[str]) -> TokenEmbeddings:
        """Token ids, input embeddings and mask for a batch of texts."""

    @abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One image as the (3, H, W) tensor the image tower expects."""

    @abstractmethod
    def _image_forward(self, pixels: torch.Tensor) -> ImageFeatures:
        """Run the image tower on a preprocessed batch."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes before truncation (for user-facing notices)."""

    @property
    @abstractmethod
    def special_token_ids(self) -> frozenset[int]:
        """Ids of start, end and padding tokens (never content words)."""

    @property
    def max_sequence_length(self) -> int:
        """Longest input-embedding sequence the language model accepts."""
        return self.max_text_tokens

    @abstractmethod
    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The language model's input embeddings (B, L, token_dim) of token ids."""

    @abstractmethod
    def encode_token_states(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text tower's output at every position (B, L, text_dim), for learned pooling (CIEA).
        Differentiable with respect to ``embeddings``, like ``encode_token_embeddings``."""

    @abstractmethod
    def encode_token_embeddings(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the text tower on input embeddings (B, L, token_dim); pooled (B, text_dim), not normalised.

        Differentiable with respect to ``embeddings`` (the tower's own weights stay frozen), so
        heads that write into the language model's input space (CIEA) can be trained through it.
        For plain token embeddings it gives the same vectors as ``encode_text``.
        """

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> ImageFeatures:
        """Features for a list of PIL images, in batches."""
        if not images:
            raise ValueError("encode_images needs at least one image")
        parts = []
        for start in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(im) for im in images[start : start + batch_size]])
            parts.append(self._image_forward(batch))
        return ImageFeatures.concatenate(parts)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)
