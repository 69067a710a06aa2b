"""Retrieval evaluation with ranx (a maintained IR metrics library).

Runs are ``{qid: {doc_id: score}}``. ``QuerySet`` is a query set with its judgements, loaded in one
place; ``Evaluator`` (after sentence-transformers' InformationRetrievalEvaluator) holds one and
scores a search function, a run or a dense score matrix, by query kind. Before scoring, every ranked list is re-scored by rank
(rank 1 highest) after ordering ties by a hash of the doc id, so the metric library never
breaks ties by corpus order or by doc id spelling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from ciea.data.schema import Corpus, Query, load_queries, split_query_files
from ciea.index import SCORE_DECIMALS, Hit, ranking_key, tie_breaker

METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@100")
Qrels = Mapping[str, Mapping[str, int]]
RunDict = dict[str, dict[str, float]]


def hits_to_run(qids: Sequence[str], hits: Sequence[Sequence[Hit]]) -> RunDict:
    """The run-file form (``{qid: {doc_id: score}}``) of ranked hits."""
    return {qid: {h.doc_id: h.score for h in row} for qid, row in zip(qids, hits)}


def rank_scores(run: Mapping[str, Mapping[str, float]]) -> RunDict:
    """Replace scores by strictly decreasing rank scores, ties ordered by a doc-id hash."""
    out: RunDict = {}
    for qid, docs in run.items():
        ordered = sorted(docs.items(), key=lambda kv: ranking_key(kv[0], kv[1]))
        out[qid] = {doc: float(len(ordered) - i) for i, (doc, _) in enumerate(ordered)}
    return out


def evaluate_run(qrels: Qrels, run: Mapping[str, Mapping[str, float]],
                 metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean metrics over the queries in ``qrels`` (queries missing from the run score 0)."""
    from ranx import Qrels as RQrels, Run as RRun, evaluate

    ranked = rank_scores(run)
    for qid in qrels:
        ranked.setdefault(qid, {})
    scores = evaluate(RQrels({q: dict(d) for q, d in qrels.items()}),
                      RRun({q: ranked[q] for q in qrels}), list(metrics), make_comparable=True)
    if isinstance(scores, float):
        scores = {metrics[0]: scores}
    return {m: round(float(v), 4) for m, v in scores.items()}


def evaluate_by_kind(qrels: Qrels, run: Mapping[str, Mapping[str, float]], queries: Sequence[Query],
                     metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """Metrics over all queries and, where queries carry a kind, per kind."""
    judged = [q for q in queries if q.qid in qrels]
    out = {"all": evaluate_run({q.qid: qrels[q.qid] for q in judged}, run, metrics)}
    for kind in sorted({q.kind for q in judged if q.kind}):
        subset = {q.qid: qrels[q.qid] for q in judged if q.kind == kind}
        out[kind] = evaluate_run(subset, run, metrics)
    return out


def split_files(corpus_dir, split: str) -> tuple[Path, Path] | None:
    """The shipped query set of a corpus split: (queries.jsonl, qrels.json) or None."""
    queries, qrels = split_query_files(corpus_dir, split)
    return (queries, qrels) if queries.is_file() and qrels.is_file() else None


def load_qrels(path) -> dict[str, dict[str, int]]:
    """Qrels from JSON ``{qid: {doc_id: rel}}`` or TREC lines ``qid 0 doc_id rel`` /
    ``qid doc_id rel`` (tab or space separated)."""
    import json

    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in json.loads(text).items()}
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 4:
            qid, _, doc, rel = parts
        elif len(parts) == 3:
            qid, doc, rel = parts
        else:
            raise ValueError(f"{path}:{lineno}: expected 'qid 0 doc_id rel' or 'qid doc_id rel'")
        qrels.setdefault(qid, {})[doc] = int(rel)
    return qrels


