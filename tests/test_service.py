"""The service on a tiny corpus: search, disabled retrievers, and the open_clip pipeline."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from ciea.build import build_indexes
from ciea.retrievers import REGISTRY
from ciea.service import SearchService
from ciea.validation import InputError

from conftest import RANDOM_CLIP


def test_search_returns_k_ranked_rows_per_retriever(tiny_built):
    response = SearchService(tiny_built).search("a red ball", "tiny", k=3)
    assert list(response.results) == list(REGISTRY)  # the shipped checkpoints make every retriever buildable
    for rows in response.results.values():
        assert [r.rank for r in rows] == [1, 2, 3]
        assert all(a.score >= b.score for a, b in zip(rows, rows[1:]))
        assert rows[0].doc_id == "shapes/red-circle.png" and rows[0].image.is_file()


def test_the_service_names_every_retriever_with_its_class_title(tiny_built):
    titles = SearchService(tiny_built).retriever_titles()
    assert titles == {name: cls.title for name, cls in REGISTRY.items()}
    assert titles["text-dense"] == "Text only (captions)"


def test_input_errors(tiny_built):
    service = SearchService(tiny_built)
    for kwargs, message in [
        (dict(query=" ", corpus="tiny"), "empty"),
        (dict(query="ball", corpus="nope"), "Unknown corpus"),
        (dict(query="ball", corpus="tiny", retrievers=["clip"]), "Unknown retriever"),
        (dict(query="ball", corpus="tiny", retrievers=[]), "at least one retriever"),
        (dict(query="ball", corpus="tiny", k=0), "k must"),
    ]:
        with pytest.raises(InputError, match=message):
            service.search(**kwargs)


def test_long_query_is_answered_with_a_truncation_notice(tiny_built):
    response = SearchService(tiny_built).search("ball " * 1500, "tiny", ["text-dense"], 2)
    assert len(response.results["text-dense"]) == 2
    assert any("tokens long" in n for n in response.notices)


def test_damaged_index_disables_only_its_retriever(tiny_built, tmp_path):
    indexes = tmp_path / "indexes"
    shutil.copytree(tiny_built.indexes_dir, indexes)
    path = indexes / "tiny" / "dual-split" / "index.faiss"
    path.write_bytes(path.read_bytes()[:64])
    service = SearchService(dataclasses.replace(tiny_built, indexes_dir=indexes))
    assert service.retrievers("tiny") == [n for n in REGISTRY if n != "dual-split"]
    assert "Rebuild with" in service.unavailable("tiny")["dual-split"]
    response = service.search("a red ball", "tiny", ["text-dense", "dual-split"], 2)
    assert list(response.results) == ["text-dense"]
    assert any(n.startswith("dual-split is unavailable") for n in response.notices)


def test_indexes_of_another_backbone_are_refused(tiny_built):
    service = SearchService(dataclasses.replace(tiny_built, backbone=RANDOM_CLIP))
    assert service.retrievers("tiny") == []
    assert all("backbone" in why for why in service.unavailable("tiny").values())


@pytest.mark.slow
def test_open_clip_pipeline_end_to_end(tiny_settings, tmp_path, random_clip):
    """Features, indexes and search on a random-weight open_clip model over a tiny corpus."""
    settings = dataclasses.replace(tiny_settings, backbone=RANDOM_CLIP, indexes_dir=tmp_path / "idx")
    reports = build_indexes("tiny", settings, progress=False)
    assert {r.retriever: r.dim for r in reports} == {"text-dense": 512, "dual-split": 1024, "dual-fused": 512}
    service = SearchService(settings)
    response = service.search("A red ball.", "tiny", k=6)
    assert set(response.results) == {"text-dense", "dual-split", "dual-fused"}
    assert all(len(rows) == 6 for rows in response.results.values())
    assert response.results["text-dense"][0].doc_id == "shapes/red-circle.png"  # identical caption text
    assert "shared CLIP space" in service.retriever("tiny", "dual-fused").retriever.towers()


def test_text_tower_runs_once_per_query_text_for_every_retriever(tiny_built, monkeypatch):
    service = SearchService(tiny_built)
    names = service.retrievers("tiny")
    assert len(names) > 1
    calls = []
    encode = service.backbone.encode_text
    monkeypatch.setattr(service.backbone, "encode_text", lambda texts, *a, **kw: calls.append(texts) or encode(texts))
    first = service.search("a blue box", "tiny", names, 3)
    assert calls == [["a blue box"]]  # one tower pass, shared by every retriever
    again = service.search("a blue box", "tiny", names, 3)
    assert calls == [["a blue box"]]  # the same text again: the cached vector
    assert {n: [r.doc_id for r in rows] for n, rows in again.results.items()} == {
        n: [r.doc_id for r in rows] for n, rows in first.results.items()}
    service.search("a red ball", "tiny", names[:1], 3)
    service.search("a red ball", "tiny", names[1:], 3)
    assert calls == [["a blue box"], ["a red ball"]]  # a new text: one more pass, whichever retrievers ask


def test_result_rows_assemble_hits_with_document_facts(tiny_built):
    from ciea.index import Hit

    service = SearchService(tiny_built)
    rows = service.result_rows("tiny", [Hit("animals/frog.png", 0.75), Hit("vehicles/bus.png", 0.5)],
                               frozenset({"vehicles/bus.png"}))
    assert [(r.rank, r.doc_id, r.text, r.category, r.relevant) for r in rows] == [
        (1, "animals/frog.png", "A frog.", "animals", False), (2, "vehicles/bus.png", "A yellow school bus.", "vehicles", True)]
    assert rows[0].image is not None and rows[0].image.is_file()


def test_captions_query_set_on_any_corpus_and_unknown_splits_refused(tiny_built):
    service = SearchService(tiny_built)
    queries, qrels = service.query_set("tiny", "captions")
    assert len(queries) == 6 and all(qrels[q.qid] == {q.qid: 1} for q in queries)
    with pytest.raises(InputError, match="No query set 'nope'.*captions"):
        service.query_set("tiny", "nope")


def test_a_memo_makes_each_value_once_under_a_hammering_from_threads():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from ciea.memo import Memo

    memo, made, lock = Memo(maxsize=8), [], threading.Lock()

    def make(key):
        def run():
            with lock:
                made.append(key)
            time.sleep(0.01)  # slow enough that other threads ask while it is being made
            return object()
        return run

    def worker(i):
        key = i % 4
        return key, memo.get(key, make(key))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(worker, range(400)))
    assert sorted(made) == [0, 1, 2, 3]  # once per key, however many threads asked at once
    for key in range(4):
        assert len({id(value) for k, value in answers if k == key}) == 1
    for key in range(4, 20):  # least recently used entries leave beyond maxsize
        memo.get(key, lambda: key)
    assert len(memo) == 8 and 19 in memo and 0 not in memo
    with pytest.raises(ZeroDivisionError):  # a failure is not cached; the next caller makes it again
        memo.get("bad", lambda: 1 / 0)
    assert memo.get("bad", lambda: "fixed") == "fixed"


def test_threads_asking_at_once_share_one_load_of_each_cache(tiny_built, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from ciea.catalogue import Catalogue

    service = SearchService(tiny_built)
    loads = []
    load_state = Catalogue._load_state
    monkeypatch.setattr(Catalogue, "_load_state", lambda self, corpus, name: loads.append(name) or
                        load_state(self, corpus, name))
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda _: service.states("tiny"), range(32)))
        tables = list(pool.map(lambda _: service.relevance_table("tiny"), range(32)))
        vectors = list(pool.map(lambda _: service._query_vector("tiny", "text-dense", "a red ball"), range(32)))
    assert sorted(loads) == sorted(REGISTRY)
    assert all(s is states[0] for s in states) and all(t is tables[0] for t in tables)
    assert all((v == vectors[0]).all() for v in vectors)
