"""Scale: what the app uses (exact FAISS ``Flat``) against plain numpy brute force on synthetic
corpora of 3e4, 1e5 and 1e6 unit vectors at the bundled width.

The vectors are a clustered set that resembles real embeddings: a fixed-seed mixture of low-rank
Gaussians (see ``clustered_vectors``); queries are fresh draws from the same mixture. Latency is
one query per call (as the app searches), FAISS and BLAS single-threaded. The FAISS index-type
sweep (HNSW, IVF variants) is a finished study: its tables are historical in BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.stats import summarise, time_calls

DIM = 384  # the bundled text tower's width (all-MiniLM-L6-v2), i.e. every shipped index but dual-split
POINTS_PER_CLUSTER = 500
SPREAD = (0.6, 1.0)  # within-cluster spread (norm), uniform per cluster
RANK = 16  # directions each cluster varies along (real embeddings have a low intrinsic dimension)
NOISE = 0.25  # isotropic noise norm on top
CLUSTERS_PER_TOPIC = 16  # cluster centres are drawn around broader topic centres...
TOPIC_SPREAD = 1.0  # ...at this noise norm (sibling centres have cosine about 0.5)
K = 10


def clustered_vectors(n: int, clusters: int, d: int = DIM, seed: int = 0, centre_seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit rows from a mixture of low-rank Gaussians, a simple model of real
    embeddings: ``clusters`` unit centres grouped under broader topics, log-normal cluster weights,
    and per cluster a ``RANK``-dimensional random basis; a point is centre + basis @ z (norm about
    the cluster's spread) + isotropic noise of norm ``NOISE``, renormalised. ``centre_seed`` fixes
    the mixture, ``seed`` the draws (corpus and queries share the mixture, not the draws)."""
    mixture = np.random.default_rng(centre_seed)
    n_clusters = int(clusters)
    topics = mixture.standard_normal((max(1, n_clusters // CLUSTERS_PER_TOPIC), d), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    centres = topics[mixture.integers(0, len(topics), n_clusters)]
    centres += mixture.standard_normal((n_clusters, d), dtype=np.float32) * (TOPIC_SPREAD / np.sqrt(d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = mixture.lognormal(0.0, 1.0, n_clusters)
    weights /= weights.sum()
    rank, scale = RANK, mixture.uniform(*SPREAD, n_clusters).astype(np.float32) / np.sqrt(RANK)
    basis_seed = int(mixture.integers(2**31))
    rng = np.random.default_rng(seed)
    which = rng.choice(n_clusters, n, p=weights)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(n_clusters + 1))
    out = np.empty((n, d), dtype=np.float32)
    for c in np.flatnonzero(np.diff(bounds)):
        rows = order[bounds[c]:bounds[c + 1]]
        basis = np.random.default_rng([basis_seed, int(c)]).standard_normal((rank, d), dtype=np.float32)
        basis /= np.sqrt(d)  # rows of about unit norm, nearly orthogonal
        block = rng.standard_normal((len(rows), rank), dtype=np.float32) @ basis
        block *= scale[c]
        block += rng.standard_normal((len(rows), d), dtype=np.float32) * (NOISE / np.sqrt(d))
        block += centres[c]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[rows] = block
    return out


def numpy_search(data: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """rclip-style brute force: every row's dot product with the query, then a full sort."""
    scores = data @ query.ravel()
    return np.argsort(-scores, kind="stable")[:k]


@dataclass
class ScaleConfig:
    """Corpus sizes and how many queries are timed (``slow_queries`` at 1e6, where each reads 1.5 GB)."""

    sizes: tuple[int, ...] = (30_000, 100_000, 1_000_000)
    queries: int = 1000
    slow_queries: int = 100


QUICK = ScaleConfig(queries=100, slow_queries=20)
FULL = ScaleConfig()
COLUMNS = ["data", "n", "index", "index MB", "p50 ms", "p95 ms", "Recall@10", "queries", "note"]


def run(config: ScaleConfig) -> dict[str, Any]:
    """The scale section: exact Flat and numpy brute force per size, one query per call."""
    import faiss
    from faiss.contrib.evaluation import knn_intersection_measure
    from threadpoolctl import threadpool_limits

    from ciea.config import configure_threads

    build_threads = configure_threads()
    rows = []
    for n in config.sizes:
        clusters = max(1, round(n / POINTS_PER_CLUSTER))
        data = clustered_vectors(n, clusters, seed=1)
        queries = clustered_vectors(config.queries, clusters, seed=2)  # same mixture, fresh draws
        exact = faiss.IndexFlatIP(DIM)
        exact.add(data)
        _, truth = exact.search(queries, K)
        qs = queries[:config.slow_queries] if n >= 1_000_000 else queries
        agree = knn_intersection_measure(np.array([numpy_search(data, q) for q in qs[:5]]), truth[:5])
        size = f"{n:.0e}".replace("+0", "")
        for name, search, recall, note in (
                ("Flat", lambda q: exact.search(q, K), 1.0, "exact; what the app uses"),
                ("numpy brute force", lambda q: numpy_search(data, q), agree,
                 "peer (rclip-style: dot products + full sort)")):
            faiss.omp_set_num_threads(1)
            try:
                with threadpool_limits(1, user_api="blas"):
                    lat = time_calls(lambda i: search(qs[max(i, 0):max(i, 0) + 1]), len(qs), warmup=1)
            finally:
                faiss.omp_set_num_threads(build_threads)
            s = summarise(lat)
            rows.append(["clustered", size, name, data.nbytes / 2**20, s["median"], s["p95"], recall, len(qs), note])
        exact = data = None  # freed before the next size
    return {
        "title": "Scale: synthetic corpora, exact FAISS Flat and numpy",
        "threads": {"build": build_threads, "query": 1},
        "columns": COLUMNS,
        "table": rows,
        "notes": [
            (f"Clustered set (resembles real embeddings): a mixture of low-rank Gaussians at dimension {DIM}, "
             f"one cluster per {POINTS_PER_CLUSTER} points on average with log-normal weights, cluster centres "
             f"grouped {CLUSTERS_PER_TOPIC} to a broader topic, each cluster varying along {RANK} random "
             f"directions of its own (spread norm uniform in {list(SPREAD)}) plus isotropic noise of norm {NOISE}, "
             "rows L2-normalised, fixed seeds; queries are fresh draws from the same mixture."),
            ("Latency: one query per call (as the app searches), k = 10, after one warm-up call, FAISS and BLAS "
             "single-threaded. numpy's Recall@10 is its agreement with Flat on 5 queries."),
            f"At 1e6 each is timed on {config.slow_queries} queries (each reads all 1.5 GB).",
        ],
    }
