"""Backbone registry: one spec string selects the frozen towers everywhere.

``bundled`` is the offline default; ``open_clip:<model>:<pretrained tag | checkpoint path | none>``
selects real CLIP towers. Loaded backbones are cached per process, since towers are frozen.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ciea.backbones.base import Backbone, BackboneLoadError, ImageFeatures, TokenEmbeddings, l2_normalize
from ciea.config import default_backbone_spec

__all__ = [
    "Backbone",
    "BackboneLoadError",
    "BackboneSpec",
    "ImageFeatures",
    "TokenEmbeddings",
    "l2_normalize",
    "load_backbone",
    "parse_spec",
]

SPEC_HELP = (
    "backbone spec: 'bundled' (offline default) or 'open_clip:MODEL:PRETRAINED' where "
    "PRETRAINED is a tag (e.g. laion2b_s34b_b79k), a local checkpoint path, or 'none' for random weights"
)


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed spec string."""

    family: str  # "bundled" | "open_clip"
    model: str = ""
    pretrained: str | None = None

    @property
    def canonical(self) -> str:
        if self.family == "bundled":
            return "bundled"
        return f"open_clip:{self.model}:{self.pretrained or 'none'}"


def parse_spec(spec: str) -> BackboneSpec:
    """Parse a backbone spec, raising ``BackboneLoadError`` with the accepted forms."""
    spec = (spec or "").strip()
    if spec == "bundled":
        return BackboneSpec("bundled")
    family, _, rest = spec.partition(":")
    if family == "open_clip" and rest:
        model, _, pretrained = rest.partition(":")
        from ciea.backbones.open_clip_backbone import RANDOM_WEIGHTS

        if model:
            tag = pretrained.strip() or None
            return BackboneSpec("open_clip", model.strip(), None if tag in RANDOM_WEIGHTS else tag)
    raise BackboneLoadError(f"Unknown backbone spec '{spec}'. Expected a {SPEC_HELP}.")


@functools.lru_cache(maxsize=4)
def _load(canonical: str, device: str) -> Backbone:
    parsed = parse_spec(canonical)
    if parsed.family == "bundled":
        from ciea.backbones.bundled import BundledBackbone

        return BundledBackbone(canonical, device=device)
    from ciea.backbones.open_clip_backbone import OpenClipBackbone

    return OpenClipBackbone(canonical, parsed.model, parsed.pretrained, device=device)


def load_backbone(spec: str | None = None, device: str | None = None) -> Backbone:
    """The loaded backbone for ``spec`` (default: $CIEA_BACKBONE or 'bundled'), cached."""
    import torch

    canonical = parse_spec(spec or default_backbone_spec()).canonical
    return _load(canonical, device or ("cuda" if torch.cuda.is_available() else "cpu"))
