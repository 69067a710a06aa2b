"""The command-line contracts (docs/contracts.md), on the shipped stamps and scenes indexes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ciea.data.schema import load_corpus


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ciea", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_retrievers_prints_a_json_list(repo_root):
    out = run_cli("retrievers", "--corpus", "stamps", cwd=repo_root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["text-dense", "dual-split", "dual-fused", "dual-gcl", "ciea"]


def test_search_writes_a_valid_run_with_stamp_ids(repo_root, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"qid": "q1", "text": "An elephant."}\n{"qid": "q2", "text": "a fire truck"}\n'
                       '{"qid": "q3", "text": "🍕 <b>pizza</b>"}\n', encoding="utf-8")
    out_file = tmp_path / "runs" / "run.json"
    out = run_cli("search", "--corpus", "stamps", "--retriever", "text-dense", "--k", "10",
                  "--queries", str(queries), "--out", str(out_file), cwd=repo_root)
    assert out.returncode == 0, out.stderr
    run = json.loads(out_file.read_text(encoding="utf-8"))
    ids = {d.doc_id for d in load_corpus("stamps", repo_root / "assets")}
    assert set(run) == {"q1", "q2", "q3"}
    for qid, docs in run.items():
        assert len(docs) == 10 and set(docs) <= ids
        scores = list(docs.values())
        assert scores == sorted(scores, reverse=True)
    assert next(iter(run["q1"])) == "animals/mammals/elephant.png"


def test_errors_exit_non_zero_with_a_message(repo_root, tmp_path):
    out = run_cli("retrievers", "--corpus", "nope", cwd=repo_root)
    assert out.returncode == 2 and "Unknown corpus 'nope'" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "q1"}\n')
    out = run_cli("search", "--corpus", "stamps", "--retriever", "text-dense", "--k", "5",
                  "--queries", str(bad), "--out", str(tmp_path / "r.json"), cwd=repo_root)
    assert out.returncode == 2 and '"qid" and "text"' in out.stderr


def test_search_with_a_mismatched_index_names_the_rebuild_command(repo_root, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"qid": "q1", "text": "a cat"}\n')
    out = run_cli("search", "--corpus", "stamps", "--retriever", "dual-fused", "--k", "5",
                  "--backbone", "open_clip:ViT-B-32:none", "--queries", str(queries),
                  "--out", str(tmp_path / "r.json"), cwd=repo_root)
    assert out.returncode == 3
    assert "python -m ciea build --corpus stamps --retriever dual-fused" in out.stderr


@pytest.mark.slow
def test_eval_prints_metrics_per_retriever_and_kind_for_scenes(repo_root, tmp_path):
    import os
    import shutil

    runs = []
    for threads in ("1", "2"):  # the same indexes give the same bytes whatever the thread count
        indexes = tmp_path / f"indexes-{threads}"  # a copy each: the two run side by side
        shutil.copytree(repo_root / "indexes" / "scenes", indexes / "scenes")
        runs.append((indexes, subprocess.Popen(
            [sys.executable, "-m", "ciea", "eval", "--corpus", "scenes", "--split", "test", "--retriever",
             "text-dense"], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "CIEA_INDEX_DIR": str(indexes), "CIEA_THREADS": threads})))
    written = []
    for indexes, proc in runs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        written.append(((indexes / "scenes" / "eval_test.json").read_bytes(), stdout))
    assert written[0] == written[1]
    report = json.loads(stdout)
    shipped = json.loads((repo_root / "indexes" / "scenes" / "eval_test.json").read_text())["metrics"]
    assert list(report["metrics"]) == list(shipped)  # --retriever text-dense updates text-dense only
    assert {n: m for n, m in report["metrics"].items() if n != "text-dense"} == \
        {n: m for n, m in shipped.items() if n != "text-dense"}
    assert report["queries"] >= 1000
    by_kind = report["metrics"]["text-dense"]
    assert set(by_kind) == {"all", "caption", "complementary", "image-only", "binding", "spatial", "count", "unseen"}
    # Captions name the primary, so caption-answerable queries are easy and image-only ones are not.
    assert by_kind["caption"]["mrr@10"] > 0.9 > 0.2 > by_kind["image-only"]["mrr@10"]
    assert json.loads((indexes / "scenes" / "eval_test.json").read_text())["metrics"] == report["metrics"]


@pytest.mark.slow
def test_eval_of_one_retriever_keeps_the_others_in_the_saved_report(tiny_built, tmp_path, monkeypatch, capsys):
    import shutil

    from ciea.cli import main

    indexes = tmp_path / "indexes"
    shutil.copytree(tiny_built.indexes_dir / "tiny", indexes / "tiny")
    for name, value in (("CIEA_ASSETS_DIR", tiny_built.assets_dir), ("CIEA_INDEX_DIR", indexes),
                        ("CIEA_CACHE_DIR", tiny_built.cache_dir)):
        monkeypatch.setenv(name, str(value))
    saved_file = indexes / "tiny" / "eval_captions.json"
    other = {"all": {"mrr@10": 0.125}}
    saved = {"corpus": "tiny", "split": "captions", "queries": 6, "backbone": "bundled",
             "metrics": {"dual-fused": other, "text-dense": {"all": {"mrr@10": 0.0}}, "ciea": other}}
    saved_file.write_text(json.dumps(saved))

    assert main(["eval", "--corpus", "tiny", "--split", "captions", "--retriever", "text-dense"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(saved_file.read_text())
    assert printed == written
    assert list(written["metrics"]) == ["dual-fused", "text-dense", "ciea"]
    assert written["metrics"]["dual-fused"] == written["metrics"]["ciea"] == other
    assert written["metrics"]["text-dense"]["all"]["recall@1"] == 1.0  # distinct captions find their own

    # A report of another backbone is not mixed with this one's: it is replaced, with a warning.
    saved_file.write_text(json.dumps({**saved, "backbone": "open_clip:ViT-B-32:none"}))
    assert main(["eval", "--corpus", "tiny", "--split", "captions", "--retriever", "text-dense"]) == 0
    captured = capsys.readouterr()
    assert "replacing it" in captured.err
    assert list(json.loads(saved_file.read_text())["metrics"]) == ["text-dense"]


def test_train_ciea_options_are_merged_into_the_schedule_not_replacing_it(monkeypatch, capsys):
    """`--ciea adapter_rank=8` adds to the shipped head options (3 x 3 patch tokens stay)."""
    import ciea.backbones
    import ciea.train
    from ciea.cli import main

    seen = []

    def fake_train(name, settings, config, data=None, corpora=()):
        seen.append(config)
        checkpoint = type("C", (), {"path": "x", "sha256": "y"})()
        return ciea.train.TrainResult(name, checkpoint, 1, 0.5, [], 1.0)

    monkeypatch.setattr(ciea.backbones, "load_backbone", lambda spec, **kw: None)
    monkeypatch.setattr(ciea.train, "load_training_data", lambda *a, **kw: (None, []))
    monkeypatch.setattr(ciea.train, "train_retriever", fake_train)
    assert main(["train", "--retriever", "ciea", "--ciea", "adapter_rank=8", "--max-minutes", "1"]) == 0
    assert seen[0].ciea == {**ciea.train.SCHEDULES["ciea"]["ciea"], "adapter_rank": 8}
    assert seen[0].max_minutes == 1 and json.loads(capsys.readouterr().out)[0]["retriever"] == "ciea"
