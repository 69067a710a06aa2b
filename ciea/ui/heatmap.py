"""CIEA's complementary-patch weights drawn over the image they were computed on.

The image towers see the picture padded to a square, cut into a g x g grid of patches; the
overlay uses the same padding so each tinted block is exactly one patch. A patch is tinted
in proportion to its weight: untouched at 0 (the caption covers it), strongly tinted at 1
(the image shows something there that the caption does not say).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


#: Height of the colour bar strip under the overlay, in pixels.
BAR_HEIGHT = 56


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def print_weights(overlay: Image.Image, weights: np.ndarray) -> Image.Image:
    """``overlay`` with each patch's weight printed at its centre (two decimals), so the
    values can be read without hovering; dark text on a light halo reads on any tint."""
    out = overlay.copy()
    draw = ImageDraw.Draw(out)
    g = weights.shape[0]
    size = out.size[0]
    font = _font(max(9, size // (g * 4)))
    for i in range(g):
        for j in range(g):
            x, y = (j + 0.5) * size / g, (i + 0.5) * size / g
            draw.text((x, y), f"{float(weights[i, j]):.2f}", fill=(17, 24, 39), font=font, anchor="mm",
                      stroke_width=2, stroke_fill=(255, 255, 255))
    return out


def with_colour_bar(overlay: Image.Image, low_label: str, high_label: str, title: str,
                    tint: tuple[int, int, int] = TINT, max_alpha: float = MAX_ALPHA) -> Image.Image:
    """``overlay`` above a colour bar: the tint over white from none (``low_label``) to full
    (``high_label``), with ``title`` saying what the scale is."""
    width = overlay.size[0]
    out = Image.new("RGB", (width, overlay.size[1] + BAR_HEIGHT), (255, 255, 255))
    out.paste(overlay, (0, 0))
    margin, top, bar = 40, overlay.size[1] + 22, 12
    ramp = np.linspace(0.0, max_alpha, width - 2 * margin, dtype=np.float32)[None, :, None]
    strip = 255.0 * (1.0 - ramp) + np.asarray(tint, dtype=np.float32) * ramp
    out.paste(Image.fromarray(np.rint(np.repeat(strip, bar, axis=0)).astype(np.uint8), mode="RGB"), (margin, top))
    draw = ImageDraw.Draw(out)
    draw.rectangle((margin, top, width - margin - 1, top + bar - 1), outline=(107, 114, 128))
    font = _font(13)
    draw.text((width // 2, overlay.size[1] + 4), title, fill=(17, 24, 39), font=font, anchor="mt")
    draw.text((margin - 4, top + bar // 2), low_label, fill=(17, 24, 39), font=font, anchor="rm")
    draw.text((width - margin + 4, top + bar // 2), high_label, fill=(17, 24, 39), font=font, anchor="lm")
    return out


def heat_map(image: Image.Image, weights: np.ndarray, stretched: bool = False) -> Image.Image:
    """The detail view's heat map: the overlay on a fixed 0-1 scale (or ``stretched`` within
    this image), each patch's weight printed, and a colour bar that says which scale it is."""
    w = np.asarray(weights, dtype=np.float32)
    if stretched:
        overlay = patch_overlay(image, stretch(w))
        low, high = f"{float(w.min()):.2f}", f"{float(w.max()):.2f}"
        title = "stretched within this image: lowest to highest weight"
    else:
        overlay = patch_overlay(image, w)
        low, high, title = "0", "1", "complementarity weight, fixed scale (1 = caption does not cover it)"
    return with_colour_bar(print_weights(overlay, w), low, high, title)
