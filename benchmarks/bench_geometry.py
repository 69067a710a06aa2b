"""Geometry costs: exact W2 (POT EMD) at 1k and 2k points per side, sliced W at 10k, the UMAP fit
(first fit, with numba's compilation, and warm fits) and the single-point transform the app runs
for a live query, against umap-learn's own ``transform`` as the peer.

The clouds are synthetic, at the bundled width: an "image" and a "text" cloud drawn from the
same clustered mixture and pushed apart by a constant offset (a modality gap), rows unit-norm.
EMD cost depends on the sample size far more than on the data, so this stands in for the real
clouds; the real ones are timed at build time (``python -m ciea geometry``).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.bench_scale import DIM, clustered_vectors
from benchmarks.stats import Figure, figure, time_calls

log = logging.getLogger(__name__)
GAP = 0.5  # norm of the offset between the two clouds before renormalising
CLUSTERS = 50  # of both clouds' shared mixture
UMAP_POINTS_PER_CLOUD = 949  # the stamps corpus: text, image and document clouds of 949 each


@dataclass
class GeometryConfig:
    w2_1k_repeats: int
    w2_2k_repeats: int
    sliced_repeats: int
    umap_warm_fits: int
    transform_repeats: int
    umap_peer: bool  # also fit umap-learn directly to time its own single-point transform


QUICK = GeometryConfig(w2_1k_repeats=2, w2_2k_repeats=1, sliced_repeats=2, umap_warm_fits=0, transform_repeats=100,
                       umap_peer=False)
FULL = GeometryConfig(w2_1k_repeats=5, w2_2k_repeats=3, sliced_repeats=5, umap_warm_fits=3, transform_repeats=500,
                      umap_peer=True)


def gapped_clouds(n: int, gap: float = GAP, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two (n, DIM) unit-norm clouds from one clustered mixture, offset by ``gap`` along a fixed
    direction in opposite senses (image +gap/2, text -gap/2), then renormalised."""
    direction = np.random.default_rng(seed + 100).standard_normal(DIM).astype(np.float32)
    direction /= np.linalg.norm(direction)
    image = clustered_vectors(n, CLUSTERS, seed=seed + 1) + direction * gap / 2
    text = clustered_vectors(n, CLUSTERS, seed=seed + 2) - direction * gap / 2
    return (image / np.linalg.norm(image, axis=1, keepdims=True),
            text / np.linalg.norm(text, axis=1, keepdims=True))


def sorted_sliced_w2(image: np.ndarray, text: np.ndarray, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced W2 for two equal-size clouds with uniform weights, by sorting: on a line, the optimal
    coupling of two equal-size uniform samples pairs them in sorted order, so each direction's
    W2^2 is the mean squared difference of the sorted projections. Same directions as POT's
    ``sliced_wasserstein_distance`` for the same seed, so the values agree to rounding."""
    import ot

    if image.shape != text.shape:
        raise ValueError("sorted_sliced_w2 needs two clouds of the same shape")
    xs, xt = np.asarray(image, np.float64), np.asarray(text, np.float64)
    directions = ot.sliced.get_random_projections(xs.shape[1], n_projections, seed)
    ps, pt = np.sort(xs @ directions, axis=0), np.sort(xt @ directions, axis=0)
    return float(np.sqrt(np.mean((ps - pt) ** 2)))


def run(config: GeometryConfig) -> dict[str, Any]:
    from ciea.config import configure_threads
    from ciea.geometry import fit_projection, sliced_wasserstein, wasserstein2

    threads = configure_threads()
    image, text = gapped_clouds(10_000)
    wasserstein2(image[:50], text[:50], max_samples=50)  # warm-up: imports POT
    figures: list[Figure] = []
    w2 = {}
    for n, repeats in ((1000, config.w2_1k_repeats), (2000, config.w2_2k_repeats)):
        results = [wasserstein2(image, text, max_samples=n, seed=seed) for seed in range(repeats)]
        times = [r.seconds for r in results]  # timed inside wasserstein2: sampling, cost matrix, EMD
        w2[n] = results[-1].distance
        figures.append(figure(f"exact W2 (POT EMD), {n} points per side", times, "s",
                              note=f"converged: {all(r.converged for r in results)}; W2 = {w2[n]:.3f}"))
    values: list[float] = []
    sliced = time_calls(lambda i: values.append(sliced_wasserstein(image, text, seed=max(i, 0))),
                        config.sliced_repeats, warmup=1, scale=1.0)
    figures.append(figure("sliced W2 (POT, 256 directions), 10,000 points per side", sliced, "s",
                          note=f"SW = {values[-1]:.4f}"))
    mine: list[float] = []
    fast = time_calls(lambda i: mine.append(sorted_sliced_w2(image, text, seed=max(i, 0))), config.sliced_repeats,
                      warmup=1, scale=1.0)
    figures.append(figure("sliced W2, sorted projections (proposed), 10,000 points per side", fast, "s",
                          note=f"SW = {mine[-1]:.4f}, |difference to POT| = {abs(mine[-1] - values[-1]):.1e}"))

    m = UMAP_POINTS_PER_CLOUD
    doc = image[:m] + text[:m]
    clouds = {"text": text[:m], "image": image[:m], "document": doc / np.linalg.norm(doc, axis=1, keepdims=True)}
    start = time.perf_counter()
    projection = fit_projection(clouds, seed=0)
    first = time.perf_counter() - start
    figures.append(figure(f"UMAP fit, {3 * m} points, first in process", [first], "s",
                          note="includes numba compilation (umap caches some of it on disk)"))
    if config.umap_warm_fits:
        warm = time_calls(lambda i: fit_projection(clouds, seed=0), config.umap_warm_fits, warmup=0, scale=1.0)
        figures.append(figure(f"UMAP fit, {3 * m} points, warm", warm, "s",
                              note="what `ciea geometry` pays per retriever after the first"))
    queries = clustered_vectors(config.transform_repeats + 1, CLUSTERS, seed=9)
    single = time_calls(lambda i: projection.transform(queries[i + 1]), config.transform_repeats, warmup=1)
    figures.append(figure("query point placement (Projection.transform), 1 point", single, "ms",
                          note="k-NN initialisation rule, no numba; what the app runs per live query"))
    if config.umap_peer:
        figures += _umap_transform_peer(clouds, queries, config.transform_repeats)
    return {
        "title": "Geometry",
        "threads": threads,
        "figures": [f.to_json() for f in figures],
        "notes": [
            (f"Synthetic clouds at dimension {DIM}: clustered mixture, image and text offset by a gap of "
            f"norm {GAP}, unit rows. Exact W2 subsamples 10,000 points per side to n with the given seed."),
            (f"UMAP: {m} points per cloud (text, image, document), the stamps corpus's size; cosine metric, "
            "15 neighbours, fixed seed (which makes umap-learn single-threaded)."),
        ],
    }


def _umap_transform_peer(clouds: dict[str, np.ndarray], queries: np.ndarray, repeats: int) -> list[Figure]:
    """umap-learn's own transform for one point (the project stores no fitted UMAP object, since
    that would need pickling; this is what keeping one would buy)."""
    import umap

    points = np.concatenate(list(clouds.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=15, random_state=0).fit(points)
        first = time_calls(lambda i: reducer.transform(queries[:1]), 1, warmup=0)
        warm = time_calls(lambda i: reducer.transform(queries[i + 1:i + 2]), min(repeats, 50), warmup=0)
    return [figure("peer: umap-learn transform, 1 point, first call", first, "ms", note="numba compilation included"),
            figure("peer: umap-learn transform, 1 point, warm", warm, "ms")]
