"""Safe loading: no pickle anywhere. Code is audited from its syntax tree; artefacts by their bytes.

Checkpoints are safetensors, metadata JSON, indexes FAISS's own format; nothing in the code may
unpickle (pickle, joblib, dill, np.load(allow_pickle=True), torch.load without weights_only=True),
evaluate strings as code, or hand a string to a shell.
"""

from __future__ import annotations

import ast
import json
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AUDITED = ["ciea", "app.py", "benchmarks"]
#: Modules whose only purpose is (un)pickling or running serialised code.
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal",
                     "pickletools"}
#: Attribute calls that unpickle whatever the receiver (pandas, numpy objects, Unpickler classes).
FORBIDDEN_ATTRIBUTES = {"read_pickle", "to_pickle", "Unpickler", "unsafe_load", "full_load"}
#: Suffixes an artefact may have under indexes/ (FAISS, JSON, safetensors).
ARTEFACT_SUFFIXES = {".faiss", ".json", ".safetensors"}
#: Tracked file suffixes that are pickle-based formats (or usually are).
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".npy", ".npz", ".bin", ".sav"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _dotted(node: ast.AST) -> str:
    """``np.load`` -> "np.load"; anything not a plain dotted name -> ""."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def audit_source(source: str, path: str = "<src>") -> list[Finding]:
    """Every unsafe-loading or code-execution construct in one Python source."""
    tree = ast.parse(source, filename=path)
    numpy_names, torch_names, yaml_names = {"numpy"}, {"torch"}, {"yaml"}
    found: list[Finding] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(Finding(path, getattr(node, "lineno", 0), what))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in FORBIDDEN_MODULES:
                    flag(node, f"imports {alias.name}")
                for module, names in (("numpy", numpy_names), ("torch", torch_names), ("yaml", yaml_names)):
                    if alias.name == module:
                        names.add(alias.asname or module)
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in FORBIDDEN_MODULES:
                flag(node, f"imports from {node.module}")
            for alias in node.names:
                if module in ("numpy", "torch", "yaml") and alias.name in ("load", "unsafe_load"):
                    flag(node, f"imports {module}.{alias.name} by bare name (call it qualified so it is audited)")
                if alias.name in FORBIDDEN_ATTRIBUTES:
                    flag(node, f"imports {alias.name}")

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
                flag(node, f"uses .{node.attr}")
            continue
        name = _dotted(node.func)
        head, _, attr = name.rpartition(".")
        if name in ("eval", "exec", "compile", "__import__"):
            flag(node, f"calls {name}()")
        elif attr == "load" and head in numpy_names:
            allow = _keyword(node, "allow_pickle")
            if allow is not None and not _is_const(allow, False):
                flag(node, "np.load with allow_pickle")
        elif attr == "load" and head in torch_names:
            if not _is_const(_keyword(node, "weights_only"), True):
                flag(node, "torch.load without weights_only=True")
        elif attr == "load" and head in yaml_names:
            flag(node, "yaml.load (use yaml.safe_load)")
        shell = _keyword(node, "shell")
        if shell is not None and not _is_const(shell, False):
            flag(node, f"{name or 'call'} with shell=True")
        if name in ("os.system", "os.popen"):
            flag(node, f"calls {name}")
    return found


def audited_files() -> list[Path]:
    files = []
    for entry in AUDITED:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return files


# -- the auditor itself catches what it should ---------------------------------------------
@pytest.mark.parametrize("source", [
    "import pickle",
    "import joblib as jl",
    "from dill import loads",
    "import cloudpickle",
    "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
    "import numpy\nnumpy.load('x.npy', allow_pickle=flag)",
    "import torch\ntorch.load('w.pt')",
    "import torch as T\nT.load('w.pt', map_location='cpu')",
    "import torch\ntorch.load('w.pt', weights_only=False)",
    "from torch import load",
    "import pandas as pd\npd.read_pickle('x')",
    "import yaml\nyaml.load(open('c.yaml'))",
    "eval(user_text)",
    "exec(code)",
    "import subprocess\nsubprocess.run(cmd, shell=True)",
    "import os\nos.system('ls')",
])
def test_the_auditor_flags_unsafe_code(source):
    assert audit_source(source), source


@pytest.mark.parametrize("source", [
    "import numpy as np\nnp.load('x.npy')",
    "import numpy as np\nnp.load('x.npy', allow_pickle=False)",
    "import torch\ntorch.load('w.pt', map_location='cpu', weights_only=True)",
    "from safetensors.torch import load_file\nload_file('w.safetensors')",
    "import json\njson.load(open('m.json'))",
    "import faiss\nfaiss.read_index('index.faiss')",
    "import subprocess, sys\nsubprocess.run([sys.executable, 'app.py'])",
    "model.eval()",
    "import yaml\nyaml.safe_load(text)",
])
def test_the_auditor_accepts_safe_code(source):
    assert audit_source(source) == []


# -- the project ---------------------------------------------------------------------------
def test_the_audit_covers_the_package_and_the_app():
    names = {p.relative_to(ROOT).as_posix() for p in audited_files()}
    assert {"app.py", "ciea/index.py", "ciea/service.py", "ciea/images.py"} <= names


def test_no_code_unpickles_or_executes_strings():
    findings = [f for path in audited_files()
                for f in audit_source(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())]
    assert findings == [], "\n".join(map(str, findings))


def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60, check=True)
    return [ROOT / name for name in out.stdout.decode("utf-8").split("\0") if name]


def _looks_pickled(path: Path) -> bool:
    """Pickle protocol 2+ starts with 0x80 and the protocol byte; torch.save zips hold data.pkl."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head == b"PK\x03\x04":
        import zipfile

        with zipfile.ZipFile(path) as zf:
            return any(n.endswith(".pkl") for n in zf.namelist())
    return False


def test_no_tracked_file_is_a_pickle():
    files = [p for p in _tracked_files() if p.is_file()]
    assert len(files) > 100
    assert [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES] == []
    assert [p for p in files if _looks_pickled(p)] == []


def check_artefact_folder(root: Path) -> int:
    """Assert every artefact under ``root`` is FAISS, JSON or safetensors, and parses as such."""
    count = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        assert path.suffix in ARTEFACT_SUFFIXES, f"unexpected artefact format: {path}"
        assert not _looks_pickled(path), path
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            with open(path, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                assert 0 < length < 100_000_000
                assert isinstance(json.loads(fh.read(length)), dict), path
        count += 1
    for folder in {p.parent for p in root.rglob("index.faiss")}:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        assert isinstance(manifest, dict) and isinstance(ids, list) and all(isinstance(i, str) for i in ids)
        assert manifest["count"] == len(ids)
    return count


def test_shipped_artefacts_are_faiss_json_or_safetensors():
    assert check_artefact_folder(ROOT / "indexes") >= 6


def test_built_indexes_are_faiss_json_or_safetensors(tiny_built):
    folder = tiny_built.index_dir("tiny", "text-dense")
    assert sorted(p.name for p in folder.iterdir()) == ["ids.json", "index.faiss", "manifest.json"]
    assert check_artefact_folder(tiny_built.indexes_dir) >= 3
