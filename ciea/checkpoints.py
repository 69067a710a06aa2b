"""Trained heads on disk: safetensors weights plus a JSON config, identified by a SHA-256.

Never pickle: weights go through safetensors, everything else is JSON. The hash is of the
weights file, so an index built with other weights is refused by its manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ciea.index import file_sha256 as sha256_of


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or made for another model."""


@dataclass(frozen=True)
class Checkpoint:
    state: dict[str, torch.Tensor]
    config: dict
    sha256: str
    path: Path


def save_checkpoint(stem: Path, module: torch.nn.Module, config: dict) -> Checkpoint:
    """Write ``stem``.safetensors and ``stem``.json; returns what was written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "ciea-head"})
    sha = sha256_of(weights)
    stem.with_suffix(".json").write_text(
        json.dumps({**config, "weights_sha256": sha}, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return Checkpoint(state, config, sha, weights)


def load_checkpoint(stem: Path, train_hint: str = "") -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; clear errors when absent or damaged."""
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    hint = f" Train it with `{train_hint}`." if train_hint else ""
    if not weights.exists() or not meta.exists():
        raise CheckpointError(f"No trained checkpoint at {weights}.{hint}")
    try:
        config = json.loads(meta.read_text(encoding="utf-8"))
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types on damage
        raise CheckpointError(f"Checkpoint {weights} is damaged ({exc}).{hint}") from exc
    sha = sha256_of(weights)
    if config.get("weights_sha256") not in (None, sha):
        raise CheckpointError(f"Checkpoint {weights} does not match its config's hash.{hint}")
    return Checkpoint(state, config, sha, weights)
