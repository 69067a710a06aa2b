"""Metrics against hand-computed values; tie handling independent of corpus order."""

from __future__ import annotations

import math

import pytest

from ciea.evaluate import evaluate_run, load_qrels, rank_scores


def test_metrics_match_hand_computed_values():
    qrels = {"q1": {"b": 1}, "q2": {"x": 1, "z": 1}}
    run = {"q1": {"a": 0.9, "b": 0.5, "c": 0.1}, "q2": {"x": 0.3, "y": 0.2, "z": 0.1}}
    m = evaluate_run(qrels, run, ["mrr@10", "recall@1", "recall@10", "ndcg@10"])
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-4)
    assert m["recall@1"] == pytest.approx((0 + 0.5) / 2, abs=1e-4)
    assert m["recall@10"] == pytest.approx(1.0)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)


def test_query_missing_from_run_counts_as_zero():
    m = evaluate_run({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": {"a": 1.0}}, ["mrr@10"])
    assert m["mrr@10"] == pytest.approx(0.5)


def test_tied_scores_are_ranked_the_same_whatever_the_run_order():
    docs = [f"d{i}" for i in range(20)]
    forward = rank_scores({"q": {d: 0.5 for d in docs}})
    backward = rank_scores({"q": {d: 0.5 for d in reversed(docs)}})
    assert forward == backward
    assert sorted(forward["q"].values(), reverse=True) == [float(20 - i) for i in range(20)]


def test_load_qrels_formats(tmp_path):
    (tmp_path / "a.txt").write_text("q1\t0\td1\t1\nq1 0 d2 1\nq2\td3\t1\n")
    assert load_qrels(tmp_path / "a.txt") == {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}}
    (tmp_path / "b.json").write_text('{"q1": {"d1": 1}}')
    assert load_qrels(tmp_path / "b.json") == {"q1": {"d1": 1}}
    (tmp_path / "c.txt").write_text("only two\n")
    with pytest.raises(ValueError, match="c.txt:1"):
        load_qrels(tmp_path / "c.txt")


def test_metrics_per_query_kind():
    from ciea.data.schema import Query
    from ciea.evaluate import evaluate_by_kind

    queries = [Query("c1", "x", "caption"), Query("p1", "y", "complementary"), Query("p2", "z", "complementary")]
    qrels = {"c1": {"a": 1}, "p1": {"b": 1}, "p2": {"c": 1}}
    run = {"c1": {"a": 0.9}, "p1": {"x": 0.9, "b": 0.8}, "p2": {"x": 0.9}}
    m = evaluate_by_kind(qrels, run, queries, ["mrr@10"])
    assert m == {"all": {"mrr@10": pytest.approx((1 + 0.5 + 0) / 3, abs=1e-4)},
                 "caption": {"mrr@10": 1.0}, "complementary": {"mrr@10": 0.25}}


def test_evaluator_scores_a_matrix_like_the_equivalent_run_with_ties_by_hash():
    import numpy as np

    from ciea.data.schema import Query
    from ciea.evaluate import Evaluator
    from ciea.index import tie_breaker

    docs = [f"d{i}" for i in range(12)]
    # q1: all twelve tie; the relevant one is whichever the hash puts 3rd, never column order
    third = sorted(docs, key=tie_breaker)[2]
    queries = [Query("q1", "one", "tie"), Query("q2", "two", "plain")]
    qrels = {"q1": {third: 1}, "q2": {"d5": 1}}
    scores = np.vstack([np.full(12, 0.5), np.linspace(1.0, 0.0, 12)])
    evaluator = Evaluator(queries, qrels, metrics=["mrr@10"], k=10)
    by_matrix = evaluator.score_matrix(scores, docs)
    assert by_matrix["tie"]["mrr@10"] == pytest.approx(1 / 3, abs=1e-4)
    assert by_matrix["plain"]["mrr@10"] == pytest.approx(1 / 6, abs=1e-4)
    # the same scores reversed column-wise give the same metrics
    assert evaluator.score_matrix(scores[:, ::-1], docs[::-1]) == by_matrix
    run = {q.qid: dict(zip(docs, row)) for q, row in zip(queries, scores)}
    assert evaluator.score_run(run) == by_matrix


def test_evaluator_calls_a_search_function_with_the_query_texts_and_depth():
    from ciea.data.schema import Query
    from ciea.evaluate import Evaluator, QuerySet
    from ciea.index import Hit

    query_set = QuerySet([Query("q1", "a frog"), Query("q2", "a bus")], {"q1": {"frog": 1}, "q2": {"bus": 1}})
    queries, qrels = query_set  # unpacks like the (queries, qrels) pairs it replaces
    assert query_set.texts == ["a frog", "a bus"] and qrels["q2"] == {"bus": 1}
    seen = []

    def search(texts, k):
        seen.append((list(texts), k))
        return [[Hit("frog", 0.9), Hit("bus", 0.1)], [Hit("frog", 0.8), Hit("bus", 0.7)]]

    metrics = Evaluator.from_query_set(query_set, k=7)(search)
    assert seen == [(["a frog", "a bus"], 7)]
    assert metrics["all"]["mrr@10"] == pytest.approx(0.75)


def test_query_set_files_and_captions(tmp_path):
    from ciea.data.schema import Corpus, Document, split_query_files
    from ciea.evaluate import QuerySet

    assert QuerySet.shipped(tmp_path, "test") is None
    queries_path, qrels_path = split_query_files(tmp_path, "test")
    queries_path.write_text('{"qid": "q1", "text": "a frog", "kind": "name"}\n')
    qrels_path.write_text('{"q1": {"frog.png": 1}}')
    shipped = QuerySet.shipped(tmp_path, "test")
    assert shipped.queries[0].kind == "name" and shipped.qrels == {"q1": {"frog.png": 1}}
    corpus = Corpus("c", tmp_path, [Document("frog.png", "A frog.", None, "animals")])
    assert QuerySet.captions(corpus).qrels == {"frog.png": {"frog.png": 1}}
