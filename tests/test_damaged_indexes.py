"""Damaged artefacts: one broken index disables only its retriever, with a visible notice and the
rebuild command; the CLI exits 3 with that command on stderr."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from ciea import cli
from ciea.config import ASSETS_ENV, INDEXES_ENV
from ciea.index import IDS_FILE, INDEX_FILE, MANIFEST_FILE
from ciea.service import SearchService
from ciea.validation import InputError

BROKEN = "dual-split"
HEALTHY = ["text-dense", "dual-fused"]
REBUILD = f"python -m ciea build --corpus tiny --retriever {BROKEN} --backbone bundled"


def _edit_manifest(folder: Path, **changes) -> None:
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


DAMAGE = {
    "index file deleted": (lambda f: (f / INDEX_FILE).unlink(), "is missing index.faiss"),
    "manifest deleted": (lambda f: (f / MANIFEST_FILE).unlink(), "is missing manifest.json"),
    "index file truncated": (lambda f: _truncate(f / INDEX_FILE, 64), "damaged or truncated"),
    "index file cut in half": (lambda f: _truncate(f / INDEX_FILE, (f / INDEX_FILE).stat().st_size // 2),
                               "damaged or truncated"),
    "index file empty": (lambda f: _truncate(f / INDEX_FILE, 0), "damaged or truncated"),
    "index file is garbage": (lambda f: (f / INDEX_FILE).write_bytes(b"\x00garbage" * 100),
                              "damaged or truncated"),
    "manifest dim changed": (lambda f: _edit_manifest(f, dim=999), "dim: index has 999"),
    "manifest backbone changed": (lambda f: _edit_manifest(f, backbone="open_clip:ViT-B-32:none"),
                                  "backbone: index has 'open_clip:ViT-B-32:none'"),
    "manifest count changed": (lambda f: _edit_manifest(f, count=5), "manifest says 5 x"),
    "manifest not JSON": (lambda f: (f / MANIFEST_FILE).write_text("{not json", encoding="utf-8"),
                          "damaged manifest or ids"),
    "manifest has unknown fields": (lambda f: _edit_manifest(f, evil="x"), "damaged manifest or ids"),
    "ids not JSON": (lambda f: _truncate(f / IDS_FILE, 10), "damaged manifest or ids"),
    "ids of the wrong length": (lambda f: (f / IDS_FILE).write_text('["a", "b"]', encoding="utf-8"),
                                "vectors but 2 ids"),
}


@pytest.fixture
def copy_of_indexes(tiny_built, tmp_path):
    """``tiny_built``'s settings pointing at a private copy of its indexes (safe to damage)."""
    indexes = tmp_path / "indexes"
    shutil.copytree(tiny_built.indexes_dir, indexes)
    return dataclasses.replace(tiny_built, indexes_dir=indexes)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_one_damaged_index_disables_only_its_retriever(copy_of_indexes, damage):
    break_it, reason = DAMAGE[damage]
    break_it(copy_of_indexes.index_dir("tiny", BROKEN))
    service = SearchService(copy_of_indexes)

    ready = service.retrievers("tiny")
    assert BROKEN not in ready and set(HEALTHY) <= set(ready)
    why = service.unavailable("tiny")[BROKEN]
    assert reason in why and REBUILD in why

    response = service.search("a red ball", "tiny", [HEALTHY[0], BROKEN, HEALTHY[1]], 2)
    assert list(response.results) == HEALTHY  # the others keep answering, in the order asked
    assert all(rows[0].doc_id == "shapes/red-circle.png" for rows in response.results.values())
    notice = next(n for n in response.notices if n.startswith(f"{BROKEN} is unavailable"))
    assert REBUILD in notice


@pytest.fixture
def all_damaged(copy_of_indexes) -> SearchService:
    """Every index built for tiny (whichever retrievers the build made) loses its FAISS file."""
    built = sorted((copy_of_indexes.indexes_dir / "tiny").glob(f"*/{INDEX_FILE}"))
    assert {p.parent.name for p in built} >= set(HEALTHY + [BROKEN])
    for path in built:
        path.unlink()
    return SearchService(copy_of_indexes)


def test_with_every_index_damaged_each_requested_one_gets_its_rebuild_command(all_damaged):
    assert all_damaged.retrievers("tiny") == []
    response = all_damaged.search("a red ball", "tiny", HEALTHY, 2)
    assert response.results == {}
    for name in HEALTHY:
        assert any(n.startswith(f"{name} is unavailable") and
                   f"python -m ciea build --corpus tiny --retriever {name}" in n for n in response.notices)


def test_with_every_index_damaged_all_available_is_not_blamed_on_the_user(all_damaged):
    """retrievers=None means "every available one": with none available, say so and how to rebuild,
    not "Select at least one retriever" (the user selected nothing wrong)."""
    with pytest.raises(InputError) as info:
        all_damaged.search("a red ball", "tiny", None, 2)
    assert "Select at least one retriever" not in str(info.value)
    assert "python -m ciea build --corpus tiny" in str(info.value)


@pytest.fixture
def cli_env(copy_of_indexes, monkeypatch, tmp_path):
    """Run ``ciea.cli.main`` in-process on the copied indexes; returns a queries file."""
    monkeypatch.setenv(ASSETS_ENV, str(copy_of_indexes.assets_dir))
    monkeypatch.setenv(INDEXES_ENV, str(copy_of_indexes.indexes_dir))
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"qid": "q1", "text": "a red ball"}\n', encoding="utf-8")
    return copy_of_indexes, queries


@pytest.mark.parametrize("damage", ["index file truncated", "manifest dim changed", "index file deleted"])
def test_cli_search_exits_3_with_the_rebuild_command(cli_env, capsys, tmp_path, damage):
    settings, queries = cli_env
    DAMAGE[damage][0](settings.index_dir("tiny", BROKEN))
    out = tmp_path / "run.json"
    code = cli.main(["search", "--corpus", "tiny", "--retriever", BROKEN, "--k", "2", "--backbone", "bundled",
                     "--queries", str(queries), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ARTEFACT == 3
    assert REBUILD in err and "Traceback" not in err and not out.exists()

    # a healthy retriever on the same damaged folder still answers
    code = cli.main(["search", "--corpus", "tiny", "--retriever", "text-dense", "--k", "2", "--backbone",
                     "bundled", "--queries", str(queries), "--out", str(out)])
    assert code == 0
    assert next(iter(json.loads(out.read_text(encoding="utf-8"))["q1"])) == "shapes/red-circle.png"


def test_cli_retrievers_lists_the_healthy_ones_and_warns_about_the_broken_one(cli_env, capsys):
    settings, _ = cli_env
    DAMAGE["index file truncated"][0](settings.index_dir("tiny", BROKEN))
    code = cli.main(["retrievers", "--corpus", "tiny", "--backbone", "bundled"])
    captured = capsys.readouterr()
    names = json.loads(captured.out)
    assert code == 0 and BROKEN not in names and set(HEALTHY) <= set(names)
    assert f"{BROKEN} unavailable" in captured.err and REBUILD in captured.err
