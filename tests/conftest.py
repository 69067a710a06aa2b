"""Shared fixtures: real backbones (loaded once), tiny corpora made on the fly."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network
# numba (ranx, UMAP) caches its compiled functions here, before anything imports numba: about 40 s
# of CPU per process when cold, 5 s when warm; subprocesses (CLI, app) inherit the variable.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ciea", "numba"))

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ciea.backbones import load_backbone
from ciea.config import Settings
from ciea.data.schema import Corpus, Document
from ciea.geometry import PROJECTION_META, PROJECTION_TENSORS, REPORT_FILE

RANDOM_CLIP = "open_clip:ViT-B-32:none"


@pytest.fixture(scope="session")
def bundled():
    return load_backbone("bundled", device="cpu")


@pytest.fixture(scope="session")
def random_clip():
    return load_backbone(RANDOM_CLIP, device="cpu")


def draw_shape(kind: str, colour: tuple[int, int, int], size: int = 96) -> Image.Image:
    """A simple RGBA drawing on a transparent background, like a stamp."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    if kind == "circle":
        draw.ellipse(box, fill=colour + (255,))
    elif kind == "square":
        draw.rectangle(box, fill=colour + (255,))
    else:
        draw.polygon([(size // 2, size // 8), (size // 8, size - size // 8), (size - size // 8, size - size // 8)],
                     fill=colour + (255,))
    return image


TINY_DOCS = [
    ("shapes/red-circle.png", "A red ball.", "circle", (220, 30, 30)),
    ("shapes/blue-square.png", "A blue box.", "square", (30, 30, 220)),
    ("shapes/green-triangle.png", "A green tent.", "triangle", (30, 180, 30)),
    ("food/orange.png", "An orange fruit.", "circle", (250, 150, 20)),
    ("vehicles/bus.png", "A yellow school bus.", "square", (240, 220, 20)),
    ("animals/frog.png", "A frog.", "triangle", (60, 160, 60)),
]


@pytest.fixture(scope="session")
def tiny_settings(tmp_path_factory) -> Settings:
    """A six-document corpus under a temporary assets folder, with empty indexes folder."""
    root = tmp_path_factory.mktemp("tiny")
    corpus_dir = root / "assets" / "tiny"
    docs = []
    for doc_id, text, kind, colour in TINY_DOCS:
        rel = f"thumbs/{doc_id}.png"
        (corpus_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        draw_shape(kind, colour).save(corpus_dir / rel)
        docs.append(Document(doc_id, text, rel, doc_id.split("/")[0]))
    Corpus("tiny", corpus_dir, docs).save()
    return dataclasses.replace(Settings(), backbone="bundled", assets_dir=root / "assets",
                               indexes_dir=root / "indexes", cache_dir=root / "cache")


@pytest.fixture(scope="session")
def tiny_built(tiny_settings) -> Settings:
    """``tiny_settings`` with every retriever's index built on the bundled backbone."""
    from ciea.build import build_indexes

    build_indexes("tiny", tiny_settings, progress=False)
    return tiny_settings


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# -- the launched app (shared by test_app.py, test_browser.py and any other test that needs it) ----

#: Fixtures that launch ``python app.py``: every test using one is marked slow here, in one place.
APP_FIXTURES = frozenset({"app_url", "evil_app"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if APP_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


APP_STARTUP_TIMEOUT_S = 180
#: Retrievers of the stamps corpus that get synthetic geometry artefacts in the launched app.
GEOMETRY_RETRIEVERS = ("text-dense", "dual-fused")
#: Files of a real geometry build (left out on stamps in the launched app).
GEOMETRY_FILES = (REPORT_FILE, PROJECTION_META, PROJECTION_TENSORS)
#: The image cloud of the synthetic artefacts is the text cloud translated by a vector of this
#: length, so its exact W2 to the text cloud is this length (closed form for a translation).
GEOMETRY_SHIFT = 0.5
#: A saved geometry report with hand-picked values (what the Geometry tab must show).
GEOMETRY_REPORT = {
    "corpus": "stamps", "n_documents": 949,
    "centroid_gap": 0.8125,
    "centroid_gap_ci": {"low": 0.8, "high": 0.825, "n_resamples": 200, "confidence": 0.95},
    "wasserstein2": {"distance": 0.5, "n": 500, "converged": True, "seconds": 0.25,
                     "ci": {"low": 0.49, "high": 0.51, "n_resamples": 30, "confidence": 0.95}},
    "sliced_wasserstein": {"distance": 0.125, "n_projections": 256, "n": 949, "seconds": 0.1},
    "cosine": {"matched_mean": 0.375, "random_mean": 0.0625, "within_image_mean": 0.25,
               "within_text_mean": 0.1875, "histograms": {}},
    "document_gap": 0.4375,
    "gap_shift": [{"factor": 0.0, "metric": "mrr@10", "value": 0.5},
                  {"factor": 0.5, "metric": "mrr@10", "value": 0.625},
                  {"factor": 1.0, "metric": "mrr@10", "value": 0.75}],
    "timings": {}, "settings": {"seed": 0},
}


def write_synthetic_geometry(folder: Path, vectors: np.ndarray, seed: int = 0) -> None:
    """Geometry artefacts for an index folder: text and document clouds are the index's own
    vectors, the image cloud is the text cloud translated by ``GEOMETRY_SHIFT``; coordinates
    are the first two principal components (image cloud moved aside), the report is
    ``GEOMETRY_REPORT``."""
    import json

    from ciea.geometry import Projection

    rng = np.random.default_rng(seed)
    shift = rng.normal(size=vectors.shape[1])
    shift *= GEOMETRY_SHIFT / np.linalg.norm(shift)
    centred = vectors - vectors.mean(axis=0)
    xy = (centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T).astype(np.float32)
    xy /= np.abs(xy).max()
    coords = {"text": xy, "image": xy + np.float32([3.0, 0.0]), "document": xy * 0.5 + np.float32([0.0, 2.5])}
    points = np.concatenate([vectors, vectors + shift, vectors]).astype(np.float32)
    labels = [name for name, c in coords.items() for _ in range(len(c))]
    Projection(coords=coords, points=points, labels=labels, seed=seed, params={"n_neighbors": 15}).save(folder)
    (folder / REPORT_FILE).write_text(json.dumps(GEOMETRY_REPORT), encoding="utf-8")


@pytest.fixture(scope="session")
def app_indexes(tmp_path_factory) -> Path:
    """The committed indexes (linked, never copied or changed) plus synthetic geometry
    artefacts for ``GEOMETRY_RETRIEVERS`` on stamps, as an index folder for the launched app."""
    import faiss

    from ciea.config import PROJECT_ROOT
    from ciea.index import INDEX_FILE

    source = PROJECT_ROOT / "indexes"
    root = tmp_path_factory.mktemp("app-indexes")
    for corpus_dir in source.iterdir():
        if not corpus_dir.is_dir() or corpus_dir.name not in ("stamps", "scenes"):
            (root / corpus_dir.name).symlink_to(corpus_dir)
            continue
        for entry in corpus_dir.iterdir():
            target = root / corpus_dir.name / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if corpus_dir.name == "stamps" and entry.is_dir():
                # only the synthetic geometry is shown on stamps: the real artefacts are left out
                target.mkdir()
                for f in entry.iterdir():
                    if f.name not in GEOMETRY_FILES:
                        (target / f.name).symlink_to(f)
                if entry.name in GEOMETRY_RETRIEVERS:
                    index = faiss.read_index(str(entry / INDEX_FILE))
                    write_synthetic_geometry(target, index.reconstruct_n(0, index.ntotal))
            else:
                target.symlink_to(entry)
    return root


@pytest.fixture(scope="session")
def app_checkpoints(tmp_path_factory, app_indexes) -> Path:
    """The trained checkpoints the committed indexes were built with, and no others, so the
    launched app's retrievers match its indexes even while someone retrains a head."""
    import json

    from ciea.checkpoints import sha256_of

    wanted = {json.loads(m.read_text())["checkpoint_sha256"] for m in app_indexes.glob("*/*/manifest.json")}
    root = tmp_path_factory.mktemp("app-checkpoints")
    for weights in Settings().checkpoints_dir.glob("*/*.safetensors"):
        if sha256_of(weights) in wanted:
            (root / weights.parent.name).mkdir(exist_ok=True)
            for f in (weights, weights.with_suffix(".json")):
                if f.exists():
                    (root / weights.parent.name / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, app_indexes, app_checkpoints):
    """``python app.py`` launched once per session, as a newcomer runs it, on ``app_indexes``."""
    from benchmarks.soak import launch_app

    work = tmp_path_factory.mktemp("app")
    env = {"CIEA_INDEX_DIR": str(app_indexes), "CIEA_CHECKPOINT_DIR": str(app_checkpoints),
           "GRADIO_EXAMPLES_CACHE": str(work / "examples")}
    try:
        with launch_app(work / "app.log", APP_STARTUP_TIMEOUT_S, env) as app:
            yield app.url
    except RuntimeError as exc:  # the app exited or never answered: its log is in the message
        pytest.fail(str(exc))
