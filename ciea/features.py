"""Frozen-backbone features of a corpus, computed once and shared by every retriever."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

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


log = logging.getLogger(__name__)


def cached_corpus_features(corpus: Corpus, backbone: Backbone, cache_dir: Path, progress: bool = True
                           ) -> CorpusFeatures:
    """``encode_corpus`` once per (backbone, corpus), kept as safetensors under ``cache_dir``.

    Training and index builds reuse the frozen features instead of re-encoding every image.
    The cache is keyed by the documents (ids, captions, image paths), so an edited corpus is
    re-encoded rather than misread; delete the cache folder after replacing image files in
    place. Patches are kept as float16 (half the disk), identically for training and indexing.
    """
    import hashlib

    from safetensors.numpy import load_file, save_file

    from ciea.config import backbone_slug

    ids_hash = hashlib.sha256("\n".join(f"{d.doc_id}\t{d.text}\t{d.image}" for d in corpus).encode()).hexdigest()[:16]
    path = cache_dir / "features" / backbone_slug(backbone.spec) / f"{corpus.name}-{ids_hash}.safetensors"
    if path.exists():
        try:
            data = load_file(str(path))
            probs = data.get("class_probs")
            return CorpusFeatures(data["text"], ImageFeatures(data["pooled"], data["patches"].astype(np.float32),
                                                              probs), data["has_image"].astype(bool))
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("feature cache %s unreadable (%s); re-encoding", path, exc)
    features = encode_corpus(corpus, backbone, progress=progress)
    features.image = ImageFeatures(features.image.pooled, features.image.patches.astype(np.float16).astype(np.float32),
                                   features.image.class_probs)  # what a later cache hit returns
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"text": features.text, "pooled": features.image.pooled,
              "patches": features.image.patches.astype(np.float16), "has_image": features.has_image.astype(np.uint8)}
    if features.image.class_probs is not None:
        arrays["class_probs"] = features.image.class_probs
    save_file(arrays, str(path))
    return features
