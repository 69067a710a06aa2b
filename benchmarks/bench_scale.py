"""Scale: FAISS index types on synthetic corpora of 1e5 and 1e6 unit vectors at the bundled width
(and 3e4, exact search only, to bracket the size where exact search stops answering within 5 ms).

Random Gaussian vectors are the worst case for approximate search (no structure to exploit),
so the main rows use a clustered set that resembles real embeddings: a fixed-seed mixture of
low-rank Gaussians (see ``clustered_vectors``). Queries are fresh draws from the same mixture.
One pure-random row is reported for honesty. Per index: build time, index bytes (its serialised size, which is what
a loaded index holds), single-query latency (one query per call, as the app searches) and
Recall@10 against exact search. Peer: plain numpy brute force (score every row with a dot
product and sort, what rclip does).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.stats import figure, recall_at_k, summarise, target, time_calls

log = logging.getLogger(__name__)

DIM = 384  # the bundled text tower's width (all-MiniLM-L6-v2), i.e. every shipped index but dual-split
POINTS_PER_CLUSTER = 500
SPREAD = (0.6, 1.0)  # within-cluster spread (norm), uniform per cluster
RANK = 16  # directions each cluster varies along (real embeddings have a low intrinsic dimension)
NOISE = 0.25  # isotropic noise norm on top
CLUSTERS_PER_TOPIC = 16  # cluster centres are drawn around broader topic centres...
TOPIC_SPREAD = 1.0  # ...at this noise norm (sibling centres have cosine about 0.5)
K = 10
CHUNK = 1 << 16
RECALL_TARGET = 0.95
P50_BUDGET_MS = 5.0  # the latency target for one query at 1e6 vectors
MAX_LISTS = 1024


def clustered_vectors(n: int, clusters: int, d: int = DIM, seed: int = 0, centre_seed: int = 0,
                      spread: tuple[float, float] = SPREAD, rank: int = RANK, noise: float = NOISE) -> np.ndarray:
    """(n, d) float32 unit rows from a mixture of low-rank Gaussians, a simple model of real
    embeddings (topics, each varying along a few directions of its own).

    ``clusters`` and ``centre_seed`` fix the mixture (give both the same for a corpus and its
    queries; see ``clusters_for``): unit centres grouped under broader topics, so that clusters
    are not isolated islands, log-normal cluster weights so some topics are
    far more common than others, a ``rank``-dimensional random basis per cluster and a spread
    uniform in ``spread``); ``seed`` fixes the draws, so corpus and queries share the mixture.
    A point is centre + basis @ z (norm about the cluster's spread) + isotropic noise of norm
    ``noise``, renormalised. Rows are filled cluster by cluster in place: no full-size copy."""
    mixture = np.random.default_rng(centre_seed)
    n_clusters = int(clusters)
    topics = mixture.standard_normal((max(1, n_clusters // CLUSTERS_PER_TOPIC), d), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    centres = topics[mixture.integers(0, len(topics), n_clusters)]
    centres += mixture.standard_normal((n_clusters, d), dtype=np.float32) * (TOPIC_SPREAD / np.sqrt(d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = mixture.lognormal(0.0, 1.0, n_clusters)
    weights /= weights.sum()
    scale = mixture.uniform(*spread, n_clusters).astype(np.float32) / np.sqrt(rank)
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
        block += rng.standard_normal((len(rows), d), dtype=np.float32) * (noise / np.sqrt(d))
        block += centres[c]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[rows] = block
    return out


def clusters_for(n: int) -> int:
    """Cluster count of a corpus of ``n`` points: one per ``POINTS_PER_CLUSTER`` on average."""
    return max(1, round(n / POINTS_PER_CLUSTER))


def random_vectors(n: int, d: int = DIM, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit rows, isotropic Gaussian: no structure, the worst case for ANN."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        block = rng.standard_normal((m, d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + m] = block
    return out


@dataclass(frozen=True)
class IndexSpec:
    """A FAISS ``index_factory`` string, build-time settings and the query-time settings to sweep
    (``faiss.ParameterSpace`` strings such as ``nprobe=16``; "" for none)."""

    factory: str
    sweep: tuple[str, ...] = ("",)
    ef_construction: int | None = None
    train_sample: int | None = None


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 4 sqrt(n) rounded to a power of two, capped at 1024.

    The cap is deliberate: k-means training costs (sample x lists x dim) per iteration, and 4096
    lists at 1e6 take minutes on 2 cores; 1024 lists keep a probe at about 1k vectors per list."""
    target = 4 * np.sqrt(max(n, 1))
    return int(min(MAX_LISTS, max(64, 2 ** round(np.log2(target)))))


#: Index families compared; ``ScaleConfig`` picks which run at which size.
FAMILIES = ("Flat", "HNSW", "IVF-Flat", "IVF-SQ8", "IVF-PQ")


def default_specs(n: int, families: tuple[str, ...] = FAMILIES) -> list[IndexSpec]:
    """The index types compared at size ``n`` (Flat first: it is the exact reference).

    HNSW32 with efConstruction 40 (FAISS's default is 40 too; higher buys little recall on 2 cores
    for much longer builds). IVF coarse quantisers train on 64 points per list. IVF-PQ is
    fast-scan PQ (48 sub-quantisers of 4 bits) with exact re-ranking of k_factor x k candidates;
    8-bit PQ was left out: its codebook training took over 5 minutes at 1e5 on 2 cores."""
    nlist = ivf_lists(n)
    sample = min(n, 64 * nlist)
    table = {
        "Flat": IndexSpec("Flat"),
        "HNSW": IndexSpec("HNSW32", ("efSearch=16", "efSearch=32", "efSearch=64", "efSearch=128"), ef_construction=40),
        "IVF-Flat": IndexSpec(f"IVF{nlist},Flat", ("nprobe=4", "nprobe=8", "nprobe=16"), train_sample=sample),
        "IVF-SQ8": IndexSpec(f"IVF{nlist},SQ8", ("nprobe=8",), train_sample=sample),
        "IVF-PQ": IndexSpec(f"IVF{nlist},PQ48x4fs,RFlat", ("nprobe=8,k_factor_rf=32",), train_sample=sample),
    }
    return [table[f] for f in FAMILIES if f in families]


@dataclass
class ScaleRow:
    """One (data set, size, index, query setting) measurement."""

    data: str
    n: int
    index: str
    params: str
    build_s: float | None
    index_mb: float | None
    p50_ms: float
    p95_ms: float
    iqr_ms: float
    recall10: float
    queries: int
    note: str = ""
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def cells(self) -> list[Any]:
        return [self.data, f"{self.n:.0e}".replace("+0", ""), self.index, self.params or "-",
                _opt(self.build_s, 1), _opt(self.index_mb, 0), round(self.p50_ms, 3), round(self.p95_ms, 3),
                round(self.recall10, 3), self.queries, self.note]


COLUMNS = ["data", "n", "index", "query setting", "build s", "index MB", "p50 ms", "p95 ms",
           "Recall@10", "queries", "note"]


def _opt(value: float | None, digits: int) -> Any:
    return "-" if value is None else round(value, digits)


def index_bytes(index) -> int:
    """Size of the index as FAISS writes it (vectors, codes, graph, lists)."""
    import faiss

    fd, path = tempfile.mkstemp(prefix="ciea-scale-", suffix=".faiss")
    os.close(fd)
    try:
        faiss.write_index(index, path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


def build_index(spec: IndexSpec, data: np.ndarray, seed: int = 0):
    """A trained, filled inner-product index for ``spec`` and its build time in seconds."""
    import faiss

    start = time.perf_counter()
    index = faiss.index_factory(data.shape[1], spec.factory, faiss.METRIC_INNER_PRODUCT)
    if spec.ef_construction is not None:
        faiss.downcast_index(index).hnsw.efConstruction = spec.ef_construction
    if not index.is_trained:
        rows = data
        if spec.train_sample and spec.train_sample < len(data):
            rows = data[np.sort(np.random.default_rng(seed).choice(len(data), spec.train_sample, replace=False))]
        index.train(rows)
    index.add(data)
    return index, time.perf_counter() - start


def single_query_latency(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> list[float]:
    """Milliseconds per call, one query per call, after one warm-up call."""
    return time_calls(lambda i: search(queries[max(i, 0):max(i, 0) + 1]), len(queries), warmup=1)


def numpy_search(data: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """rclip-style brute force: every row's dot product with the query, then a full sort."""
    scores = data @ query.ravel()
    return np.argsort(-scores, kind="stable")[:k]


@dataclass
class ScaleConfig:
    """Which families run at which size, and how many queries are timed."""

    families: dict[int, tuple[str, ...]]  # size -> index families measured at that size
    queries: int  # queries timed and scored for recall per index setting
    slow_queries: int  # queries timed for the exact baselines (Flat, numpy) at 1e6
    random: dict[int, tuple[str, ...]] = field(default_factory=dict)  # pure-random honesty rows
    notes: list[str] = field(default_factory=list)


QUICK = ScaleConfig(
    families={30_000: ("Flat",), 100_000: ("Flat", "HNSW", "IVF-Flat"), 1_000_000: ("Flat", "IVF-Flat")},
    queries=100, slow_queries=20,
    notes=[("Quick mode: Flat, numpy, HNSW (1e5 only) and IVF-Flat, 100 queries; the SQ8 and PQ variants, HNSW "
            "at 1e6 and the pure-random rows do not fit its 5-minute budget. The full run measures them all.")])
FULL = ScaleConfig(
    families={30_000: ("Flat",), 100_000: FAMILIES, 1_000_000: FAMILIES},
    queries=1000, slow_queries=100, random={100_000: ("HNSW", "IVF-Flat")})


def measure_set(label: str, data: np.ndarray, queries: np.ndarray, specs: list[IndexSpec],
                slow_queries: int, build_threads: int) -> list[ScaleRow]:
    """Every spec on one data set; exact neighbours come from a batched Flat search. Builds and the
    batched searches use ``build_threads``; single-query timings run with one FAISS thread."""
    import faiss
    from threadpoolctl import threadpool_limits

    def timed(search: Callable[[np.ndarray], Any], qs: np.ndarray) -> list[float]:
        faiss.omp_set_num_threads(1)
        try:
            with threadpool_limits(1, user_api="blas"):
                return single_query_latency(search, qs)
        finally:
            faiss.omp_set_num_threads(build_threads)

    n = len(data)
    exact = faiss.IndexFlatIP(data.shape[1])
    exact.add(data)
    _, truth = exact.search(queries, K)
    rows: list[ScaleRow] = []
    slow = queries[:slow_queries] if n >= 1_000_000 else queries
    flat_bytes = n * data.shape[1] * 4
    if any(s.factory == "Flat" for s in specs):
        lat = timed(lambda q: exact.search(q, K), slow)
        s = summarise(lat)
        rows.append(ScaleRow(label, n, "Flat", "", None, flat_bytes / 2**20, s.median, s.p95, s.iqr, 1.0, len(slow),
                             "exact; build = copy", lat))
        got = [numpy_search(data, q) for q in slow[:5]]  # same answers as FAISS Flat (up to ties)
        agree = recall_at_k(got, truth[:5], K)
        lat = timed(lambda q: numpy_search(data, q), slow)
        s = summarise(lat)
        rows.append(ScaleRow(label, n, "numpy brute force", "", None, flat_bytes / 2**20, s.median, s.p95, s.iqr,
                             agree, len(slow), "peer (rclip-style: dot products + full sort)", lat))
    exact = None  # free the copy before the next index is built
    for spec in specs:
        if spec.factory == "Flat":
            continue
        log.info("scale %s n=%d: building %s", label, n, spec.factory)
        index, seconds = build_index(spec, data)
        size_mb = index_bytes(index) / 2**20
        params = faiss.ParameterSpace()
        search = functools.partial(_search_k, index)
        for setting in spec.sweep:
            if setting:
                params.set_index_parameters(index, setting)
            _, found = index.search(queries, K)
            recall = recall_at_k(found, truth, K)
            lat = timed(search, queries)
            s = summarise(lat)
            name = spec.factory + (f" (efC {spec.ef_construction})" if spec.ef_construction else "")
            note = f"trained on {spec.train_sample}" if spec.train_sample and spec.train_sample < n else ""
            rows.append(ScaleRow(label, n, name, setting, seconds, size_mb, s.median, s.p95, s.iqr, recall,
                                 len(queries), note, lat))
        index = search = None  # freed before the next build
    return rows


def _search_k(index, query: np.ndarray):
    return index.search(query, K)


def choose_default(rows: list[ScaleRow], n: int, p50_ms: float = P50_BUDGET_MS,
                   recall: float = RECALL_TARGET) -> ScaleRow | None:
    """The index for size ``n`` (clustered rows): exact Flat when its p50 is within ``p50_ms``;
    else the approximate setting with the best Recall@10 (at least ``recall``) whose p50 is within
    half the budget, ties going to the one that probes more (the slower): half the budget is
    spent on recall, half kept as headroom for p95 and for real data, less clustered than ours."""
    at_n = [r for r in rows if r.n == n and r.data.startswith("clustered")]
    flat = next((r for r in at_n if r.index == "Flat"), None)
    if flat is not None and flat.p50_ms <= p50_ms:
        return flat
    ok = [r for r in at_n if r.recall10 >= recall and r.p50_ms <= p50_ms / 2
          and r.index not in ("Flat", "numpy brute force")]
    return max(ok, key=lambda r: (round(r.recall10, 3), r.p50_ms), default=None)


def run(config: ScaleConfig) -> dict[str, Any]:
    """The scale section: one table row per index and query setting, and the chosen defaults.

    Builds use every core; queries are timed single-threaded (FAISS and BLAS), the setting the
    serving process should use (see the thread experiment in the query section)."""
    from ciea.config import configure_threads

    build_threads = configure_threads()
    rows: list[ScaleRow] = []
    generate: list[float] = []
    sets = [("clustered", n, fams, functools.partial(clustered_vectors, clusters=clusters_for(n)), (1, 2))
            for n, fams in config.families.items()]
    sets += [("random (worst case)", n, fams, random_vectors, (3, 4)) for n, fams in config.random.items()]
    for label, n, families, make, (data_seed, query_seed) in sets:
        start = time.perf_counter()
        data = make(n, seed=data_seed)
        queries = make(config.queries, seed=query_seed)  # same mixture, fresh draws
        generate.append(time.perf_counter() - start)
        rows += measure_set(label, data, queries, default_specs(n, families), config.slow_queries, build_threads)
        del data
    chosen = {str(n): choose_default(rows, n) for n in config.families}
    figures = [figure(f"query at n = {int(n):.0e}, chosen index", r.latencies_ms, "ms",
                      note=f"{r.index} {r.params}, Recall@10 {r.recall10:.3f}".replace(" ,", ","),
                      recall10=r.recall10,
                      **({"target": target("1e6 vectors: p50 <= 5 ms with Recall@10 >= 0.95", median_max=5.0,
                                           recall10=RECALL_TARGET)} if int(n) == 1_000_000 else {}))
               for n, r in chosen.items() if r is not None]
    return {
        "title": "Scale: synthetic corpora, FAISS index types and numpy",
        "threads": {"build": build_threads, "query": 1},
        "columns": COLUMNS,
        "table": [r.cells() for r in rows],
        "rows": [{k: v for k, v in vars(r).items() if k != "latencies_ms"} for r in rows],
        "chosen": {n: (None if r is None else {"index": r.index, "params": r.params, "p50_ms": r.p50_ms,
                                                "recall10": r.recall10, "index_mb": r.index_mb})
                   for n, r in chosen.items()},
        "figures": [f.to_json() for f in figures],
        "notes": [
            (f"Clustered set (resembles real embeddings): a mixture of low-rank Gaussians at dimension {DIM}, "
             f"one cluster per {POINTS_PER_CLUSTER} points on average with log-normal weights, cluster centres "
             f"grouped {CLUSTERS_PER_TOPIC} to a broader topic, each cluster varying along {RANK} random "
             f"directions of its own (spread norm uniform in {list(SPREAD)}) plus isotropic noise of norm {NOISE}, "
             "rows L2-normalised, fixed seeds; queries are fresh draws from the same mixture (nearest-neighbour "
             "cosine about 0.86, random pairs about 0.01). Random set: isotropic Gaussian rows (no structure at "
             "all; the worst case for ANN)."),
            ("Latency: one query per call (as the app searches), k = 10, after one warm-up call, FAISS and BLAS "
            f"single-threaded; builds use {build_threads} threads. Recall@10 is against exact inner-product "
            "search over the same vectors."),
            f"Exact baselines at 1e6 are timed on {config.slow_queries} queries (each reads all 1.5 GB).",
            ("Index MB is the serialised size (what a loaded index holds in memory). RFlat keeps the raw "
            "vectors for re-ranking, so it is no smaller than Flat; its PQ codes make the scan cheap."),
            *config.notes,
        ],
        "seconds": {"generate": generate},
    }
