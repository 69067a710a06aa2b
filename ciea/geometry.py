"""Embedding-space geometry: modality gap, optimal-transport distances, cosine statistics,
bootstrap intervals, the gap-shift experiment and a stored 2-D UMAP projection.

Clouds are arrays of shape (n, d); row i of the image cloud and row i of the text cloud belong
to the same document. The measures themselves take raw arrays; ``compute_report`` L2-normalises
its inputs first, so the report is always about points on the unit sphere, as the
``geometry`` command's contract says (docs/contracts.md).

Measures (one function each):

- centroid gap (Liang et al., 2022): ``|mean(image) - mean(text)|``;
- 2-Wasserstein distance: exact optimal transport (POT's network simplex, ``ot.emd``) with
  squared Euclidean cost and uniform weights on a fixed-seed subsample, because exact OT is
  cubic in the sample size;
- sliced 2-Wasserstein distance (POT): mean of 1-D W2^2 over random directions, square-rooted;
  cheap enough for whole clouds and never above W2 (projections are 1-Lipschitz);
- cosine statistics: matched pairs, random cross-modal pairs and random pairs inside one
  modality (the cone effect), as means and histograms;
- percentile bootstrap intervals over documents.

The projection is fitted once at build time with umap-learn and stored as safetensors + JSON
(never pickled). A live query is placed by UMAP's own initialisation rule for ``transform``
(weighted mean of its neighbours' coordinates), in pure numpy, so the app never imports numba.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

# --- constants decided here -------------------------------------------------------------------

#: Network-simplex iteration cap for exact OT; far above what 2k x 2k problems need.
EMD_MAX_ITER = 1_000_000
#: Bins of the cosine histograms over [-1, 1].
COSINE_BINS = 40
#: Sliced-Wasserstein sample cap in the report (the projections hold n x n_projections floats).
SW_REPORT_SAMPLES = 50_000
#: A query whose cosine distance to a fitted point is below this is that point (UMAP's rule).
DUPLICATE_DISTANCE = 1e-5
#: Floor of the kernel width relative to the mean neighbour distance (umap's MIN_K_DIST_SCALE).
MIN_SIGMA_SCALE = 1e-3
#: Rows per block when placing many points (bounds the block similarity matrix).
PLACE_BLOCK = 1024

PROJECTION_TENSORS = "umap.safetensors"
PROJECTION_META = "umap.json"
REPORT_FILE = "geometry.json"
FORMAT_VERSION = 1


class GeometryStoreError(ValueError):
    """A stored projection or geometry report is missing or damaged."""


# --- input helpers ----------------------------------------------------------------------------


def as_cloud(x: np.ndarray, name: str = "cloud") -> np.ndarray:
    """``x`` as a finite floating array of shape (n, d) with n >= 1; raises ValueError otherwise."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _pair(image: np.ndarray, text: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    image, text = as_cloud(image, "image"), as_cloud(text, "text")
    if image.shape[1] != text.shape[1]:
        raise ValueError(f"image and text have different widths: {image.shape[1]} vs {text.shape[1]}")
    if paired and image.shape[0] != text.shape[0]:
        raise ValueError(f"paired clouds need the same number of rows: {image.shape[0]} vs {text.shape[0]}")
    return image, text


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), same dtype as ``x``."""
    x = as_cloud(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1).astype(x.dtype)


def _subsample(n: int, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices: all rows, or ``max_samples`` of them without replacement."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def _paired_samples(image: np.ndarray, text: np.ndarray, max_samples: int | None,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed subsamples; equal-size clouds keep the same documents on both sides."""
    rng = np.random.default_rng(seed)
    rows_i = _subsample(len(image), max_samples, rng)
    rows_t = rows_i if len(text) == len(image) else _subsample(len(text), max_samples, rng)
    return image[rows_i], text[rows_t]


# --- modality gap -----------------------------------------------------------------------------


