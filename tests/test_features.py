"""Frozen features: patch grids for image documents only, float16, memory-mapped, and a damaged
cache rebuilt rather than trusted."""

from __future__ import annotations

import numpy as np

from ciea.data.schema import Corpus, Document, load_corpus
from ciea.features import PatchStore, cached_corpus_features


def test_patch_store_gathers_rows_across_blocks_with_zeros_for_text_only_rows():
    grids = np.arange(2 * 2 * 3, dtype=np.float16).reshape(2, 2, 3)
    store = PatchStore.from_rows(grids, np.array([True, False, True]))
    assert store.shape == (3, 2, 3)
    out = store[[2, 1, 0]]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], grids[1])
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_array_equal(out[2], grids[0])
    both = PatchStore.concatenate([store, store.subset(np.array([2, 0]))])
    assert len(both) == 5 and len(both.blocks) == 2
    np.testing.assert_array_equal(both[3:], np.stack([grids[1], grids[0]]).astype(np.float32))


def test_cache_maps_patches_of_image_documents_and_rebuilds_a_damaged_file(bundled, tiny_settings, tmp_path):
    tiny = load_corpus("tiny", tiny_settings.assets_dir)
    with_text = Corpus("mixed", tiny.root, [*tiny.documents, Document("note", "A text-only note.")])
    first = cached_corpus_features(with_text, bundled, tmp_path, progress=False)
    block = first.image.patches.blocks[0]
    assert isinstance(block, np.memmap) and block.dtype == np.float16
    assert len(block) == len(tiny)  # no grid stored for the text-only document
    np.testing.assert_array_equal(first.image.patches[[len(tiny)]], 0)
    expected = first.image.patches[:]  # a copy: the file under the map is about to be damaged
    del first, block
    path = next((tmp_path / "features").rglob("*.safetensors"))
    path.write_bytes(b"not a safetensors file")
    again = cached_corpus_features(with_text, bundled, tmp_path, progress=False)
    np.testing.assert_array_equal(again.image.patches[:], expected)
    assert again.text.shape == (len(with_text), bundled.text_dim)
