"""Frozen-backbone features of a corpus, computed once and shared by every retriever."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm import tqdm

from ciea.backbones import Backbone, ImageFeatures
from ciea.data.schema import Corpus
from ciea.images import load_image


@dataclass
class CorpusFeatures:
    """Caption embeddings and image features of every document, in corpus order.

    ``has_image[i]`` is False for text-only documents, whose image rows are zeros.
    """

    text: np.ndarray  # (N, text_dim) L2-normalised
    image: ImageFeatures
    has_image: np.ndarray  # (N,) bool


def encode_corpus(
    corpus: Corpus, backbone: Backbone, batch_size: int = 32, progress: bool = True
) -> CorpusFeatures:
    """Encode captions and images of ``corpus`` with tqdm progress bars."""
    texts = [d.text for d in corpus]
    text_parts = [
        backbone.encode_text(texts[s : s + 128])
        for s in tqdm(range(0, len(texts), 128), desc=f"{corpus.name}: captions", unit="batch",
                      disable=not progress)
    ]
    text = np.concatenate(text_parts) if text_parts else np.zeros((0, backbone.text_dim), np.float32)

    with_image = [i for i, d in enumerate(corpus) if d.image is not None]
    n = len(corpus)
    pooled = np.zeros((n, backbone.image_dim), np.float32)
    patches = np.zeros((n, backbone.num_patches, backbone.patch_dim), np.float32)
    probs = np.zeros((n, len(backbone.class_names)), np.float32) if backbone.class_names else None
    bar = tqdm(total=len(with_image), desc=f"{corpus.name}: images", unit="img", disable=not progress)
    for s in range(0, len(with_image), batch_size):
        rows = with_image[s : s + batch_size]
        images: list[Image.Image] = [load_image(corpus.image_path(corpus.documents[i])) for i in rows]
        feats = backbone.encode_images(images, batch_size=batch_size)
        pooled[rows], patches[rows] = feats.pooled, feats.patches
        if probs is not None and feats.class_probs is not None:
            probs[rows] = feats.class_probs
        bar.update(len(rows))
    bar.close()
    has_image = np.zeros(n, dtype=bool)
    has_image[with_image] = True
    return CorpusFeatures(text, ImageFeatures(pooled, patches, probs), has_image)
