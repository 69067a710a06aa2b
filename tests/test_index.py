"""FAISS index store: round trip, manifest checks, damaged files, fair tie-breaking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ciea.index import (Expectation, IndexCorruptError, IndexManifest, IndexMismatchError,
                        IndexMissingError, VectorIndex, tie_breaker)

from conftest import unit_rows


def make_index(n=50, d=16, factory="Flat"):
    vectors = unit_rows(n, d)
    ids = [f"doc-{i}" for i in range(n)]
    manifest = IndexManifest("tiny", "text-dense", "bundled", d, n, factory=factory)
    return VectorIndex.build(vectors, ids, manifest), vectors, ids


def expectation(**over):
    base = dict(corpus="tiny", retriever="text-dense", backbone="bundled", dim=16)
    base.update(over)
    return Expectation(**base)


def test_search_returns_exact_neighbours_in_order():
    index, vectors, ids = make_index()
    queries = unit_rows(5, 16, seed=1)
    hits = index.search(queries, 7)
    scores = queries @ vectors.T
    for q, row in enumerate(hits):
        assert [h.doc_id for h in row] == [ids[i] for i in np.argsort(-scores[q])[:7]]
        assert all(a.score >= b.score for a, b in zip(row, row[1:]))
        assert row[0].score == pytest.approx(scores[q].max(), abs=1e-5)


def test_k_is_capped_at_corpus_size():
    index, _, _ = make_index(n=5)
    assert len(index.search(unit_rows(1, 16), 50)[0]) == 5


def test_round_trip_gives_same_results(tmp_path):
    index, _, _ = make_index()
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx", expectation())
    queries = unit_rows(3, 16, seed=2)
    assert [[(h.doc_id, h.score) for h in r] for r in loaded.search(queries, 10)] == \
           [[(h.doc_id, h.score) for h in r] for r in index.search(queries, 10)]
    manifest = json.loads((tmp_path / "idx/manifest.json").read_text())
    assert manifest["count"] == 50 and manifest["dim"] == 16 and "faiss" in manifest["versions"]


@pytest.mark.parametrize("field, value", [("backbone", "open_clip:ViT-B-32:none"), ("dim", 32),
                                          ("checkpoint_sha256", "abc123"), ("retriever", "dual-fused")])
def test_manifest_mismatch_is_refused_with_rebuild_command(tmp_path, field, value):
    make_index()[0].save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError) as info:
        VectorIndex.load(tmp_path / "idx", expectation(**{field: value}))
    assert field in str(info.value) and "python -m ciea build --corpus tiny" in str(info.value)


def test_truncated_index_file_is_a_clear_error(tmp_path):
    make_index()[0].save(tmp_path / "idx")
    path = tmp_path / "idx/index.faiss"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match="damaged or truncated.*Rebuild with"):
        VectorIndex.load(tmp_path / "idx", expectation())


def test_missing_and_damaged_metadata(tmp_path):
    with pytest.raises(IndexMissingError, match="missing index.faiss, ids.json, manifest.json"):
        VectorIndex.load(tmp_path / "nothing", expectation())
    make_index()[0].save(tmp_path / "idx")
    (tmp_path / "idx/ids.json").write_text('["only-one"]')
    with pytest.raises(IndexCorruptError, match="50 vectors but 1 ids"):
        VectorIndex.load(tmp_path / "idx", expectation())
    (tmp_path / "idx/manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="damaged manifest"):
        VectorIndex.load(tmp_path / "idx", expectation())


def test_ties_are_broken_by_id_hash_not_by_insertion_order():
    vector = unit_rows(1, 16)
    ids = [f"dup-{i}" for i in range(30)]
    forward = VectorIndex.build(np.repeat(vector, 30, 0), ids, IndexManifest("t", "r", "b", 16, 30))
    backward = VectorIndex.build(np.repeat(vector, 30, 0), ids[::-1], IndexManifest("t", "r", "b", 16, 30))
    expected = sorted(ids, key=tie_breaker)[:5]
    assert [h.doc_id for h in forward.search(vector, 5)[0]] == expected
    assert [h.doc_id for h in backward.search(vector, 5)[0]] == expected
    assert expected != ids[:5]


def test_hnsw_factory_string_is_honoured(tmp_path):
    index, vectors, ids = make_index(n=200, factory="HNSW16")
    assert "HNSW" in type(index.index).__name__
    index.save(tmp_path / "h")
    loaded = VectorIndex.load(tmp_path / "h")
    assert loaded.search(vectors[:1], 1)[0][0].doc_id == ids[0]


class RowNoiseIndex:
    """A FAISS index whose scores carry a fixed offset per stored row, the way BLAS blocking
    moves float32 inner products in the 7th digit depending on a vector's row and thread count."""

    def __init__(self, inner, offsets):
        self.inner, self.offsets = inner, np.asarray(offsets, dtype=np.float32)
        self.ntotal, self.d = inner.ntotal, inner.d

    def search(self, queries, k):
        scores, rows = self.inner.search(queries, self.ntotal)
        noisy = scores + self.offsets[rows]
        order = np.argsort(-noisy, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(noisy, order, 1), np.take_along_axis(rows, order, 1)

    def reconstruct(self, i):
        return self.inner.reconstruct(i)

    def reconstruct_batch(self, rows):
        return self.inner.reconstruct_batch(rows)


def noisy_index(vectors, ids, offsets):
    import faiss

    inner = faiss.IndexFlatIP(vectors.shape[1])
    inner.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return VectorIndex(RowNoiseIndex(inner, offsets), ids, IndexManifest("t", "r", "b", vectors.shape[1], len(ids)))


def test_equal_vectors_tie_whatever_the_float_noise_of_their_rows():
    # 30 copies of one vector whose score (0.8000005) sits on a 6-decimal rounding boundary:
    # noise of a few 1e-7 per row must not split them into two score groups.
    d = 8
    doc = np.zeros((1, d), dtype=np.float32)
    doc[0, 0] = 1.0
    query = np.zeros((1, d), dtype=np.float32)
    query[0, :2] = [0.8000005, np.sqrt(1 - 0.8000005 ** 2)]
    ids = [f"dup-{i}" for i in range(30)]
    vectors = np.repeat(doc, 30, 0)
    expected = sorted(ids, key=tie_breaker)[:5]
    for seed in (0, 1):
        offsets = np.random.default_rng(seed).uniform(-3e-7, 3e-7, 30)
        assert [h.doc_id for h in noisy_index(vectors, ids, offsets).search(query, 5)[0]] == expected


def test_a_document_the_noise_pushed_below_the_cut_is_still_found():
    # Exact scores 0.5 (a) and 0.499998 (b); row noise swaps them in FAISS's float32 order.
    d = 8
    query = np.zeros((1, d), dtype=np.float32)
    query[0, 0] = 1.0
    vectors = np.zeros((12, d), dtype=np.float32)
    for row, score in enumerate([0.5, 0.499998] + [0.1 - 0.01 * i for i in range(10)]):
        vectors[row, :2] = [score, np.sqrt(1 - score ** 2)]
    ids = ["a", "b"] + [f"far-{i}" for i in range(10)]
    offsets = np.zeros(12)
    offsets[:2] = [-5e-6, 5e-6]
    hits = noisy_index(vectors, ids, offsets).search(query, 1)[0]
    assert [h.doc_id for h in hits] == ["a"]
    assert hits[0].score == pytest.approx(0.5, abs=1e-7)
