"""Hosting on Hugging Face Spaces: which files a Space takes, and the upload itself.

A Space gets a snapshot of exactly these files through ``huggingface_hub`` (never the git
history), so every binary file goes to the Hub's LFS/Xet storage whatever its size. The set
is decided here from the project folder with explicit rules, so a clean checkout and a
working copy full of caches give the same upload:

- the Space's own files (``SPACE_FILES``) and the ``ciea`` package's source;
- every servable corpus under the assets folder (training-only corpora excluded), with its
  licence and attribution files, less rendered images (rebuilt on demand at run time);
- those corpora's index folders (indexes, manifests, geometry, saved evaluations);
- the trained checkpoints those indexes were built with, and no others.

The assets, indexes and checkpoint folders are the ones ``Settings`` names (so
``CIEA_INDEX_DIR=indexes-clip`` uploads the CLIP indexes); they must lie inside the project.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Callable
from pathlib import Path

from ciea.config import (ASSETS_ENV, BACKBONE_ENV, CHECKPOINTS_ENV, DEFAULT_BACKBONE, INDEXES_ENV,
                         PROJECT_ROOT, Settings)
from ciea.data.scenes import RENDER_DIR
from ciea.data.schema import available_corpora
from ciea.index import MANIFEST_FILE
from ciea.validation import InputError

#: Files at the project root a Space needs: the app, its settings, its install, LFS rules.
SPACE_FILES = ("app.py", "README.md", "requirements.txt", "Space.yaml", ".gitattributes")
#: The package the app imports (source only).
SOURCE_DIRS = ("ciea",)
#: Folders never uploaded wherever they appear: caches and build litter.
SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".gradio", ".cache", ".git", ".ipynb_checkpoints"})
SKIP_SUFFIXES = (".pyc", ".pyo")
#: Checkpoint files that sit next to a checkpoint stem.
CHECKPOINT_SUFFIXES = (".safetensors", ".json")
SDK = "gradio"


def _inside(root: Path, folder: Path, what: str) -> Path:
    """``folder`` relative to ``root``; a folder outside the project cannot be uploaded."""
    try:
        return folder.resolve().relative_to(root.resolve())
    except ValueError:
        raise InputError(f"The {what} folder {folder} is outside the project folder {root}; "
                         "a Space can only take files from inside it.") from None


def _walk(root: Path, folder: Path, skip: Callable[[Path], bool] = lambda p: False) -> list[str]:
    """Every regular file under ``folder`` as a POSIX path relative to ``root``, caches left out."""
    found = []
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not skip(here / d))
        found += [(here / f).relative_to(root).as_posix() for f in files
                  if not f.endswith(SKIP_SUFFIXES) and (here / f).is_file() and not skip(here / f)]
    return found


def _checkpoints_for(index_folder: Path, settings: Settings) -> list[Path]:
    """The checkpoint files an index was built with (by its manifest's backbone and retriever)."""
    try:
        manifest = json.loads((index_folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        stem = settings.checkpoint_stem(manifest["backbone"], manifest["retriever"])
    except (OSError, ValueError, KeyError, TypeError):
        return []  # no readable manifest: the app reports that index as unavailable itself
    return [p for p in (stem.with_suffix(s) for s in CHECKPOINT_SUFFIXES) if p.is_file()]


def space_files(root: Path = PROJECT_ROOT, settings: Settings | None = None) -> list[str]:
    """The relative path of every file the Space upload takes, sorted."""
    root = Path(root).resolve()
    settings = settings or Settings()
    missing = [name for name in SPACE_FILES if not (root / name).is_file()]
    if missing:
        raise InputError(f"Missing Space file(s) in {root}: {', '.join(missing)}.")
    files = set(SPACE_FILES)
    for name in SOURCE_DIRS:
        files.update(_walk(root, root / name))

    assets = root / _inside(root, settings.assets_dir, "assets")
    indexes = root / _inside(root, settings.indexes_dir, "indexes")
    checkpoints = root / _inside(root, settings.checkpoints_dir, "checkpoints")
    settings = dataclasses.replace(settings, assets_dir=assets, indexes_dir=indexes, checkpoints_dir=checkpoints)
    if assets.is_dir():
        files.update((p.relative_to(root).as_posix() for p in assets.iterdir() if p.is_file()))
    for corpus in available_corpora(assets):
        rendered = assets / corpus / RENDER_DIR  # a build output, rendered again on demand
        files.update(_walk(root, assets / corpus, skip=lambda p, r=rendered: p == r))
        corpus_indexes = indexes / corpus
        if corpus_indexes.is_dir():
            files.update(_walk(root, corpus_indexes))
            for folder in sorted(p for p in corpus_indexes.iterdir() if p.is_dir()):
                files.update(p.relative_to(root).as_posix() for p in _checkpoints_for(folder, settings))
    return sorted(files)


def space_variables(root: Path = PROJECT_ROOT, settings: Settings | None = None) -> dict[str, str | None]:
    """The app's environment variables on the Space: a value where this upload differs from
    the defaults (another backbone, other folders, as paths relative to the Space's root),
    None where the default applies and a variable left from an earlier upload must go."""
    root = Path(root).resolve()
    settings = settings or Settings()
    defaults = Settings(backbone=DEFAULT_BACKBONE, assets_dir=root / "assets", indexes_dir=root / "indexes",
                        checkpoints_dir=root / "indexes" / "checkpoints")
    variables: dict[str, str | None] = {
        BACKBONE_ENV: settings.backbone if settings.backbone != defaults.backbone else None}
    for key, attr, what in ((ASSETS_ENV, "assets_dir", "assets"), (INDEXES_ENV, "indexes_dir", "indexes"),
                            (CHECKPOINTS_ENV, "checkpoints_dir", "checkpoints")):
        rel = _inside(root, getattr(settings, attr), what)
        variables[key] = rel.as_posix() if root / rel != getattr(defaults, attr) else None
    return variables


def space_url(repo_id: str) -> str:
    """The Space's page on the Hub (honours ``HF_ENDPOINT`` as huggingface_hub does)."""
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/spaces/{repo_id}"


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid OWNER/NAME, else a clear InputError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InputError(f"Not a Space id (OWNER/NAME): {repo_id!r}. {exc}") from None
    if repo_id.count("/") != 1:
        raise InputError(f"A Space id is OWNER/NAME, e.g. my-name/ciea-explorer (got {repo_id!r}).")
    return repo_id


def deploy(repo_id: str, root: Path = PROJECT_ROOT, settings: Settings | None = None, private: bool | None = None,
           say: Callable[[str], None] = print) -> str:
    """Create the Space if needed and upload exactly ``space_files`` as one snapshot: files no
    longer in the set are removed from the Space. Returns the Space's URL. The token is
    huggingface_hub's own (``HF_TOKEN``, or the one ``hf auth login`` saved)."""
    from huggingface_hub import HfApi, get_token

    check_repo_id(repo_id)
    root = Path(root).resolve()
    files = space_files(root, settings)
    variables = space_variables(root, settings)
    if not get_token():
        raise InputError("No Hugging Face token: set HF_TOKEN (a token with write access) or run "
                         "'hf auth login' first.")
    size = sum((root / f).stat().st_size for f in files)
    say(f"Uploading {len(files)} files ({size / 1e6:.1f} MB) from {root} to the Space {repo_id}:")
    for f in files:
        say(f"  {f}")
    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk=SDK, exist_ok=True, private=private)
    api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=root,
                      allow_patterns=[glob.escape(f) for f in files], delete_patterns="*",
                      commit_message="Upload CIEA Explorer (python -m ciea deploy-space)")
    current = api.get_space_variables(repo_id)
    for key, value in variables.items():
        if value is not None:
            say(f"Space variable {key}={value}")
            api.add_space_variable(repo_id, key, value)
        elif key in current:
            say(f"Space variable {key} removed (the default applies)")
            api.delete_space_variable(repo_id, key)
    url = space_url(repo_id)
    say(f"Done: {url}")
    return url
