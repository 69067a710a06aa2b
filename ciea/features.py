"""Frozen-backbone features of a corpus, computed once and shared by every retriever.

Patch grids are the bulk (49 x 1280 per image with the bundled towers): they are kept only
for image documents, as float16, and read memory-mapped from the cache file, so training and
building on many more images costs disk rather than RAM.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ciea.backbones import Backbone, ImageFeatures
from ciea.data.schema import Corpus
from ciea.images import load_image

log = logging.getLogger(__name__)
PATCH_DTYPE = np.float16
_SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32}


class PatchStore:
    """Patch grids of a set of rows, gathered from float16 blocks (memory-mapped or in memory).

    ``store[rows]`` returns float32 (len(rows), N, D); rows without an image give zeros.
    Subsets and concatenations only move row indices, never the patch data.
    """

    def __init__(self, blocks: Sequence[np.ndarray], block: np.ndarray, offset: np.ndarray) -> None:
        self.blocks = list(blocks)
        self.block = np.asarray(block, np.int64)  # (rows,) which block holds the row, -1 = no image
        self.offset = np.asarray(offset, np.int64)  # (rows,) position inside that block
        self.grid = tuple(self.blocks[0].shape[1:]) if self.blocks else (0, 0)

    @classmethod
    def from_rows(cls, patches: np.ndarray, has_image: np.ndarray) -> "PatchStore":
        """``patches`` holds one grid per True in ``has_image``, in row order."""
        has_image = np.asarray(has_image, bool)
        return cls([patches], np.where(has_image, 0, -1), np.cumsum(has_image) - 1)

    def __len__(self) -> int:
        return len(self.block)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.grid)

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.arange(len(self))[rows] if not isinstance(rows, (int, np.integer)) else np.array([rows])
        out = np.zeros((len(rows), *self.grid), np.float32)
        for b, block in enumerate(self.blocks):
            hit = np.flatnonzero(self.block[rows] == b)
            if hit.size:
                order = np.argsort(self.offset[rows][hit])  # sorted reads are kinder to a memory map
                out[hit[order]] = block[np.sort(self.offset[rows][hit])]
        return out

    def subset(self, rows: np.ndarray) -> "PatchStore":
        return PatchStore(self.blocks, self.block[rows], self.offset[rows])

    @staticmethod
    def concatenate(stores: Sequence["PatchStore"]) -> "PatchStore":
        blocks, block, offset = [], [], []
        for store in stores:
            block.append(np.where(store.block >= 0, store.block + len(blocks), -1))
            offset.append(store.offset)
            blocks += store.blocks
        return PatchStore(blocks, np.concatenate(block), np.concatenate(offset))


@dataclass
class CorpusFeatures:
    """Caption embeddings and image features of every document, in corpus order.

    ``has_image[i]`` is False for text-only documents, whose pooled rows are zeros;
    ``image.patches`` is a :class:`PatchStore` (or any array indexable by rows).
    """

    text: np.ndarray  # (N, text_dim) L2-normalised
    image: ImageFeatures
    has_image: np.ndarray  # (N,) bool

    def subset(self, rows: np.ndarray) -> "CorpusFeatures":
        img = self.image
        patches = img.patches.subset(rows) if isinstance(img.patches, PatchStore) else img.patches[rows]
        probs = None if img.class_probs is None else img.class_probs[rows]
        return CorpusFeatures(self.text[rows], ImageFeatures(img.pooled[rows], patches, probs), self.has_image[rows])

    @staticmethod
    def concatenate(parts: Sequence["CorpusFeatures"]) -> "CorpusFeatures":
        stores = [p.image.patches if isinstance(p.image.patches, PatchStore)
                  else PatchStore.from_rows(np.asarray(p.image.patches)[p.has_image], p.has_image) for p in parts]
        probs = [p.image.class_probs for p in parts]
        return CorpusFeatures(np.concatenate([p.text for p in parts]),
                              ImageFeatures(np.concatenate([p.image.pooled for p in parts]), PatchStore.concatenate(stores),
                                            None if any(p is None for p in probs) else np.concatenate(probs)),
                              np.concatenate([p.has_image for p in parts]))


def encode_corpus(
    corpus: Corpus, backbone: Backbone, batch_size: int = 32, progress: bool = True
) -> CorpusFeatures:
    """Encode captions and images of ``corpus`` with tqdm progress bars (patches as float16)."""
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
    patches = np.zeros((len(with_image), backbone.num_patches, backbone.patch_dim), PATCH_DTYPE)
    probs = np.zeros((n, len(backbone.class_names)), np.float32) if backbone.class_names else None
    bar = tqdm(total=len(with_image), desc=f"{corpus.name}: images", unit="img", disable=not progress)
    for s in range(0, len(with_image), batch_size):
        rows = with_image[s : s + batch_size]
        images: list[Image.Image] = [load_image(corpus.image_path(corpus.documents[i])) for i in rows]
        feats = backbone.encode_images(images, batch_size=batch_size)
        pooled[rows], patches[s : s + len(rows)] = feats.pooled, feats.patches
        if probs is not None and feats.class_probs is not None:
            probs[rows] = feats.class_probs
        bar.update(len(rows))
    bar.close()
    has_image = np.zeros(n, dtype=bool)
    has_image[with_image] = True
    return CorpusFeatures(text, ImageFeatures(pooled, PatchStore.from_rows(patches, has_image), probs), has_image)


def memmap_tensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a safetensors file as a read-only numpy memory map (no copy, no pickle).

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's
    dtype, shape and byte range, then the raw little-endian data.
    """
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(length))
    info = header[name]
    begin, _ = info["data_offsets"]
    shape = tuple(info["shape"])
    if 0 in shape:
        return np.zeros(shape, _SAFETENSORS_DTYPES[info["dtype"]])
    return np.memmap(path, dtype=_SAFETENSORS_DTYPES[info["dtype"]], mode="r", offset=8 + length + begin, shape=shape)


