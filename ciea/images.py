"""Image handling shared by backbones, corpus builders and the app.

One place decides how any image becomes RGB: transparency goes on white (stamps are
drawings on transparent backgrounds), odd modes (CMYK, 16-bit, palette) are converted,
animated images give their first frame, and a pixel limit refuses decompression bombs.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Images above this many pixels are refused before decoding (decompression bombs).
MAX_IMAGE_PIXELS = 40_000_000
#: Legal but huge images are downscaled to this longest side right after loading.
MAX_IMAGE_SIDE = 2048
BACKGROUND = (255, 255, 255)

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageInputError(ValueError):
    """An image could not be used; the message is safe to show to a user."""


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """RGB version of any PIL image, with transparent areas composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        image = Image.fromarray((arr / max(hi, 1.0) * 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def pad_to_square(image: Image.Image, fill: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Pad the shorter side so the whole image survives a square resize (no cropping)."""
    w, h = image.size
    side = max(w, h)
    if w == h:
        return image
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def square_rgb(image: Image.Image, size: int) -> Image.Image:
    """The canonical model input: RGB on white, padded to square, resized to ``size``."""
    return pad_to_square(to_rgb_on_white(image)).resize((size, size), Image.Resampling.BICUBIC)


def load_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Open, verify and normalise an image from a path, bytes or PIL image.

    Returns an RGB image no larger than ``MAX_IMAGE_SIDE`` on its longest side, or raises
    ``ImageInputError`` with a message that says what was wrong.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        except OSError as exc:
            raise ImageInputError(f"Could not read the image file: {exc.strerror or exc}.") from exc
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(fp)
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageInputError(
                f"The image is too large to process (limit {MAX_IMAGE_PIXELS:,} pixels)."
            ) from exc
        except UnidentifiedImageError as exc:
            raise ImageInputError("The file is not an image that can be decoded.") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageInputError(f"The image is damaged or truncated ({exc}).") from exc
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise ImageInputError(f"The image is too large to process (limit {MAX_IMAGE_PIXELS:,} pixels).")
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image = ImageOps.exif_transpose(image) or image
    image = to_rgb_on_white(image)
    if max(image.size) > MAX_IMAGE_SIDE:
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    return image
