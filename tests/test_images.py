"""Uploads and corpus images through ciea.images: what is refused, and what every accepted image becomes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from ciea.images import (
    ALLOWED_FORMATS,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    MAX_UPLOAD_BYTES,
    ImageInputError,
    load_image,
    load_query_image,
)
from ciea.validation import InputError

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


# -- test files, made in memory ------------------------------------------------------------
def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width x height`` RGB pixels, with one tiny IDAT.

    A decompression bomb as far as any decoder is concerned, yet a few dozen bytes here:
    no 900-megapixel buffer is ever allocated by the test.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def noise(size=(64, 48), seed=0) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


# -- refusals ------------------------------------------------------------------------------
BAD = {
    "empty file": (b"", "The file is empty"),
    "text with an image extension": (b"just some text, saved as photo.jpg\n" * 20,
                                     r"not an image Pillow can read \(PNG, JPEG, GIF, WebP"),
    "html": (b"<html><script>alert(1)</script></html>", "not an image Pillow can read"),
    "svg": (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
            "not an image Pillow can read"),
    "eps (never handed to Ghostscript)": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
                                          "not an image Pillow can read"),
    "png signature only": (b"\x89PNG\r\n\x1a\n", "looks like a PNG image but is damaged or truncated"),
    "truncated png": (encode(noise(), "PNG")[:300], "PNG file is damaged or truncated"),
    "truncated jpeg": (encode(noise((256, 256)), "JPEG")[:2000], "JPEG file is damaged or truncated"),
    "jpeg header only": (encode(noise(), "JPEG")[:40], "JPEG"),
    "bomb 30000 x 30000 png": (png_declaring(30000, 30000),
                               r"30000 x 30000 = 900 megapixels; the limit is 40 megapixels"),
    "just over the limit": (png_declaring(8000, 5001), r"8000 x 5001 = 40\.01 megapixels; the limit is 40 megapixels"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_uploads_are_refused_with_a_plain_message(case):
    data, message = BAD[case]
    with pytest.raises(ImageInputError, match=message):
        load_query_image(data)


def test_image_errors_are_input_errors():
    """The app and CLI catch one exception type for every kind of bad input."""
    assert issubclass(ImageInputError, InputError) and issubclass(ImageInputError, ValueError)


def test_the_bomb_is_refused_before_decoding(monkeypatch):
    """The pixel check runs on the header: a bomb never reaches ``load``."""
    calls = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(self.size))
    with pytest.raises(ImageInputError, match="7000 x 7000 = 49 megapixels"):
        load_query_image(png_declaring(7000, 7000))
    assert calls == []


def test_uploads_over_the_byte_limit_are_refused(tmp_path):
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_UPLOAD_BYTES
    with pytest.raises(ImageInputError, match=r"The file is 10\.5 MB; the upload limit is 10 MB"):
        load_query_image(big)
    path = tmp_path / "big.png"
    path.write_bytes(big)
    with pytest.raises(ImageInputError, match="upload limit is 10 MB"):
        load_query_image(path)


def test_corpus_images_have_no_byte_limit_but_the_same_pixel_limit(tmp_path):
    # a PNG padded past the upload limit with an ancillary chunk is still a fine corpus file
    data = encode(Image.new("RGB", (10, 10), (1, 2, 3)), "PNG")
    padded = data[:-12] + png_chunk(b"zzZz", b"\x00" * MAX_UPLOAD_BYTES) + data[-12:]
    assert load_image(padded).getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ImageInputError, match="900 megapixels"):
        load_image(png_declaring(30000, 30000))


@pytest.mark.parametrize("source, message", [
    ("/nonexistent/photo.png", "Could not read the image file"),
    (3.5, "Expected an image file, got float"),
    (np.zeros((2, 2, 2, 2), np.uint8), "2 or 3 dimensions"),
    (np.zeros((4, 4, 3), np.complex64), "is not an image"),
])
def test_unusable_sources(source, message):
    with pytest.raises(ImageInputError, match=message):
        load_query_image(source)


def test_a_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageInputError, match="not a file"):
        load_query_image(tmp_path)


def test_pillow_is_told_to_fail_on_truncated_files():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == MAX_IMAGE_PIXELS


def test_the_allow_list_names_registered_decoders_only():
    Image.init()
    assert set(ALLOWED_FORMATS) <= set(Image.OPEN) and "EPS" not in ALLOWED_FORMATS


# -- what accepted images become -----------------------------------------------------------
def test_animated_gif_gives_its_first_frame():
    image = load_query_image(animated_gif())
    assert image.mode == "RGB" and image.size == (40, 30) and image.getpixel((20, 15)) == (255, 0, 0)


def test_cmyk_jpeg_becomes_rgb():
    image = load_query_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=100))
    r, g, b = image.getpixel((8, 8))
    assert image.mode == "RGB" and r > 240 and g < 15 and b < 15  # C=0 M=Y=100%: red


def test_16_bit_grey_keeps_its_brightness():
    """65535 is white and 257 * 100 is grey 100 (not stretched to white by the maximum)."""
    for value, want in [(65535, 255), (257 * 100, 100), (0, 0)]:
        data = encode(Image.fromarray(np.full((8, 8), value, np.uint16)), "PNG")
        assert Image.open(io.BytesIO(data)).mode.startswith("I")
        assert load_query_image(data).getpixel((3, 3)) == (want, want, want)


def test_palette_with_transparency_goes_on_white():
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    image.putpixel((5, 5), 1)
    out = load_query_image(encode(image, "PNG", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((5, 5)) == (200, 0, 0)


@pytest.mark.parametrize("mode, colour, want", [
    ("LA", (0, 0), (255, 255, 255)),                 # fully transparent black -> white
    ("LA", (0, 255), (0, 0, 0)),                     # opaque black stays black
    ("RGBA", (0, 0, 0, 128), (127, 127, 127)),       # half-transparent black over white
    ("RGBA", (10, 200, 30, 255), (10, 200, 30)),
])
def test_alpha_is_composited_on_white(mode, colour, want):
    out = load_query_image(encode(Image.new(mode, (6, 6), colour), "PNG"))
    assert out.mode == "RGB" and out.getpixel((2, 2)) == want


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_huge_but_legal_images_are_downscaled(fmt):
    data = encode(Image.new("RGB", (6000, 3000), (10, 120, 200)), fmt)
    image = load_query_image(data)
    assert image.size == (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE // 2)
    assert all(abs(a - b) <= 3 for a, b in zip(image.getpixel((100, 100)), (10, 120, 200)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_every_allowed_format_decodes(fmt, tmp_path):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (20, 10), (0, 0, 255)).save(path, fmt)
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes())):
        image = load_query_image(source)
        assert image.mode == "RGB" and image.size == (20, 10)


def test_pil_images_and_arrays_are_accepted():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_query_image(rgba).getpixel((1, 1)) == (255, 255, 255)
    arr = np.zeros((3, 5, 3), np.uint8)
    arr[..., 1] = 255
    out = load_query_image(arr)
    assert out.size == (5, 3) and out.getpixel((0, 0)) == (0, 255, 0)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    assert load_query_image(encode(image, "JPEG", exif=exif)).size == (20, 40)
