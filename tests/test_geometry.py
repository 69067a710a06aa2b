"""Geometry measures against closed forms and hand-computed values; projection and report stores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.linalg import sqrtm
from scipy.stats import norm, qmc

from ciea import geometry as geo
from ciea.geometry import (
    GeometryStoreError,
    Projection,
    bootstrap_ci,
    centroid_gap,
    compute_report,
    cosine_stats,
    fit_projection,
    gap_shift,
    gap_shift_raw,
    gap_vector,
    load_report,
    save_report,
    sliced_wasserstein,
    wasserstein2,
)


def gaussian_w2(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
    """Closed form: W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)."""
    root = np.real(sqrtm(s2))
    cross = np.real(sqrtm(root @ s1 @ root))
    return math.sqrt(float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * cross)))


def gaussian_sample(mean: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n points of N(mean, cov) from a scrambled Sobol sequence: far less sampling noise than
    pseudo-random draws, so the tolerance below is about the estimator, not luck."""
    u = qmc.Sobol(len(mean), scramble=True, seed=seed).random(n)
    return mean + norm.ppf(u) @ np.linalg.cholesky(cov).T


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cone(n: int, d: int, offset: np.ndarray, seed: int) -> np.ndarray:
    """Unit vectors clustered around ``offset`` (a cone, like one modality's embeddings)."""
    return unit(np.random.default_rng(seed).normal(size=(n, d)) + offset)


# --- centroid gap and gap shift ----------------------------------------------------------------


def test_centroid_gap_hand_computed():
    image = np.array([[1.0, 0.0], [5.0, 8.0]])  # mean (3, 4)
    text = np.array([[0.0, 1.0], [0.0, -1.0]])  # mean (0, 0)
    np.testing.assert_allclose(gap_vector(image, text), [3.0, 4.0])
    assert centroid_gap(image, text) == pytest.approx(5.0)
    assert centroid_gap(text, image) == pytest.approx(5.0)


def test_identical_clouds_have_zero_gap_and_zero_w2():
    cloud = cone(1500, 8, np.full(8, 0.5), seed=1)
    assert centroid_gap(cloud, cloud.copy()) == 0.0
    result = wasserstein2(cloud, cloud.copy(), max_samples=1000, seed=3)
    assert result.n == 1000 and result.converged
    assert result.distance == pytest.approx(0.0, abs=1e-7)
    assert sliced_wasserstein(cloud, cloud.copy(), max_samples=1000) == pytest.approx(0.0, abs=1e-7)


def test_gap_shift_raw_by_full_gap_closes_the_gap_and_keeps_shapes():
    image = cone(300, 6, np.array([2.0, 0, 0, 0, 0, 0]), seed=2)
    text = cone(300, 6, np.array([0, 2.0, 0, 0, 0, 0]), seed=3)
    gap = centroid_gap(image, text)
    assert gap > 0.5
    moved_image, moved_text = gap_shift_raw(image, text, 1.0)
    assert centroid_gap(moved_image, moved_text) == pytest.approx(0.0, abs=1e-12)
    half_image, half_text = gap_shift_raw(image, text, 0.5)
    assert centroid_gap(half_image, half_text) == pytest.approx(gap / 2, rel=1e-9)
    # A translation: differences inside each cloud are unchanged.
    np.testing.assert_allclose(moved_image - moved_image[0], image - image[0], atol=1e-12)
    still_image, still_text = gap_shift_raw(image, text, 0.0)
    np.testing.assert_array_equal(still_image, image)
    np.testing.assert_array_equal(still_text, text)


