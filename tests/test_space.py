"""Hosting on Hugging Face Spaces: settings and documentation agree with the code, the upload
set is exactly what the app needs (and runs on its own), binary files are LFS-tracked, and the
ZeroGPU import order holds. Nothing here uploads anything: the Hub client is a fake."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import quote

import gradio
import pytest
from PIL import Image

from ciea.config import Settings, backbone_slug
from ciea.space import SPACE_FILES, space_files, space_variables
from ciea.validation import InputError

ROOT = Path(__file__).resolve().parent.parent
#: Generous on purpose: these tests check behaviour, not speed, and a low-priority start on a
#: 2-core machine next to a training job has taken over 4 minutes.
SUBPROCESS_TIMEOUT_S = 600


def front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in block.strip().splitlines())


def test_readme_front_matter_matches_space_yaml_and_installed_gradio():
    space = dict(line.split(": ", 1) for line in (ROOT / "Space.yaml").read_text(encoding="utf-8").splitlines()
                 if line and not line.startswith("#"))
    assert front_matter() == space
    assert space["sdk_version"] == gradio.__version__
    assert space["app_file"] == "app.py" and (ROOT / space["app_file"]).is_file()


def test_every_api_name_in_the_app_is_documented():
    names = set(re.findall(r'api_name="([^"]+)"', (ROOT / "app.py").read_text(encoding="utf-8")))
    assert "search" in names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"`/{name}`" in readme for name in names)


def test_requirements_are_pinned():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines and all("==" in l for l in lines)


def requirement_names(path: Path) -> list[str]:
    return [l.split("==")[0].strip().lower() for l in path.read_text().splitlines()
            if l.strip() and not l.startswith("#")]


def test_browser_only_packages_stay_out_of_the_space_install():
    dev = ROOT / "requirements-dev.txt"
    lines = [l.strip() for l in dev.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines and all("==" in l for l in lines)
    assert "playwright" in requirement_names(dev) and "playwright" not in requirement_names(ROOT / "requirements.txt")
    assert not set(requirement_names(dev)) & set(requirement_names(ROOT / "requirements.txt"))
    assert "pytest" in requirement_names(ROOT / "requirements.txt")  # the README's test command
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"pip install .*-r requirements\.txt .*-r requirements-dev\.txt", ci)
    assert "requirements-dev.txt" in (ROOT / "README.md").read_text(encoding="utf-8")


# -- the upload set --------------------------------------------------------------------------------

def git(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, input=stdin, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def listed() -> list[str]:
    """``python -m ciea space-files`` for this checkout, as a newcomer runs it."""
    out = subprocess.run([sys.executable, "-m", "ciea", "space-files"], cwd=ROOT, capture_output=True,
                         text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_space_files_lists_what_the_app_needs_and_nothing_else(listed):
    from ciea.config import TRAINING_ONLY_CORPORA
    from ciea.data.schema import available_corpora

    assert listed == sorted(set(listed)) and all(p and not p.startswith("/") for p in listed)
    assert all((ROOT / p).is_file() for p in listed)
    assert set(SPACE_FILES) <= set(listed) and "ciea/space.py" in listed and "ciea/ui/zerogpu.py" in listed
    corpora = available_corpora(ROOT / "assets")
    assert {"stamps", "scenes"} <= set(corpora)
    for corpus in corpora:
        assert f"assets/{corpus}/corpus.jsonl" in listed
        if (ROOT / "indexes" / corpus).is_dir():
            assert any(p.startswith(f"indexes/{corpus}/") and p.endswith("/index.faiss") for p in listed)
    assert {"assets/stamps/COPYING", "assets/stamps/ATTRIBUTION.md"} <= set(listed)
    # the checkpoints of the backbone and retriever each index was built with, and no others
    manifests = [json.loads((ROOT / p).read_text()) for p in listed if p.endswith("/manifest.json")]
    built_with = {f"indexes/checkpoints/{backbone_slug(m['backbone'])}/{m['retriever']}" for m in manifests}
    weights = [p for p in listed if p.startswith("indexes/checkpoints/")]
    assert weights and {p.rsplit(".", 1)[0] for p in weights} <= built_with
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "indexes" / "checkpoints").rglob("*.safetensors")}
    assert {f"{stem}.safetensors" for stem in built_with} & on_disk <= set(weights)
    shipped = {"tests/", "benchmarks/", ".ci/", ".cache/", ".git/", "test-artifacts/", ".gradio/"}
    assert not [p for p in listed if any(p.startswith(s) for s in shipped)]
    assert not [p for p in listed if "__pycache__" in p or p.endswith(".pyc") or "/render/" in p]
    assert not [p for p in listed if p.split("/")[1:2] and p.split("/")[1] in TRAINING_ONLY_CORPORA]


def test_space_files_take_every_tracked_file_they_cover_and_no_ignored_one(listed):
    """On a clean checkout the set is the tracked files under the app's folders: none is
    missed, and nothing git ignores (caches, rendered scenes) slips in from a working copy."""
    from ciea.data.schema import available_corpora

    roots = ["ciea/"] + [f"{d}/{c}/" for c in available_corpora(ROOT / "assets") for d in ("assets", "indexes")]
    tracked = [p for p in git("ls-files").splitlines()
               if any(p.startswith(r) for r in roots) or p in SPACE_FILES]
    assert tracked and not set(tracked) - set(listed)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(listed),
                             capture_output=True, text=True).stdout.split()
    assert ignored == []


def make_project(root: Path) -> None:
    """A small project tree with every kind of file the rules must take or leave."""
    files = {
        **{name: "x" for name in SPACE_FILES},
        "ciea/__init__.py": "", "ciea/ui/app_part.py": "", "ciea/__pycache__/x.cpython-311.pyc": "",
        "ciea/stray.pyc": "", "tests/test_x.py": "", "benchmarks/run.py": "", ".ci/run": "",
        ".cache/features/a.safetensors": "", "notes.txt": "",
        "assets/LICENSES.md": "licences",
        "assets/pics/corpus.jsonl": "{}\n", "assets/pics/COPYING": "GPL", "assets/pics/thumbs/a.webp": "w",
        "assets/pics/.pytest_cache/x": "",
        "assets/scenes/corpus.jsonl": "{}\n", "assets/scenes/layouts.jsonl": "{}\n",
        "assets/scenes/render/s1.png": "p",
        "assets/pics-train/corpus.jsonl": "{}\n", "assets/pics-train/thumbs/b.webp": "w",
        "assets/not-a-corpus/readme.txt": "",
        "indexes/pics/dual/index.faiss": "f", "indexes/pics/eval_test.json": "{}",
        "indexes/pics/dual/manifest.json": json.dumps({"backbone": "bundled", "retriever": "dual"}),
        "indexes/pics/broken/manifest.json": "not json",
        "indexes/pics-train/dual/index.faiss": "f",
        "indexes/gone/dual/index.faiss": "f",
        "indexes/checkpoints/bundled/dual.safetensors": "w", "indexes/checkpoints/bundled/dual.json": "{}",
        "indexes/checkpoints/bundled/other.safetensors": "w",
        "indexes/checkpoints/open_clip-ViT-B-32-none/dual.safetensors": "w",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def project_settings(root: Path, **changes) -> Settings:
    base = Settings(backbone="bundled", assets_dir=root / "assets", indexes_dir=root / "indexes",
                    checkpoints_dir=root / "indexes" / "checkpoints", cache_dir=root / ".cache")
    return dataclasses.replace(base, **changes)


def test_space_files_rules_on_a_made_up_project(tmp_path, monkeypatch):
    monkeypatch.setattr("ciea.config.TRAINING_ONLY_CORPORA", frozenset({"pics-train"}))
    make_project(tmp_path)
    assert space_files(tmp_path, project_settings(tmp_path)) == sorted([
        *SPACE_FILES, "ciea/__init__.py", "ciea/ui/app_part.py", "assets/LICENSES.md",
        "assets/pics/corpus.jsonl", "assets/pics/COPYING", "assets/pics/thumbs/a.webp",
        "assets/scenes/corpus.jsonl", "assets/scenes/layouts.jsonl",
        "indexes/pics/dual/index.faiss", "indexes/pics/dual/manifest.json", "indexes/pics/eval_test.json",
        "indexes/pics/broken/manifest.json",
        "indexes/checkpoints/bundled/dual.safetensors", "indexes/checkpoints/bundled/dual.json"])
    # other folders inside the project (e.g. CLIP indexes) are taken as Settings names them
    clip = tmp_path / "indexes-clip"
    (clip / "pics" / "dual").mkdir(parents=True)
    (clip / "pics" / "dual" / "manifest.json").write_text(json.dumps({"backbone": "open_clip:ViT-B-32:none",
                                                                      "retriever": "dual"}))
    (clip / "checkpoints" / "open_clip-ViT-B-32-none").mkdir(parents=True)
    (clip / "checkpoints" / "open_clip-ViT-B-32-none" / "dual.safetensors").write_text("w")
    settings = project_settings(tmp_path, backbone="open_clip:ViT-B-32:none", indexes_dir=clip,
                                checkpoints_dir=clip / "checkpoints")
    files = space_files(tmp_path, settings)
    assert "indexes-clip/pics/dual/manifest.json" in files
    assert "indexes-clip/checkpoints/open_clip-ViT-B-32-none/dual.safetensors" in files
    assert not [f for f in files if f.startswith("indexes/")]
    assert space_variables(tmp_path, settings) == {
        "CIEA_BACKBONE": "open_clip:ViT-B-32:none", "CIEA_ASSETS_DIR": None, "CIEA_INDEX_DIR": "indexes-clip",
        "CIEA_CHECKPOINT_DIR": "indexes-clip/checkpoints"}
    assert set(space_variables(tmp_path, project_settings(tmp_path)).values()) == {None}
    with pytest.raises(InputError, match="outside the project folder"):
        space_files(tmp_path, project_settings(tmp_path, indexes_dir=tmp_path.parent / "elsewhere"))
    (tmp_path / "Space.yaml").unlink()
    with pytest.raises(InputError, match="Missing Space file.*Space.yaml"):
        space_files(tmp_path, project_settings(tmp_path))


class FakeHub:
    """Records what ``HfApi`` is asked to do; uploads nothing."""

    calls: list = []
    variables: dict = {}
    fail_upload: Exception | None = None

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/spaces/{repo_id}"

    def upload_folder(self, **kwargs):
        if self.fail_upload:
            raise self.fail_upload
        self.calls.append(("upload_folder", kwargs))

    def get_space_variables(self, repo_id, **kwargs):
        return dict(self.variables)

    def add_space_variable(self, repo_id, key, value, **kwargs):
        self.calls.append(("add_space_variable", key, value))

    def delete_space_variable(self, repo_id, key, **kwargs):
        self.calls.append(("delete_space_variable", key))


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_not_a_real_token")
    monkeypatch.setattr(FakeHub, "calls", [])
    monkeypatch.setattr(FakeHub, "variables", {"CIEA_BACKBONE": "open_clip:ViT-B-32:laion2b_s34b_b79k"})
    monkeypatch.setattr(FakeHub, "fail_upload", None)
    for key in ("CIEA_BACKBONE", "CIEA_ASSETS_DIR", "CIEA_INDEX_DIR", "CIEA_CHECKPOINT_DIR"):
        monkeypatch.delenv(key, raising=False)
    return FakeHub


def test_deploy_space_uploads_exactly_the_listed_files(fake_hub, capsys):
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    from ciea.cli import main

    assert main(["deploy-space", "someone/ciea-explorer"]) == 0
    out = capsys.readouterr().out
    (_, repo_id, create), (_, upload), *variables = fake_hub.calls
    assert repo_id == "someone/ciea-explorer"
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio" and create["exist_ok"] is True
    assert upload["repo_id"] == "someone/ciea-explorer" and upload["repo_type"] == "space"
    root = Path(upload["folder_path"])
    assert root == ROOT
    # what huggingface_hub's upload_folder takes from the folder with these patterns
    every_file = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                        if p.is_file() and ".git" not in p.relative_to(root).parts[:1])
    sent = list(filter_repo_objects(every_file, allow_patterns=upload["allow_patterns"],
                                    ignore_patterns=DEFAULT_IGNORE_PATTERNS))
    expected = space_files(ROOT)
    assert sent == expected
    assert upload["delete_patterns"] == "*"  # a snapshot: files no longer listed leave the Space
    # the offline default needs no variables; one left from an earlier CLIP upload is removed
    assert variables == [("delete_space_variable", "CIEA_BACKBONE")]
    assert f"Uploading {len(expected)} files" in out and "  app.py\n" in out
    assert "https://huggingface.co/spaces/someone/ciea-explorer" in out.splitlines()[-1]


def test_deploy_space_bad_input_gets_one_clear_line(fake_hub, capsys, monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    from ciea.cli import main

    for bad in ["no-owner", "a/b/c", "owner/na me", "../etc"]:
        assert main(["deploy-space", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "OWNER/NAME" in err and "Traceback" not in err
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["deploy-space", "someone/ciea-explorer"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    assert fake_hub.calls == []  # nothing was sent
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_not_a_real_token")
    response = httpx2.Response(403, request=httpx2.Request("POST", "https://huggingface.co/api/spaces"))
    fake_hub.fail_upload = HfHubHTTPError("403 Forbidden: you cannot write to this Space.\nmore", response=response)
    assert main(["deploy-space", "someone/ciea-explorer"]) == 1
    err = capsys.readouterr().err
    assert err == "error: the Hub refused the upload: 403 Forbidden: you cannot write to this Space.\n"


# -- LFS rules for anyone who pushes with git ------------------------------------------------------

#: Extensions that are binary whatever their first bytes say.
BINARY_EXTENSIONS = (".faiss", ".safetensors", ".webp", ".png", ".jpg", ".jpeg", ".gif", ".npy", ".npz", ".bin",
                     ".pt", ".pth", ".ttf", ".otf", ".woff", ".woff2", ".zip", ".gz", ".tar", ".onnx", ".parquet")
LFS_RULE = re.compile(r"^\S+ filter=lfs diff=lfs merge=lfs -text$")


def is_binary(path: Path) -> bool:
    with open(path, "rb") as fh:
        return path.suffix.lower() in BINARY_EXTENSIONS or b"\0" in fh.read(8192)


def test_gitattributes_store_every_binary_file_with_lfs(listed):
    rules = [l for l in (ROOT / ".gitattributes").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert rules and all(LFS_RULE.match(l) for l in rules), [l for l in rules if not LFS_RULE.match(l)]
    candidates = sorted(set(git("ls-files").splitlines()) | set(listed))
    binary = [p for p in candidates if (ROOT / p).is_file() and is_binary(ROOT / p)]
    assert {Path(p).suffix for p in binary} >= {".faiss", ".safetensors", ".webp"}
    # git's own matcher decides which rule applies to each path
    out = git("check-attr", "filter", "--stdin", stdin="\n".join(binary) + "\n")
    filters = dict(line.rsplit(": filter: ", 1) for line in out.splitlines())
    assert not [p for p in binary if filters.get(p) != "lfs"]
    # and text stays text
    text = git("check-attr", "filter", "--stdin", stdin="app.py\nREADME.md\nassets/stamps/corpus.jsonl\n")
    assert "lfs" not in text


# -- the upload set runs on its own ----------------------------------------------------------------

ELEPHANT = "animals/mammals/elephant.png"


def test_uploaded_files_alone_serve_text_and_image_search(listed, tmp_path):
    """Exactly the listed files in an empty folder, started as a Space starts them."""
    from gradio_client import Client, handle_file

    from benchmarks.soak import launch_app
    from ciea.retrievers import REGISTRY

    space = tmp_path / "space"
    for rel in listed:
        (space / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, space / rel)
    env = {"GRADIO_EXAMPLES_CACHE": str(tmp_path / "examples")}
    try:
        with launch_app(tmp_path / "app.log", SUBPROCESS_TIMEOUT_S, env, cwd=space) as app:
            client = Client(app.url, verbose=False)
            # every retriever whose index was uploaded answers
            names = sorted({p.split("/")[2] for p in listed if p.startswith("indexes/stamps/")
                            and p.endswith("/index.faiss")})
            assert names and set(names) <= set(REGISTRY)
            html, data = client.predict("an elephant", "stamps", names, 5, api_name="/search")
            assert "error" not in data, data
            assert sorted(data["results"]) == names, data["notices"]  # every retriever is servable
            assert all(ELEPHANT in [r["doc_id"] for r in rows] for rows in data["results"].values())
            assert "/gradio_api/file=" + quote(str(space.resolve())) in html  # served from the copy
            html, data = client.predict(handle_file(str(space / "assets/stamps/thumbs" / f"{ELEPHANT}.webp")),
                                        "stamps", ["dual-fused", "ciea"], 5, api_name="/search_by_image")
            assert data["mode"] == "image" and data["results"]["dual-fused"][0]["doc_id"] == ELEPHANT
            # scenes are stored as layouts only: their images are rendered on demand in the copy
            html, data = client.predict("a bicycle", "scenes", ["text-dense"], 3, api_name="/search")
            assert len(data["results"]["text-dense"]) == 3 and html.count('class="ciea-card"') == 3
            src = re.search(r'src="(/gradio_api/file=[^"]+)"', html).group(1)
            with urllib.request.urlopen(app.url.rstrip("/") + src.replace("&amp;", "&"), timeout=30) as resp:
                assert resp.status == 200 and Image.open(io.BytesIO(resp.read())).size[0] > 0
            client.close()
    except RuntimeError as exc:  # the app exited or never answered: its log is in the message
        pytest.fail(str(exc))


# -- ZeroGPU: `spaces` before torch, decorated events still answer on CPU ---------------------------

STUB_SPACES = '''
"""A stand-in for Hugging Face's `spaces` package: records the import order and GPU use."""
import functools
import sys