def gap_vector(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """mean(image) - mean(text) in float64 (Liang et al.'s gap direction, not normalised)."""
    image, text = _pair(image, text, paired=False)
    return image.mean(axis=0, dtype=np.float64) - text.mean(axis=0, dtype=np.float64)


def centroid_gap(image: np.ndarray, text: np.ndarray) -> float:
    """Euclidean norm of the gap vector (Liang et al., 2022)."""
    return float(np.linalg.norm(gap_vector(image, text)))


def gap_shift_raw(image: np.ndarray, text: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Move the clouds toward each other along the gap: image - f*gap/2, text + f*gap/2.

    Factor 1 makes the centroids coincide exactly; nothing is renormalised here."""
    image, text = _pair(image, text, paired=False)
    half = (0.5 * float(factor) * gap_vector(image, text))
    return image - half.astype(image.dtype), text + half.astype(text.dtype)


def gap_shift(image: np.ndarray, text: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``gap_shift_raw`` followed by L2 renormalisation of every row (back onto the sphere)."""
    shifted_image, shifted_text = gap_shift_raw(image, text, factor)
    return l2_normalise(shifted_image), l2_normalise(shifted_text)


# --- optimal transport ------------------------------------------------------------------------


@dataclass
class W2Result:
    """Exact 2-Wasserstein distance on (subsampled) clouds.

    ``n`` and ``n_text`` are the numbers of image and text points used (equal unless the clouds
    are smaller than the cap and of different sizes); ``converged`` is POT's verdict (result
    code 1: optimal)."""

    distance: float
    n: int
    converged: bool
    seconds: float
    n_text: int | None = None


def wasserstein2(image: np.ndarray, text: np.ndarray, max_samples: int | None = 1000,
                 seed: int = 0) -> W2Result:
    """sqrt(min over couplings of E|x - y|^2), uniform weights, exact EMD (POT ``ot.emd``).

    Clouds larger than ``max_samples`` are subsampled with ``seed`` (same documents on both
    sides when the clouds have equal size). POT's warnings are captured, not printed; a
    non-optimal solve shows as ``converged=False``."""
    import ot

    start = time.perf_counter()
    image, text = _pair(image, text, paired=False)
    xs, xt = _paired_samples(image, text, max_samples, seed)
    xs = np.ascontiguousarray(xs, dtype=np.float64)
    xt = np.ascontiguousarray(xt, dtype=np.float64)
    cost = ot.dist(xs, xt, metric="sqeuclidean")
    a = np.full(len(xs), 1.0 / len(xs))
    b = np.full(len(xt), 1.0 / len(xt))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        _, log = ot.emd(a, b, cost, numItermax=EMD_MAX_ITER, log=True)
    distance = math.sqrt(max(float(log["cost"]), 0.0))
    return W2Result(distance=distance, n=len(xs), converged=int(log["result_code"]) == 1,
                    seconds=time.perf_counter() - start, n_text=len(xt))


def sliced_wasserstein(image: np.ndarray, text: np.ndarray, n_projections: int = 256, seed: int = 0,
                       max_samples: int | None = None) -> float:
    """Sliced 2-Wasserstein distance (POT), ``n_projections`` random directions from ``seed``."""
    import ot

    image, text = _pair(image, text, paired=False)
    xs, xt = _paired_samples(image, text, max_samples, seed)
    value = ot.sliced_wasserstein_distance(np.asarray(xs, dtype=np.float64),
                                           np.asarray(xt, dtype=np.float64),
                                           n_projections=int(n_projections), p=2, seed=seed)
    return float(value)


# --- cosine statistics ------------------------------------------------------------------------


@dataclass
class CosineStats:
    """Mean cosines (matched pairs, random cross-modal pairs, random pairs within each modality)
    and their histograms: name -> {"edges": [41 floats], "counts": [40 ints]}."""

    matched_mean: float
    random_mean: float
    within_image_mean: float
    within_text_mean: float
    histograms: dict[str, dict[str, list]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _histogram(values: np.ndarray) -> dict[str, list]:
    counts, edges = np.histogram(np.clip(values, -1.0, 1.0), bins=COSINE_BINS, range=(-1.0, 1.0))
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def _ordered_pairs(n: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair i != j when there are at most ``max_pairs``, else a uniform sample."""
    if n * (n - 1) <= max_pairs:
        i, j = np.nonzero(~np.eye(n, dtype=bool))
        return i, j
    i = rng.integers(0, n, size=max_pairs)
    j = (i + rng.integers(1, n, size=max_pairs)) % n  # uniform over j != i
    return i, j


def _unordered_pairs(n: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every pair i < j when there are at most ``max_pairs``, else a uniform sample of i != j."""
    if n * (n - 1) // 2 <= max_pairs:
        return np.triu_indices(n, k=1)
    return _ordered_pairs(n, max_pairs, rng)


def _rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def cosine_stats(image: np.ndarray, text: np.ndarray, max_pairs: int = 20000, seed: int = 0) -> CosineStats:
    """Cosine statistics of paired clouds (rows normalised here, defensively).

    Pairs are enumerated exactly when they number at most ``max_pairs`` per statistic and
    sampled with ``seed`` otherwise."""
    image, text = _pair(image, text, paired=True)
    n = len(image)
    if n < 2:
        raise ValueError("cosine statistics need at least 2 documents")
    image = l2_normalise(image.astype(np.float64))
    text = l2_normalise(text.astype(np.float64))
    rng = np.random.default_rng(seed)
    matched_rows = _subsample(n, max_pairs, rng)
    values = {"matched": _rowwise_cos(image[matched_rows], text[matched_rows])}
    i, j = _ordered_pairs(n, max_pairs, rng)
    values["random"] = _rowwise_cos(image[i], text[j])
    i, j = _unordered_pairs(n, max_pairs, rng)
    values["within_image"] = _rowwise_cos(image[i], image[j])
    i, j = _unordered_pairs(n, max_pairs, rng)
    values["within_text"] = _rowwise_cos(text[i], text[j])
    return CosineStats(
        matched_mean=float(values["matched"].mean()),
        random_mean=float(values["random"].mean()),
        within_image_mean=float(values["within_image"].mean()),
        within_text_mean=float(values["within_text"].mean()),
        histograms={name: _histogram(v) for name, v in values.items()},
    )


# --- bootstrap --------------------------------------------------------------------------------


@dataclass
class ConfidenceInterval:
    """Percentile bootstrap interval."""

    low: float
    high: float
    n_resamples: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_ci(statistic: Callable[[np.ndarray, np.ndarray], float], image: np.ndarray,
                 text: np.ndarray, n_resamples: int = 200, confidence: float = 0.95, seed: int = 0,
                 paired: bool = True) -> ConfidenceInterval:
    """Percentile interval of ``statistic`` over documents resampled with replacement.

    ``paired`` resamples document indices once for both clouds (image[i] stays with text[i]);
    otherwise each cloud is resampled on its own."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    image, text = _pair(image, text, paired=paired)
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for r in range(n_resamples):
        rows_i = rng.integers(0, len(image), size=len(image))
        rows_t = rows_i if paired else rng.integers(0, len(text), size=len(text))
        values[r] = statistic(image[rows_i], text[rows_t])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return ConfidenceInterval(float(low), float(high), int(n_resamples), float(confidence))


# --- UMAP projection --------------------------------------------------------------------------


def _umap_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("umap-learn")
    except PackageNotFoundError:  # pragma: no cover - umap-learn is a requirement
        return "unknown"


def _flat_index(points: np.ndarray) -> faiss.IndexFlatIP:
    """Exact inner-product index over unit-norm rows (cosine). FAISS rather than a numpy matrix
    product: one query stays well under a millisecond even when other processes load the CPU,
    where multithreaded BLAS showed 10-20 ms tails on two shared cores."""
    index = faiss.IndexFlatIP(points.shape[1])
    index.add(np.ascontiguousarray(points, dtype=np.float32))
    return index


def _cosine_knn(queries: np.ndarray, index: faiss.Index, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and cosine distances of the k nearest fitted points, nearest first."""
    sims, cols = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, index.ntotal))
    return cols, np.clip(1.0 - sims.astype(np.float64), 0.0, 2.0)


def _membership_weights(dists: np.ndarray, n_iter: int = 64, tol: float = 1e-5) -> np.ndarray:
    """UMAP's fuzzy membership of a new point in its k neighbours, as in ``UMAP.transform``.

    umap computes transform memberships with local connectivity 0, hence rho = 0, and finds the
    kernel width sigma by bisection so that sum_{j >= 2} exp(-d_j / sigma) = log2(k) (it skips
    the first neighbour when summing, and so do we); weights are exp(-d_j / sigma). sigma is
    floored at 1e-3 times the row's mean distance (umap floors by the batch mean when rho = 0;
    the row mean keeps one point's placement independent of the batch it arrives in)."""
    m, k = dists.shape
    target = math.log2(max(k, 2))
    lo = np.zeros(m)
    hi = np.full(m, np.inf)
    mid = np.ones(m)
    tail = dists[:, 1:]
    for _ in range(n_iter):
        psum = np.exp(-tail / mid[:, None]).sum(axis=1)
        if np.all(np.abs(psum - target) < tol):
            break
        too_big = psum > target
        hi = np.where(too_big, mid, hi)
        lo = np.where(too_big, lo, mid)
        mid = np.where(np.isinf(hi), mid * 2.0, (lo + hi) / 2.0)
    sigma = np.maximum(mid, MIN_SIGMA_SCALE * dists.mean(axis=1))
    sigma = np.where(sigma > 0, sigma, 1.0)
    return np.exp(-dists / sigma[:, None])


def place_points(queries: np.ndarray, points: np.ndarray | faiss.Index, coords: np.ndarray,
                 k: int) -> np.ndarray:
    """2-D positions of ``queries`` in a fitted projection by UMAP's transform initialisation.

    ``points`` are the fitted high-dimensional points (rows unit-norm), or a FAISS inner-product
    index over them, and ``coords`` their 2-D positions. Each query lands at the
    membership-weighted mean of its k nearest neighbours' coordinates (cosine distance), or
    exactly on a fitted point it duplicates.
    UMAP's transform would then run a few optimisation epochs; we stop at the initialisation
    (no numba, a few milliseconds)."""
    index = points if isinstance(points, faiss.Index) else _flat_index(points)
    queries = l2_normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if queries.shape[1] != index.d:
        raise ValueError(f"query width {queries.shape[1]} does not match projection width {index.d}")
    out = np.empty((len(queries), coords.shape[1]), dtype=np.float32)
    for start in range(0, len(queries), PLACE_BLOCK):
        block = queries[start:start + PLACE_BLOCK]
        cols, dists = _cosine_knn(block, index, k)
        weights = _membership_weights(dists)
        weights /= weights.sum(axis=1, keepdims=True)
        placed = (weights[:, :, None] * coords[cols]).sum(axis=1)  # elementwise: no BLAS threads
        duplicate = dists[:, 0] < DUPLICATE_DISTANCE
        placed[duplicate] = coords[cols[duplicate, 0]]
        out[start:start + len(block)] = placed
    return out


@dataclass
class Projection:
    """A 2-D UMAP layout of several named clouds (e.g. text, image, document).

    ``points`` holds every high-dimensional point (rows L2-normalised) in cloud order, ``labels``
    the cloud name of each row and ``coords`` the 2-D positions per cloud. When the fit was
    capped by ``max_points`` the points outside the fitted subsample were placed with
    ``transform``'s rule (see ``params["n_fitted"]``)."""

    coords: dict[str, np.ndarray]
    points: np.ndarray
    labels: list[str]
    seed: int
    params: dict[str, Any]
    _index: faiss.Index | None = field(default=None, init=False, repr=False, compare=False)
    _all_coords: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def names(self) -> list[str]:
        return list(self.coords)

    def offsets(self) -> dict[str, tuple[int, int]]:
        """Row range [start, stop) of each cloud inside ``points``."""
        out, start = {}, 0
        for name, xy in self.coords.items():
            out[name] = (start, start + len(xy))
            start += len(xy)
        return out

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """(m, 2) positions of new vectors (shape (d,) or (m, d)); see ``place_points``."""
        if self._index is None:
            self._index = _flat_index(l2_normalise(np.asarray(self.points, dtype=np.float32)))
            self._all_coords = np.concatenate([self.coords[n] for n in self.coords]).astype(np.float32)
        return place_points(vectors, self._index, self._all_coords, int(self.params["n_neighbors"]))

    def save(self, folder: Path | str) -> Path:
        """Write ``umap.safetensors`` (coords per cloud, points as float16) and ``umap.json``."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"coords.{name}": np.ascontiguousarray(xy, dtype=np.float32)
                   for name, xy in self.coords.items()}
        tensors["points"] = np.ascontiguousarray(self.points, dtype=np.float16)
        meta = {"format_version": FORMAT_VERSION, "seed": int(self.seed), "params": self.params,
                "names": self.names, "counts": [len(xy) for xy in self.coords.values()],
                "dim": int(self.points.shape[1]), "umap_version": self.params.get("umap_version")}
        _atomic_write(folder / PROJECTION_TENSORS, lambda p: save_file(tensors, str(p)))
        _atomic_write(folder / PROJECTION_META,
                      lambda p: p.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8"))
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> Projection:
        """Read a saved projection; GeometryStoreError names what is missing or inconsistent."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        missing = [n for n in (PROJECTION_TENSORS, PROJECTION_META) if not (folder / n).is_file()]
        if missing:
            raise GeometryStoreError(f"UMAP projection at {folder} is missing {', '.join(missing)}; "
                                     "rebuild the geometry artefacts for this index")
        try:
            meta = json.loads((folder / PROJECTION_META).read_text(encoding="utf-8"))
            tensors = load_file(str(folder / PROJECTION_TENSORS))
            names, counts = list(meta["names"]), [int(c) for c in meta["counts"]]
            params, seed, dim = dict(meta["params"]), int(meta["seed"]), int(meta["dim"])
            points = tensors["points"]
            coords = {name: tensors[f"coords.{name}"] for name in names}
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise GeometryStoreError(f"UMAP projection at {folder} is damaged ({exc!r}); "
                                     "rebuild the geometry artefacts for this index") from exc
        problems = []
        if len(names) != len(counts) or points.ndim != 2 or points.shape != (sum(counts), dim):
            problems.append(f"points {points.shape} do not match counts {counts} of width {dim}")
        problems += [f"coords.{n} has shape {coords[n].shape}, expected ({c}, 2)"
                     for n, c in zip(names, counts) if coords[n].shape != (c, 2)]
        if "n_neighbors" not in params:
            problems.append("params lack n_neighbors")
        if problems:
            raise GeometryStoreError(f"UMAP projection at {folder} is inconsistent: " + "; ".join(problems)
                                     + "; rebuild the geometry artefacts for this index")
        labels = [name for name, c in zip(names, counts) for _ in range(c)]
        return cls(coords=coords, points=points, labels=labels, seed=seed, params=params)


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary sibling and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def fit_projection(clouds: Mapping[str, np.ndarray], seed: int = 0, n_neighbors: int = 15,
                   min_dist: float = 0.1, max_points: int | None = None) -> Projection:
    """Fit umap.UMAP(n_components=2, metric="cosine", random_state=seed) on all clouds together.

    With ``max_points`` below the total, UMAP is fitted on a fixed-seed subsample and the other
    points are placed with ``Projection.transform``'s rule. A fixed seed makes umap
    single-threaded and the layout reproducible."""
    if not clouds:
        raise ValueError("fit_projection needs at least one cloud")
    arrays = {name: as_cloud(x, name) for name, x in clouds.items()}
    widths = {x.shape[1] for x in arrays.values()}
    if len(widths) != 1:
        raise ValueError(f"clouds have different widths: {sorted(widths)}")
    points = l2_normalise(np.concatenate([x.astype(np.float32) for x in arrays.values()]))
    total = len(points)
    fit_rows = _subsample(total, max_points, np.random.default_rng(seed))
    if len(fit_rows) < 4:
        raise ValueError(f"UMAP needs at least 4 points to fit, got {len(fit_rows)}")
    k = int(min(n_neighbors, len(fit_rows) - 1))

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap notes that random_state forces n_jobs=1
        import umap

        reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=k, min_dist=float(min_dist),
                            random_state=int(seed))
        fitted = reducer.fit_transform(points[fit_rows]).astype(np.float32)
    all_coords = np.empty((total, 2), dtype=np.float32)
    all_coords[fit_rows] = fitted
    rest = np.setdiff1d(np.arange(total), fit_rows)
    if len(rest):
        all_coords[rest] = place_points(points[rest], points[fit_rows], fitted, k)
    seconds = time.perf_counter() - start

    coords, labels, offset = {}, [], 0
    for name, x in arrays.items():
        coords[name] = all_coords[offset:offset + len(x)]
        labels += [name] * len(x)
        offset += len(x)
    params = {"n_neighbors": k, "min_dist": float(min_dist), "metric": "cosine",
              "max_points": max_points, "n_fitted": len(fit_rows), "n_points": int(total),
              "transform": "umap-init: weighted mean of k nearest neighbours, exp(-d/sigma)",
              "umap_version": _umap_version(), "fit_seconds": round(seconds, 3)}
    return Projection(coords=coords, points=points, labels=labels, seed=int(seed), params=params)


# --- report -----------------------------------------------------------------------------------


@dataclass
class GeometryReport:
    """Geometry of one retriever's embedding space on one corpus: what ``python -m ciea geometry``
    prints (its fields are a contract, docs/contracts.md)."""

    corpus: str
    retriever: str
    backbone: str
    n_documents: int
    centroid_gap: float
    centroid_gap_ci: dict[str, Any]
    wasserstein2: dict[str, Any]
    sliced_wasserstein: dict[str, Any]
    cosine: dict[str, Any]
    document_gap: float | None
    gap_shift: list[dict[str, Any]]
    timings: dict[str, float]
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-serialisable dict (plain floats, ints, strings and lists)."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays and tuples into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def compute_report(text: np.ndarray, image: np.ndarray, document: np.ndarray | None = None, *,
                   corpus: str, retriever: str, backbone: str, w2_samples: int = 1000,
                   w2_bootstrap: int = 30, gap_bootstrap: int = 200, sw_projections: int = 256,
                   seed: int = 0, shift_eval: Callable[[float], Mapping[str, float]] | None = None,
                   shift_factors: Sequence[float] = (0, 0.25, 0.5, 0.75, 1.0),
                   w2_bootstrap_samples: int | None = None, sw_samples: int | None = SW_REPORT_SAMPLES,
                   cosine_pairs: int = 20000, confidence: float = 0.95) -> GeometryReport:
    """All geometry measures for paired text/image clouds (rows L2-normalised here first).

    The W2 interval resamples documents of the fixed W2 subsample (size
    ``w2_bootstrap_samples``, default ``w2_samples``), so it reflects document sampling at
    the reported sample size. ``shift_eval(factor)`` (optional, caller-supplied, e.g. retrieval
    metrics after ``gap_shift``) fills ``gap_shift`` with one row per factor and metric."""
    image, text = _pair(image, text, paired=True)
    image, text = l2_normalise(image), l2_normalise(text)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - start, 4)
        return result

    gap = timed("centroid_gap", lambda: centroid_gap(image, text))
    gap_ci = timed("centroid_gap_ci", lambda: bootstrap_ci(centroid_gap, image, text, gap_bootstrap,
                                                          confidence, seed, paired=True))
    w2 = timed("wasserstein2", lambda: wasserstein2(image, text, max_samples=w2_samples, seed=seed))
    boot_n = w2_bootstrap_samples or w2_samples
    sub_image, sub_text = _paired_samples(image, text, boot_n, seed)

    def w2_stat(a: np.ndarray, b: np.ndarray) -> float:
        return wasserstein2(a, b, max_samples=None).distance

    w2_ci = timed("wasserstein2_ci", lambda: bootstrap_ci(w2_stat, sub_image, sub_text, w2_bootstrap,
                                                         confidence, seed, paired=True))
    start = time.perf_counter()
    sw = sliced_wasserstein(image, text, n_projections=sw_projections, seed=seed, max_samples=sw_samples)
    timings["sliced_wasserstein"] = sw_seconds = round(time.perf_counter() - start, 4)
    cos = timed("cosine_stats", lambda: cosine_stats(image, text, max_pairs=cosine_pairs, seed=seed))
    doc_gap = None
    if document is not None:
        docs = l2_normalise(document)
        doc_gap = timed("document_gap", lambda: centroid_gap(docs, text))
    shifts: list[dict[str, Any]] = []
    if shift_eval is not None:
        start = time.perf_counter()
        for factor in shift_factors:
            for metric, value in shift_eval(float(factor)).items():
                shifts.append({"factor": float(factor), "metric": str(metric), "value": float(value)})
        timings["gap_shift"] = round(time.perf_counter() - start, 4)

    n_sw = len(image) if sw_samples is None else min(len(image), sw_samples)
    return GeometryReport(
        corpus=corpus, retriever=retriever, backbone=backbone, n_documents=len(image),
        centroid_gap=gap, centroid_gap_ci=gap_ci.to_dict(),
        wasserstein2={"distance": w2.distance, "n": w2.n, "converged": w2.converged,
                      "seconds": round(w2.seconds, 4), "ci": w2_ci.to_dict()},
        sliced_wasserstein={"distance": sw, "n_projections": int(sw_projections), "n": n_sw,
                            "seconds": sw_seconds},
        cosine=cos.to_dict(), document_gap=doc_gap, gap_shift=shifts, timings=timings,
        settings={"seed": seed, "normalised": True, "w2_samples": w2_samples,
                  "w2_bootstrap": w2_bootstrap, "w2_bootstrap_samples": min(boot_n, len(image)),
                  "gap_bootstrap": gap_bootstrap, "confidence": confidence,
                  "bootstrap": "percentile, documents resampled with replacement (paired)",
                  "sw_projections": sw_projections, "sw_samples": sw_samples,
                  "cosine_max_pairs": cosine_pairs, "cosine_bins": COSINE_BINS,
                  "emd_max_iter": EMD_MAX_ITER, "shift_factors": [float(f) for f in shift_factors]},
    )


def save_report(report: GeometryReport, folder: Path | str) -> Path:
    """Write ``folder/geometry.json``; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    text = json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


REQUIRED_REPORT_KEYS = ("centroid_gap", "wasserstein2", "sliced_wasserstein")


def load_report(folder: Path | str) -> dict[str, Any]:
    """Read ``folder/geometry.json``; GeometryStoreError when missing, unreadable or incomplete."""
    path = Path(folder) / REPORT_FILE
    if not path.is_file():
        raise GeometryStoreError(f"No geometry report at {path}; rebuild the geometry artefacts for this index")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GeometryStoreError(f"Geometry report {path} is damaged ({exc}); rebuild it") from exc
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED_REPORT_KEYS):
        raise GeometryStoreError(f"Geometry report {path} lacks {', '.join(REQUIRED_REPORT_KEYS)}; rebuild it")
    return data