def image_side_metrics(corpus: Corpus, backbone, settings, k: int = 100) -> dict[str, dict[str, float]]:
    """Caption -> image: captions against image vectors alone, per image-to-text map.

    Isolates what the image side contributes: the training-free ConSE map and each trained
    dual-encoder map (whose training data include these captions: in-sample on stamps).
    """
    from ciea.features import cached_corpus_features
    from ciea.index import IndexManifest, VectorIndex
    from ciea.retrievers.alignment import default_alignment
    from ciea.retrievers.dual import load_trained_alignment

    features = cached_corpus_features(corpus, backbone, settings.cache_dir, progress=False)
    maps = {default_alignment(backbone).name: default_alignment(backbone)}
    for name in ("dual-split", "dual-fused", "dual-gcl"):
        alignment, _ = load_trained_alignment(backbone, name, settings)
        if alignment is not None:
            maps[f"{name} map"] = alignment
    evaluator = Evaluator.from_query_set(QuerySet.captions(corpus), k=k)
    out = {}
    for label, alignment in maps.items():
        image = alignment(features.image)
        manifest = IndexManifest(corpus.name, "image-side", backbone.spec, image.shape[1], len(corpus))
        index = VectorIndex.build(image, [d.doc_id for d in corpus], manifest)
        # captions in corpus order are the query texts: their text features are already computed
        out[f"image side only, {label} (caption -> image)"] = evaluator(
            lambda texts, depth: index.search(features.text, depth))["all"]
    return out


class QuerySet(NamedTuple):
    """Queries and their judgements ``{qid: {doc_id: rel}}``; unpacks as ``queries, qrels``."""

    queries: list[Query]
    qrels: dict[str, dict[str, int]]

    @classmethod
    def from_files(cls, queries_path, qrels_path) -> "QuerySet":
        """Queries (JSON lines) and qrels (JSON or TREC lines, see ``load_qrels``)."""
        return cls(load_queries(queries_path), load_qrels(qrels_path))

    @classmethod
    def shipped(cls, corpus_dir, split: str) -> "QuerySet | None":
        """The query set a corpus ships for ``split``, or None when it has none."""
        files = split_files(corpus_dir, split)
        return cls.from_files(*files) if files else None

    @classmethod
    def captions(cls, corpus: Corpus) -> "QuerySet":
        """Caption-as-query: each document's caption should find that document."""
        return cls([Query(d.doc_id, d.text) for d in corpus], {d.doc_id: {d.doc_id: 1} for d in corpus})

    @property
    def texts(self) -> list[str]:
        return [q.text for q in self.queries]


class Evaluator:
    """Metrics of a retriever on one query set, over all queries and per query kind.

    ``Evaluator(queries, qrels)(search)`` runs ``search(texts, k) -> hits per query``;
    ``score_run`` takes a run ``{qid: {doc_id: score}}``; ``score_matrix`` takes dense (Q, N)
    scores against ``doc_ids``. Ties are ordered as search orders them (``ranking_key``).
    """

    def __init__(self, queries: Sequence[Query], qrels: Qrels, metrics: Sequence[str] = METRICS,
                 k: int = 100) -> None:
        self.queries, self.qrels, self.metrics, self.k = list(queries), qrels, tuple(metrics), k

    @classmethod
    def from_query_set(cls, query_set: QuerySet, **kwargs) -> "Evaluator":
        return cls(query_set.queries, query_set.qrels, **kwargs)

    def __call__(self, search: Callable[[list[str], int], Sequence[Sequence[Hit]]]) -> dict[str, dict[str, float]]:
        hits = search([q.text for q in self.queries], self.k)
        return self.score_run(hits_to_run([q.qid for q in self.queries], hits))

    def score_run(self, run: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
        return evaluate_by_kind(self.qrels, run, self.queries, self.metrics)

    def score_matrix(self, scores: np.ndarray, doc_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """Metrics of dense scores (row i = query i, column j = ``doc_ids[j]``), each row cut to
        the top ``k`` after ordering by rounded score, then the doc-id hash."""
        scores = np.asarray(scores, dtype=np.float64)
        depth = min(self.k, scores.shape[1])
        hashes = np.array([tie_breaker(d) for d in doc_ids], dtype=np.uint64)
        rounded = np.round(scores, SCORE_DECIMALS)
        # Only scores at or above each row's depth-th largest can make the cut (ties included), so
        # the two-key sort runs on those few instead of the whole row: same order, several x faster.
        kth = -np.partition(-rounded, depth - 1, axis=1)[:, depth - 1]
        run = {}
        for i, q in enumerate(self.queries):
            candidates = np.flatnonzero(rounded[i] >= kth[i])
            order = candidates[np.lexsort((hashes[candidates], -rounded[i, candidates]))[:depth]]
            run[q.qid] = {doc_ids[j]: float(scores[i, j]) for j in order}
        return self.score_run(run)