TORCH_IMPORTED_BEFORE = "torch" in sys.modules
GRADIO_IMPORTED_BEFORE = "gradio" in sys.modules
DECORATED = []
CALLS = []


def GPU(fn=None, *, duration=None):
    def wrap(f):
        @functools.wraps(f)
        def run(*args, **kwargs):
            CALLS.append(f.__name__)
            return f(*args, **kwargs)
        run.on_stub_gpu = duration
        DECORATED.append(f.__name__)
        return run
    return wrap(fn) if callable(fn) else wrap
'''

ZEROGPU_PROBE = '''
import json, sys
import app
import spaces
from ciea.config import Settings
from ciea.service import SearchService

demo = app.build_demo(SearchService(Settings()))
events = {f.api_name: f.fn for f in demo.fns.values()}
html, text = events["search"]("A red ball.", "tiny", ["text-dense", "dual-fused"], 3)
html, image = events["search_by_image"](sys.argv[1], "tiny", ["dual-fused"], 3)
print(json.dumps({"torch_before_spaces": spaces.TORCH_IMPORTED_BEFORE,
                  "gradio_before_spaces": spaces.GRADIO_IMPORTED_BEFORE, "torch_now": "torch" in sys.modules,
                  "on_gpu": sorted(n for n, fn in events.items() if hasattr(fn, "on_stub_gpu")),
                  "calls": spaces.CALLS, "text": text, "image": image}))
