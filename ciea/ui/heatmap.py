"""CIEA's complementary-patch weights drawn over the image they were computed on.

The image towers see the picture padded to a square, cut into a g x g grid of patches; the
overlay uses the same padding so each tinted block is exactly one patch. A patch is tinted
in proportion to its weight: untouched at 0 (the caption covers it), strongly tinted at 1
(the image shows something there that the caption does not say).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ciea.images import square_rgb

#: Tint for "not covered by the caption" (an orange-red that reads on white and on photos).
TINT = (230, 60, 20)
#: Opacity of the tint where the weight is 1.
MAX_ALPHA = 0.6
#: Side of the rendered overlay in pixels.
OVERLAY_SIZE = 448


def patch_overlay(image: Image.Image, weights: np.ndarray, size: int = OVERLAY_SIZE,
                  tint: tuple[int, int, int] = TINT, max_alpha: float = MAX_ALPHA) -> Image.Image:
    """RGB ``size`` x ``size`` image: ``image`` as the towers see it, each patch tinted by its weight."""
    w = np.clip(np.asarray(weights, dtype=np.float32), 0.0, 1.0)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
        raise ValueError(f"patch weights must be a square grid, got shape {w.shape}")
    base = np.asarray(square_rgb(image, size), dtype=np.float32)
    # Patch i covers rows [i*size//g, (i+1)*size//g): the same split the towers' grid makes.
    edges = (np.arange(size) * w.shape[0]) // size
    alpha = (max_alpha * w[edges][:, edges])[..., None]
    out = base * (1.0 - alpha) + np.asarray(tint, dtype=np.float32) * alpha
    return Image.fromarray(np.rint(out).astype(np.uint8), mode="RGB")


def stretch(weights: np.ndarray) -> np.ndarray:
    """Weights rescaled to [0, 1] within one image, so small differences stay visible (the
    trained extractor's weights can sit in a narrow band); a flat grid stays flat at 0."""
    w = np.asarray(weights, dtype=np.float32)
    span = float(w.max() - w.min()) if w.size else 0.0
    return (w - w.min()) / span if span > 1e-6 else np.zeros_like(w)
