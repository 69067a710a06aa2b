"""The bad-input matrix through the service (what the app and the CLI both call).

Each case: only ``InputError`` may escape (any other exception fails the test), its message
says what was wrong, and the same service answers a normal query right afterwards.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ciea.images import MAX_UPLOAD_BYTES
from ciea.service import SearchService
from ciea.validation import InputError

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

NORMAL = ("a red ball", "tiny", ["text-dense"], 2)
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def service(tiny_built) -> SearchService:
    return SearchService(tiny_built)


def assert_still_answers(service: SearchService) -> None:
    response = service.search(*NORMAL)
    assert [r.doc_id for r in response.results["text-dense"]][:1] == ["shapes/red-circle.png"]


def run_case(service: SearchService, call, outcome):
    """``outcome`` is a regex (an InputError must say this) or a check on the response."""
    if isinstance(outcome, str):
        with pytest.raises(InputError, match=outcome):
            call(service)
    else:
        outcome(call(service))
    assert_still_answers(service)


def answered(*names: str, query: str | None = None, notice: str | None = None):
    """A check: these retrievers answered, the query came back verbatim, the notice is there."""
    def check(response):
        assert list(response.results) == list(names)
        assert all(len(rows) >= 1 for rows in response.results.values())
        if query is not None:
            assert response.query == query
        if notice is not None:
            assert any(notice in n for n in response.notices), response.notices
    return check


def search(query=NORMAL[0], corpus="tiny", retrievers=("text-dense",), k=2):
    retrievers = list(retrievers) if isinstance(retrievers, tuple) else retrievers
    return lambda s: s.search(query, corpus, retrievers, k)


TEXT_CASES = {
    "empty": (search(""), "the text was empty"),
    "whitespace only": (search(" \t\n  "), "the text was empty"),
    "None": (search(None), "the text was empty"),
    "NUL and controls only": (search("\x00\x01\x7f"), "empty once control characters were removed"),
    "NUL inside": (search("red\x00 ball\x1b"), answered("text-dense", query="red ball",
                                                         notice="2 control characters were removed")),
    "100k characters": (search("red ball " * 11_111), answered("text-dense", notice="tokens long; only the first")),
    "100k characters, one word": (search("a" * 100_000), answered("text-dense")),
    "over the character cap": (search("ball " * 20_001), "characters long; the limit is 100,000"),
    "emoji": (search("🔴 ball 🎈"), answered("text-dense", query="🔴 ball 🎈")),
    "right to left": (search("كرة حمراء"), answered("text-dense", query="كرة حمراء")),
    "mixed scripts": (search("red ball 赤いボール красный мяч"),
                      answered("text-dense", query="red ball 赤いボール красный мяч")),
    "script tag": (search("<script>alert(1)</script>"), answered("text-dense", query="<script>alert(1)</script>")),
    "img onerror": (search(EVIL), answered("text-dense", query=EVIL)),
    "markdown link": (search("[x](javascript:alert(1))"), answered("text-dense", query="[x](javascript:alert(1))")),
    "lone surrogate": (search("ball\ud800"), answered("text-dense", query="ball")),
    "bytes": (search(b"a red ball"), "must be text"),
    "number": (search(42), "must be text"),
    "list": (search(["a red ball"]), "must be text"),
}

PARAM_CASES = {
    "k = 0": (search(k=0), "k must be"),
    "k = 101": (search(k=101), "k must be between 1 and 100"),
    "k negative": (search(k=-5), "k must be"),
    "k fractional": (search(k=2.5), "k must be a whole number"),
    "k NaN": (search(k=math.nan), "k must be a whole number"),
    "k infinite": (search(k=math.inf), "k must be a whole number"),
    "k text": (search(k="ten"), "k must be a whole number"),
    "k None": (search(k=None), "k must be a whole number"),
    "k float from a slider": (search(k=3.0), lambda r: len(r.results["text-dense"]) == 3),
    "unknown corpus": (search(corpus="nope"), "Unknown corpus 'nope'"),
    "path as corpus": (search(corpus="../tiny"), "Unknown corpus"),
    "empty corpus": (search(corpus=""), "corpus"),
    "None corpus": (search(corpus=None), "corpus"),
    "list as corpus": (search(corpus=["tiny"]), "corpus"),
    "unknown retriever": (search(retrievers=("clip",)), "Unknown retriever 'clip'"),
    "empty retriever selection": (search(retrievers=()), "Select at least one retriever"),
    "None in the selection": (search(retrievers=("text-dense", None)), "Unknown retriever"),
    "one name as a string": (search(retrievers="text-dense"), answered("text-dense")),
    "duplicate names": (search(retrievers=("text-dense", "text-dense", "dual-fused")),
                        answered("text-dense", "dual-fused")),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_text_input(service, case):
    run_case(service, *TEXT_CASES[case])


@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_parameters(service, case):
    run_case(service, *PARAM_CASES[case])


# -- images ------------------------------------------------------------------------------
def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _red_ball() -> Image.Image:
    image = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    from PIL import ImageDraw

    ImageDraw.Draw(image).ellipse((16, 16, 80, 80), fill=(220, 30, 30, 255))
    return image


def _gif() -> bytes:
    frames = [_red_ball().convert("RGB"), Image.new("RGB", (96, 96), (0, 0, 255))]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


IMAGE_CASES = {
    "text with a .jpg name": (b"not a picture at all\n" * 10, "not an image Pillow can read"),
    "truncated png": (_encode(_red_ball(), "PNG")[:200], "PNG file is damaged or truncated"),
    "truncated jpeg": (_encode(Image.effect_noise((128, 128), 60).convert("RGB"), "JPEG")[:1500],
                       "JPEG file is damaged or truncated"),
    "bomb 30000 x 30000": (_png_declaring(30000, 30000), "30000 x 30000 = 900 megapixels; the limit is 40"),
    "over the upload size": (b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_BYTES), "upload limit is 10 MB"),
    "animated gif": (_gif(), None),
    "cmyk jpeg": (_encode(_red_ball().convert("RGB").convert("CMYK"), "JPEG"), None),
    "16-bit grey png": (_encode(Image.fromarray(np.full((64, 64), 30000, np.uint16)), "PNG"), None),
    "palette png": (_encode(_red_ball().convert("RGB").convert("P"), "PNG"), None),
    "alpha png": (_encode(_red_ball(), "PNG"), None),
    "LA png": (_encode(_red_ball().convert("LA"), "PNG"), None),
    "huge legal png": (_encode(Image.new("RGB", (5000, 4000), (220, 30, 30)), "PNG"), None),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_input_through_the_service(service, case):
    data, outcome = IMAGE_CASES[case]
    def call(s: SearchService):
        return s.search_by_image(data, "tiny", ["dual-fused"], 3)

    run_case(service, call, answered("dual-fused") if outcome is None else outcome)


def test_image_query_with_a_text_only_retriever_says_so(service):
    response = service.search_by_image(_encode(_red_ball(), "PNG"), "tiny", ["text-dense", "dual-fused"], 3)
    assert list(response.results) == ["dual-fused"]
    assert any(n.startswith("text-dense takes text queries only") for n in response.notices)
