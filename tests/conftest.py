"""Shared fixtures: real backbones (loaded once), tiny corpora made on the fly."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ciea.backbones import load_backbone
from ciea.config import Settings
from ciea.data.schema import Corpus, Document

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
                               indexes_dir=root / "indexes")


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