'''


def test_zerogpu_spaces_is_imported_before_torch_and_events_answer_on_cpu(tiny_built, tmp_path):
    import os

    stub = tmp_path / "stub"
    (stub / "spaces").mkdir(parents=True)
    (stub / "spaces" / "__init__.py").write_text(STUB_SPACES)
    env = dict(os.environ, PYTHONPATH=str(stub), CIEA_ASSETS_DIR=str(tiny_built.assets_dir),
               CIEA_INDEX_DIR=str(tiny_built.indexes_dir), CIEA_CHECKPOINT_DIR=str(tiny_built.checkpoints_dir),
               CIEA_BACKBONE="bundled", CUDA_VISIBLE_DEVICES="")
    image = tiny_built.assets_dir / "tiny" / "thumbs" / "shapes" / "red-circle.png.png"
    out = subprocess.run([sys.executable, "-c", ZEROGPU_PROBE, str(image)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["torch_before_spaces"] is False and report["torch_now"] is True
    # app.py imports it first itself: gradio happens to import `spaces` too, but that is its own
    # business and may change
    assert report["gradio_before_spaces"] is False
    assert {"search", "search_by_image", "document", "geometry", "drilldown"} <= set(report["on_gpu"])
    assert report["calls"][-2:] == ["search", "search_by_image"]
    assert report["text"]["results"]["text-dense"][0]["doc_id"] == "shapes/red-circle.png"
    assert len(report["image"]["results"]["dual-fused"]) == 3
