"""Image handling shared by backbones, corpus builders and the app.

One place decides how any image becomes RGB: transparency goes on white (stamps are
drawings on transparent backgrounds), odd modes (CMYK, 16-bit, palette) are converted,
animated images give their first frame, and limits refuse what could exhaust the host.

Two entry points share one decoder:

- ``load_query_image`` for anything a user uploads: byte limit, pixel limit read from the
  header before any pixel is decoded, a format allow-list (so no plugin that shells out,
  such as EPS through Ghostscript, is ever reached), and a full decode inside the guard so
  truncated files are refused rather than half-read.
- ``load_image`` for corpus files we ship or build: the same rules without the byte limit.

Every refusal is an ``ImageInputError`` whose message says what was wrong in plain words.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ciea.compat import pillow_opener
from ciea.validation import InputError

#: Images above this many pixels are refused from their header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000
#: Legal but huge images are downscaled to this longest side right after loading.
MAX_IMAGE_SIDE = 2048
#: Largest upload accepted, in bytes; the app passes the same number to Gradio's max_file_size.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Pillow formats we decode; anything else is refused before a plugin reads past the header.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG covers MPO
READABLE = "PNG, JPEG, GIF, WebP, BMP or TIFF"
BACKGROUND = (255, 255, 255)

# Pillow's own guard protects every other decoder in the process (e.g. Gradio's upload
# preprocessing): it warns above this limit and refuses above twice it.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Truncated files must fail loudly, never decode as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Leading bytes of the formats we read, to tell "damaged PNG" from "not an image".
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}

ImageSource = str | Path | bytes | bytearray | Image.Image | np.ndarray


class ImageInputError(InputError):
    """An image could not be used; the message is safe to show to a user.

    An ``InputError`` (and so a ``ValueError``), so the app and the CLI handle it like any
    other bad input.
    """


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """RGB version of any PIL image, with transparent areas composited on white.

    16-bit greys are scaled by 1/257 (65535 -> 255) so brightness is kept, not stretched.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if image.mode == "F" and top <= 1.0:
            arr = arr * 255.0  # float images in [0, 1]
        elif top > 255.0:
            arr = arr / (257.0 if top <= 65535.0 else top / 255.0)
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageInputError(f"The image uses colour mode {image.mode}, which cannot be "
                              "converted to RGB.") from exc


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


def _megapixels(pixels: int) -> str:
    """900000000 -> '900', 40008000 -> '40.01': no needless decimals, never rounded onto the limit."""
    return f"{pixels / 1e6:,.2f}".rstrip("0").rstrip(".")


def _too_many_pixels(width: int, height: int) -> ImageInputError:
    return ImageInputError(
        f"The image is {width} x {height} = {_megapixels(width * height)} megapixels; the limit is "
        f"{_megapixels(MAX_IMAGE_PIXELS)} megapixels."
    )


def _sniff(data: bytes) -> str | None:
    """The format a file claims by its first bytes, if it is one we read."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Declared width and height, read from the header only (no pixel is decoded).

    Used when Pillow itself refuses a bomb at open time and so never hands back the size.
    """
    prefix = data[:16]
    for fmt in ALLOWED_FORMATS:
        try:
            factory, accept = pillow_opener(fmt)
            claim = accept(prefix) if accept is not None else True
            if claim and not isinstance(claim, str):  # a str is Pillow's "almost, but no"
                return factory(io.BytesIO(data), None).size
        except Exception:  # any plugin failure just means "not this format"
            continue
    return None


