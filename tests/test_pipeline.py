"""The whole offline pipeline on a random-weight open_clip backbone over the tiny corpus:
train every head, build every index with geometry, list, search, measure, evaluate: a user with
network rebuilds the whole demo on real CLIP with these same commands."""

from __future__ import annotations

import json

import pytest

from ciea.cli import main
from ciea.retrievers import REGISTRY, TRAINABLE

from conftest import RANDOM_CLIP

pytestmark = pytest.mark.slow


@pytest.fixture
def pipeline_env(tiny_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("CIEA_ASSETS_DIR", str(tiny_settings.assets_dir))
    monkeypatch.setenv("CIEA_INDEX_DIR", str(tmp_path / "indexes"))
    monkeypatch.setenv("CIEA_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("CIEA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def run(capsys, *argv: str) -> object:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_random_clip_pipeline_end_to_end(pipeline_env, capsys, random_clip):
    common = ("--backbone", RANDOM_CLIP)
    trained = run(capsys, "train", *common, "--corpus", "tiny", "--epochs", "2", "--batch-size", "6",
                  "--pairs-per-epoch", "6")
    assert [t["retriever"] for t in trained] == list(TRAINABLE)
    for t in trained:
        assert len(t["sha256"]) == 64 and len(t["history"]) >= 2

    built = run(capsys, "build", *common, "--corpus", "tiny", "--no-geometry")  # geometry: ciea only, below
    assert sorted(b["retriever"] for b in built) == sorted(REGISTRY)
    manifest = json.loads((pipeline_env / "indexes" / "tiny" / "ciea" / "manifest.json").read_text())
    assert manifest["checkpoint_sha256"] == next(t["sha256"] for t in trained if t["retriever"] == "ciea")
    assert manifest["backbone"] == RANDOM_CLIP

    assert run(capsys, "retrievers", *common, "--corpus", "tiny") == list(REGISTRY)

    assert not (pipeline_env / "indexes" / "tiny" / "ciea" / "geometry.json").exists()
    geometry = run(capsys, "geometry", *common, "--corpus", "tiny", "--retriever", "ciea")  # computed and saved
    assert geometry["wasserstein2"]["n"] == 6 and geometry["wasserstein2"]["converged"]
    assert 0.0 <= geometry["centroid_gap"] <= 2.0 and geometry["sliced_wasserstein"]["distance"] >= 0
    assert {row["factor"] for row in geometry["gap_shift"]} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert (pipeline_env / "indexes" / "tiny" / "ciea" / "umap.safetensors").is_file()
    assert run(capsys, "geometry", *common, "--corpus", "tiny", "--retriever", "ciea") == geometry  # loaded

    report = run(capsys, "eval", *common, "--corpus", "tiny", "--split", "captions")
    assert set(REGISTRY) <= set(report["metrics"])
    # text-dense ranks each caption's own document first: the captions are distinct
    assert report["metrics"]["text-dense"]["all"]["recall@1"] == 1.0