def cached_corpus_features(corpus: Corpus, backbone: Backbone, cache_dir: Path, progress: bool = True,
                           _retry: bool = True) -> CorpusFeatures:
    """``encode_corpus`` once per (backbone, corpus), kept as safetensors under ``cache_dir``.

    Training and index builds reuse the frozen features instead of re-encoding every image.
    The cache is keyed by the documents (ids, captions, image paths), so an edited corpus is
    re-encoded rather than misread; delete the cache folder after replacing image files in
    place. Patches are read back memory-mapped, identically for training and indexing.
    """
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from ciea.config import backbone_slug

    ids_hash = hashlib.sha256("\n".join(f"{d.doc_id}\t{d.text}\t{d.image}" for d in corpus).encode()).hexdigest()[:16]
    path = cache_dir / "features" / backbone_slug(backbone.spec) / f"{corpus.name}-{ids_hash}.v2.safetensors"
    if not path.exists():
        features = encode_corpus(corpus, backbone, progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"text": features.text, "pooled": features.image.pooled,
                  "patches": np.ascontiguousarray(features.image.patches.blocks[0]),
                  "has_image": features.has_image.astype(np.uint8)}
        if features.image.class_probs is not None:
            arrays["class_probs"] = features.image.class_probs
        tmp = path.with_suffix(".tmp")
        save_file(arrays, str(tmp))
        # a new file replaces the old one (never a rewrite in place): a crash mid-write leaves no half
        # file, and processes that still map the old file keep reading it instead of faulting
        tmp.replace(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            small = {k: fh.get_tensor(k) for k in fh.keys() if k != "patches"}
        has_image = small["has_image"].astype(bool)
        patches = PatchStore.from_rows(memmap_tensor(path, "patches"), has_image)
        if patches.grid[0] and len(patches.blocks[0]) != int(has_image.sum()):
            raise ValueError("patch rows do not match the image documents")
        return CorpusFeatures(small["text"], ImageFeatures(small["pooled"], patches, small.get("class_probs")),
                              has_image)
    except Exception as exc:  # a damaged cache is rebuilt once, never trusted
        if not _retry:
            raise
        log.warning("feature cache %s unreadable (%s); re-encoding", path, exc)
        path.unlink(missing_ok=True)
        return cached_corpus_features(corpus, backbone, cache_dir, progress, _retry=False)