def _read_bytes(path: Path, limit: int | None) -> bytes:
    """The file's bytes, refusing directories, unreadable files and files over ``limit``."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageInputError("Could not read the image: that path is not a file.")
        if limit is not None and size > limit:
            raise _too_many_bytes(size, limit)
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"Could not read the image file ({exc.strerror or type(exc).__name__}).") from exc


def _too_many_bytes(size: int, limit: int) -> ImageInputError:
    return ImageInputError(f"The file is {size / 1e6:.1f} MB; the upload limit is {limit / 1e6:.0f} MB.")


def _decode(data: bytes) -> Image.Image:
    """Open with the allow-list, check pixels from the header, then decode the first frame fully."""
    if not data:
        raise ImageInputError("The file is empty.")
    claimed = _sniff(data)
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        size = _header_size(data)
        if size is not None:
            raise _too_many_pixels(*size) from exc
        raise ImageInputError(f"The image has too many pixels; the limit is {_megapixels(MAX_IMAGE_PIXELS)} "
                              "megapixels.") from exc
    except UnidentifiedImageError as exc:
        if claimed:
            raise ImageInputError(f"The file looks like a {claimed} image but is damaged or truncated.") from exc
        raise ImageInputError(f"The file is not an image Pillow can read ({READABLE}).") from exc
    except Exception as exc:  # plugins raise many types on hostile headers
        raise ImageInputError(f"The {claimed or 'image'} file is damaged or truncated; its header "
                              "could not be read.") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError(f"The image is {width} x {height} pixels: it has no content.")
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_many_pixels(width, height)
    if image.format == "JPEG" and max(width, height) > 2 * MAX_IMAGE_SIDE:
        image.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))  # decode huge JPEGs at reduced scale
    try:
        image.load()  # frame 0 only: animated images give their first frame
    except Exception as exc:  # truncated data: OSError, SyntaxError, zlib/struct errors ...
        kind = image.format or claimed or "image"
        raise ImageInputError(f"The {kind} file is damaged or truncated; it could not be decoded "
                              "completely.") from exc
    return image


def _normalise(image: Image.Image) -> Image.Image:
    """Pixel limit, EXIF orientation, RGB on white, longest side at most ``MAX_IMAGE_SIDE``."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError(f"The image is {width} x {height} pixels: it has no content.")
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_many_pixels(width, height)
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block is no reason to refuse the picture
        pass
    image = to_rgb_on_white(image)
    if max(image.size) > MAX_IMAGE_SIDE:
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    return image


def _load(source: ImageSource, byte_limit: int | None) -> Image.Image:
    if isinstance(source, Image.Image):
        if source.width * source.height > MAX_IMAGE_PIXELS:
            raise _too_many_pixels(source.width, source.height)
        try:
            source.load()  # a lazily opened image may still hold undecoded, damaged data
        except Exception as exc:
            raise ImageInputError("The image is damaged or truncated; it could not be decoded completely.") from exc
        return _normalise(source)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise ImageInputError(f"An image array needs 2 or 3 dimensions (got shape {source.shape}).")
        height, width = source.shape[:2]
        if width * height > MAX_IMAGE_PIXELS:
            raise _too_many_pixels(width, height)
        try:
            return _normalise(Image.fromarray(source))
        except (TypeError, ValueError) as exc:
            raise ImageInputError(f"The image array ({source.dtype}, shape {source.shape}) is not an image.") from exc
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if byte_limit is not None and len(data) > byte_limit:
            raise _too_many_bytes(len(data), byte_limit)
    elif isinstance(source, (str, Path)):
        data = _read_bytes(Path(source), byte_limit)
    else:
        raise ImageInputError(f"Expected an image file, got {type(source).__name__}.")
    return _normalise(_decode(data))


def load_query_image(source: ImageSource) -> Image.Image:
    """A user's upload (path, bytes, PIL image or array) as RGB, longest side <= ``MAX_IMAGE_SIDE``.

    Refuses, with ``ImageInputError``: files over ``MAX_UPLOAD_BYTES``, anything that is not
    a PNG/JPEG/GIF/WebP/BMP/TIFF image, truncated or damaged files, and images over
    ``MAX_IMAGE_PIXELS`` (checked from the header before decoding). Animated images give
    their first frame; CMYK, 16-bit, palette and alpha images become RGB on white.
    """
    return _load(source, MAX_UPLOAD_BYTES)


def load_image(source: ImageSource) -> Image.Image:
    """A corpus image (path, bytes or PIL image) under the same rules, without the upload byte limit."""
    return _load(source, None)