def test_gap_shift_renormalises_onto_the_sphere_and_shrinks_the_gap():
    image = cone(400, 16, np.r_[3.0, np.zeros(15)], seed=4)
    text = cone(400, 16, np.r_[0.0, 3.0, np.zeros(14)], seed=5)
    before = centroid_gap(image, text)
    moved_image, moved_text = gap_shift(image, text, 1.0)
    np.testing.assert_allclose(np.linalg.norm(moved_image, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(moved_text, axis=1), 1.0, atol=1e-12)
    assert centroid_gap(moved_image, moved_text) < 0.2 * before


# --- Wasserstein --------------------------------------------------------------------------------


def test_w2_of_a_translated_copy_is_the_translation_length():
    # W2^2 = |mean difference|^2 + W2^2 of the centred clouds, which is 0 for a copy.
    rng = np.random.default_rng(7)
    cloud = rng.normal(size=(400, 3))
    shift = np.array([0.6, -0.8, 1.2])
    result = wasserstein2(cloud, cloud + shift, max_samples=None)
    assert result.distance == pytest.approx(np.linalg.norm(shift), rel=1e-7)
    # Each 1-D projection of a translation is a translation by theta . shift, so
    # SW^2 = E_theta (theta . shift)^2 = |shift|^2 / d for directions uniform on the sphere;
    # 256 directions leave about 6% relative error on SW^2, 3% on SW.
    sliced = sliced_wasserstein(cloud, cloud + shift, n_projections=256, seed=0)
    assert sliced == pytest.approx(np.linalg.norm(shift) / math.sqrt(3), rel=0.1)
    assert sliced < result.distance


GAUSSIANS = {
    # Same mean, scale 1 vs 2: W2 = sqrt(2) = 1.414, while W1 = E|x| = sqrt(pi / 2) = 1.253, so a
    # Euclidean (not squared) cost would fail the bounds below.
    "scale-2d": (np.zeros(2), np.eye(2), np.zeros(2), 4 * np.eye(2)),
    "shift-rotate-2d": (np.zeros(2), np.diag([1.0, 0.25]), np.array([1.0, 0.5]),
                        np.array([[0.5, 0.3], [0.3, 0.8]])),
}


@pytest.mark.parametrize("case", sorted(GAUSSIANS))
def test_w2_matches_the_gaussian_closed_form_in_2d(case):
    m1, s1, m2, s2 = GAUSSIANS[case]
    expected = gaussian_w2(m1, s1, m2, s2)
    x, y = gaussian_sample(m1, s1, 1024, seed=0), gaussian_sample(m2, s2, 1024, seed=1)
    result = wasserstein2(x, y, max_samples=1024)
    assert result.converged and result.n == 1024
    # The empirical estimator is biased upward (an empirical measure is never exactly Gaussian);
    # with 1,024 Sobol points in 2-D the excess measured over 20 scrambles was +0.1% to +1.5%.
    assert expected * 0.995 <= result.distance <= expected * 1.03
    assert sliced_wasserstein(x, y, n_projections=256) < result.distance


def test_w2_matches_the_gaussian_closed_form_in_3d_within_its_larger_bias():
    m1, s1 = np.zeros(3), np.diag([1.0, 0.5, 0.25])
    m2, s2 = np.array([0.5, 0.0, -0.5]), np.array([[1.5, 0.3, 0.0], [0.3, 0.6, 0.1], [0.0, 0.1, 0.4]])
    expected = gaussian_w2(m1, s1, m2, s2)  # 0.788
    x, y = gaussian_sample(m1, s1, 1024, seed=2), gaussian_sample(m2, s2, 1024, seed=3)
    result = wasserstein2(x, y, max_samples=None)
    # In 3-D the finite-sample bias decays more slowly: measured +4% to +5% at n = 1,024.
    assert expected * 0.99 <= result.distance <= expected * 1.08
    assert sliced_wasserstein(x, y) < result.distance


def test_w2_subsamples_with_a_fixed_seed_and_reports_sizes():
    image = cone(1500, 8, np.full(8, 0.3), seed=8)
    text = cone(900, 8, -np.full(8, 0.3), seed=9)
    first = wasserstein2(image, text, max_samples=500, seed=5)
    again = wasserstein2(image, text, max_samples=500, seed=5)
    other = wasserstein2(image, text, max_samples=500, seed=6)
    assert (first.n, first.n_text) == (500, 500)
    assert first.distance == again.distance
    assert first.distance != other.distance
    small = wasserstein2(image[:300], text[:200], max_samples=1000)
    assert (small.n, small.n_text, small.converged) == (300, 200, True)
    assert small.seconds > 0


def test_w2_reports_non_convergence_without_printing_pot_warnings(monkeypatch):
    monkeypatch.setattr(geo, "EMD_MAX_ITER", 1)  # the simplex cannot finish in one iteration
    image, text = cone(50, 4, np.ones(4), seed=1), cone(50, 4, -np.ones(4), seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = wasserstein2(image, text)
    assert result.converged is False
    assert caught == []


# --- cosine statistics ------------------------------------------------------------------------


def test_cosine_stats_hand_computed_and_normalised_defensively():
    image = np.diag([2.0, 3.0, 0.5])  # e1, e2, e3 after normalisation
    text = np.array([[5.0, 0, 0], [3.0, 3.0, 0], [0, 4.0, 0]])  # e1, (e1 + e2)/sqrt2, e2
    r = 1 / math.sqrt(2)
    stats = cosine_stats(image, text)
    assert stats.matched_mean == pytest.approx((1 + r + 0) / 3)
    # ordered pairs i != j of image[i] . text[j]: (0,1) r, (1,2) 1, the other four 0
    assert stats.random_mean == pytest.approx((r + 1) / 6)
    assert stats.within_image_mean == pytest.approx(0.0)
    assert stats.within_text_mean == pytest.approx((r + 0 + r) / 3)
    matched = stats.histograms["matched"]
    assert len(matched["edges"]) == geo.COSINE_BINS + 1 and matched["edges"][0] == -1.0
    assert matched["edges"][-1] == 1.0
    # bins are 0.05 wide: cos 1 is in the last bin, r = 0.707 in bin 34, 0 in bin 20
    assert [i for i, c in enumerate(matched["counts"]) for _ in range(c)] == [20, 34, 39]
    assert sum(stats.histograms["random"]["counts"]) == 6
    assert sum(stats.histograms["within_text"]["counts"]) == 3


def test_cosine_stats_sampled_pairs_never_pair_a_document_with_itself():
    cloud = unit(np.random.default_rng(3).normal(size=(60, 256)))
    stats = cosine_stats(cloud, cloud.copy(), max_pairs=500, seed=1)  # 3,540 pairs > 500: sampled
    assert stats.matched_mean == pytest.approx(1.0)
    for name in ("random", "within_image", "within_text"):
        counts = stats.histograms[name]["counts"]
        assert sum(counts) == 500
        assert counts[-1] == 0  # a pair (i, i) would have cosine 1
    # independent random directions in 256-d: cosine mean 0, sd 1/16 per pair
    assert abs(stats.random_mean) < 0.02 and abs(stats.within_image_mean) < 0.02


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_of_constant_documents_is_a_point():
    image, text = np.tile([[3.0, 4.0]], (50, 1)), np.zeros((50, 2))
    ci = bootstrap_ci(centroid_gap, image, text, n_resamples=20)
    assert (ci.low, ci.high, ci.n_resamples, ci.confidence) == (pytest.approx(5.0), pytest.approx(5.0), 20, 0.95)


def test_bootstrap_interval_matches_the_normal_standard_error():
    # gap = |mean of N(5, 1) sample| with n = 400: SE = 1/20, 95% interval = mean -/+ 0.098
    image = np.random.default_rng(11).normal(5.0, 1.0, size=(400, 1))
    text = np.zeros((400, 1))
    mean = float(image.mean())
    ci = bootstrap_ci(centroid_gap, image, text, n_resamples=400, seed=0)
    assert ci.low == pytest.approx(mean - 1.96 / 20, abs=0.025)
    assert ci.high == pytest.approx(mean + 1.96 / 20, abs=0.025)
    narrow = bootstrap_ci(centroid_gap, image, text, n_resamples=400, confidence=0.5, seed=0)
    assert ci.low < narrow.low < narrow.high < ci.high


def test_paired_bootstrap_keeps_documents_together():
    rng = np.random.default_rng(12)
    image = rng.normal(size=(300, 3))
    text = image + 0.01 * rng.normal(size=(300, 3)) + np.array([0.5, 0.0, 0.0])
    paired = bootstrap_ci(centroid_gap, image, text, n_resamples=200, paired=True)
    unpaired = bootstrap_ci(centroid_gap, image, text, n_resamples=200, paired=False)
    # paired: the gap is the mean of the small differences; unpaired: two independent means
    assert (paired.high - paired.low) < 0.2 * (unpaired.high - unpaired.low)


# --- UMAP projection ------------------------------------------------------------------------


def blobs(seed: int, per_blob: int = 50, d: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two clouds (text, image) over three well-separated directions, and each row's blob."""
    rng = np.random.default_rng(seed)
    centres = 3 * rng.normal(size=(3, d))
    text = np.concatenate([c + rng.normal(size=(per_blob, d)) for c in centres])
    image = np.concatenate([c + rng.normal(size=(per_blob, d)) for c in centres])
    return text, image, np.tile(np.repeat(np.arange(3), per_blob), 2)


@pytest.fixture(scope="module")
def fitted():
    text, image, blob = blobs(0)
    projection = fit_projection({"text": text, "image": image}, seed=0)
    return projection, blob


def nearest_blob(xy: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


def test_umap_layout_is_reproducible_with_the_seed(fitted):
    projection, _ = fitted
    text, image, _ = blobs(0)
    again = fit_projection({"text": text, "image": image}, seed=0)
    other = fit_projection({"text": text, "image": image}, seed=1)
    for name in ("text", "image"):
        np.testing.assert_array_equal(again.coords[name], projection.coords[name])
    assert not np.allclose(other.coords["text"], projection.coords["text"])
    assert projection.labels == ["text"] * 150 + ["image"] * 150
    assert projection.offsets() == {"text": (0, 150), "image": (150, 300)}
    assert projection.coords["text"].shape == (150, 2) and projection.points.shape == (300, 16)


def test_transform_places_training_points_at_their_fitted_positions(fitted):
    projection, blob = fitted
    layout = np.concatenate([projection.coords["text"], projection.coords["image"]])
    # UMAP's rule: a point identical to a fitted one lands exactly there.
    np.testing.assert_allclose(projection.transform(projection.points), layout, atol=1e-6)
    # A slightly perturbed copy is no duplicate: it lands at the weighted mean of its neighbours,
    # near the fitted position and inside its own blob.
    noisy = projection.points + 0.01 * np.random.default_rng(5).normal(size=projection.points.shape)
    placed = projection.transform(noisy)
    span = float(np.max(layout.max(axis=0) - layout.min(axis=0)))
    assert np.median(np.linalg.norm(placed - layout, axis=1)) < 0.03 * span
    centres = np.stack([layout[blob == b].mean(axis=0) for b in range(3)])
    np.testing.assert_array_equal(nearest_blob(placed, centres), blob)
    assert projection.transform(noisy[0]).shape == (1, 2)


def test_fit_with_max_points_places_the_rest_in_their_blobs():
    text, image, blob = blobs(1)
    projection = fit_projection({"text": text, "image": image}, seed=0, max_points=200)
    assert projection.params["n_fitted"] == 200 and projection.params["n_points"] == 300
    layout = np.concatenate([projection.coords["text"], projection.coords["image"]])
    assert np.isfinite(layout).all()
    centres = np.stack([layout[blob == b].mean(axis=0) for b in range(3)])
    np.testing.assert_array_equal(nearest_blob(layout, centres), blob)


def test_projection_round_trip_and_damaged_stores(fitted, tmp_path):
    projection, _ = fitted
    projection.save(tmp_path)
    loaded = Projection.load(tmp_path)
    assert loaded.points.dtype == np.float16 and loaded.labels == projection.labels
    assert loaded.seed == 0 and loaded.params["n_neighbors"] == 15
    for name in ("text", "image"):
        np.testing.assert_array_equal(loaded.coords[name], projection.coords[name])
    meta = json.loads((tmp_path / geo.PROJECTION_META).read_text())
    assert meta["names"] == ["text", "image"] and meta["counts"] == [150, 150] and meta["umap_version"]
    queries = projection.points[:20] + 0.05
    np.testing.assert_allclose(loaded.transform(queries), projection.transform(queries), atol=1e-2)

    (tmp_path / geo.PROJECTION_META).write_text("{not json")
    with pytest.raises(GeometryStoreError, match="damaged"):
        Projection.load(tmp_path)
    meta["counts"] = [150, 149]
    (tmp_path / geo.PROJECTION_META).write_text(json.dumps(meta))
    with pytest.raises(GeometryStoreError, match="inconsistent"):
        Projection.load(tmp_path)
    blob = (tmp_path / geo.PROJECTION_TENSORS).read_bytes()
    (tmp_path / geo.PROJECTION_TENSORS).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(GeometryStoreError):
        Projection.load(tmp_path)
    (tmp_path / geo.PROJECTION_TENSORS).unlink()
    with pytest.raises(ValueError, match="missing umap.safetensors"):
        Projection.load(tmp_path)


def test_loaded_projection_transforms_without_umap_or_numba(fitted, tmp_path, repo_root):
    projection, _ = fitted
    projection.save(tmp_path)
    script = (
        "import sys, numpy as np\n"
        "from ciea.geometry import Projection\n"
        f"p = Projection.load({str(tmp_path)!r})\n"
        "xy = p.transform(np.ones(16, dtype=np.float32))\n"
        "assert xy.shape == (1, 2) and np.isfinite(xy).all()\n"
        "print(sorted(m for m in ('umap', 'numba', 'ot') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=False, cwd=repo_root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- report -----------------------------------------------------------------------------------


def test_report_measures_normalised_clouds_and_round_trips(tmp_path):
    image = cone(200, 16, np.r_[2.0, np.zeros(15)], seed=20)
    text = cone(200, 16, np.r_[0.0, 2.0, np.zeros(14)], seed=21)
    document = unit(image + text)

    def shift_eval(factor: float) -> dict[str, float]:
        return {"gap": centroid_gap(*gap_shift(image, text, factor))}

    report = compute_report(3 * text, 0.5 * image, document, corpus="toy", retriever="dual-fused",
                            backbone="bundled", w2_samples=150, w2_bootstrap=5, gap_bootstrap=50,
                            sw_projections=64, shift_eval=shift_eval)
    gap = centroid_gap(image, text)  # the report normalises its (here rescaled) inputs
    assert report.centroid_gap == pytest.approx(gap)
    assert report.centroid_gap_ci["low"] <= gap <= report.centroid_gap_ci["high"]
    assert report.centroid_gap_ci["n_resamples"] == 50 and report.wasserstein2["ci"]["n_resamples"] == 5
    assert report.wasserstein2["n"] == 150 and report.wasserstein2["converged"] is True
    assert report.wasserstein2["distance"] == pytest.approx(wasserstein2(image, text, 150).distance)
    assert 0 < report.sliced_wasserstein["distance"] < report.wasserstein2["distance"]
    assert report.document_gap == pytest.approx(centroid_gap(document, text))
    assert report.cosine["matched_mean"] == pytest.approx(cosine_stats(image, text).matched_mean)
    assert [row["factor"] for row in report.gap_shift] == [0, 0.25, 0.5, 0.75, 1.0]
    values = [row["value"] for row in report.gap_shift]
    assert values[0] == pytest.approx(gap) and values == sorted(values, reverse=True)
    assert report.settings["w2_bootstrap_samples"] == 150 and report.settings["gap_bootstrap"] == 50

    data = json.loads(json.dumps(report.to_json()))
    for key in ("centroid_gap", "wasserstein2", "sliced_wasserstein", "cosine", "settings", "timings"):
        assert key in data
    path = save_report(report, tmp_path)
    assert path == tmp_path / "geometry.json"
    assert load_report(tmp_path) == data


def test_load_report_refuses_missing_damaged_or_incomplete_files(tmp_path):
    with pytest.raises(GeometryStoreError, match="No geometry report"):
        load_report(tmp_path)
    (tmp_path / "geometry.json").write_text('{"centroid_gap": 0.1,')
    with pytest.raises(GeometryStoreError, match="damaged"):
        load_report(tmp_path)
    (tmp_path / "geometry.json").write_text('{"centroid_gap": 0.1}')
    with pytest.raises(GeometryStoreError, match="lacks"):
        load_report(tmp_path)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="widths"):
        centroid_gap(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="same number of rows"):
        cosine_stats(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        wasserstein2(np.full((3, 2), np.nan), np.ones((3, 2)))
