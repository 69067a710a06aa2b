"""The bad-input matrix through gradio_client against the launched app, and markup in a caption
served by a real app.

Each case: the call returns (no exception escapes to the client), the JSON says what was
wrong or carries results, the HTML shows a notice, and the app answers a normal query right
after. ``tests/test_bad_input.py`` runs the full matrix through the service.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import urllib.request
import zlib

import pytest
from conftest import APP_STARTUP_TIMEOUT_S, draw_shape
from PIL import Image

from ciea.build import build_indexes
from ciea.config import Settings
from ciea.data.schema import Corpus, Document

EVIL = "<img src=x onerror=alert(1)>"
NORMAL = ("a frog", "stamps", ["text-dense"], 3)


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def assert_still_answers(client) -> None:
    _, data = client.predict(*NORMAL, api_name="/search")
    assert len(data["results"]["text-dense"]) == 3


def live_markup(html: str) -> list[tuple[str, dict]]:
    """Start tags a browser would build from ``html`` that carry the injected payload."""
    from html.parser import HTMLParser

    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if "onerror" in attrs or (tag == "img" and attrs.get("src") == "x"):
                found.append((tag, attrs))

    Collector().feed(html)
    return found


def search(client, *args) -> tuple[str, dict]:
    """``/search``; a refusal by Gradio's own component check (choices, slider range), which
    happens before the handler runs, comes back as ``({}, {"error": message})`` too."""
    from gradio_client.exceptions import AppError

    try:
        return client.predict(*args, api_name="/search")
    except AppError as exc:
        return "", {"error": str(exc), "gradio_check": True}


# (query, corpus, retrievers, k) -> phrases one of which the error must contain, or None for results.
# Gradio checks dropdown choices and the slider range itself; the service checks the rest.
TEXT_CASES = {
    "empty": (("", "stamps", ["text-dense"], 5), ("the text was empty",)),
    "whitespace only": ((" \t\n ", "stamps", ["text-dense"], 5), ("the text was empty",)),
    "controls only": (("\x00\x01\x7f", "stamps", ["text-dense"], 5), ("control characters",)),
    "NUL inside": (("a fr\x00og", "stamps", ["text-dense"], 5), None),
    "100k characters": (("a frog " * 14_285, "stamps", ["text-dense"], 5), None),
    "over 100k characters": (("a frog " * 14_300, "stamps", ["text-dense"], 5), ("the limit is 100,000",)),
    "emoji": (("🐸 a frog 🐸", "stamps", ["text-dense"], 5), None),
    "right to left": (("ضفدع أخضر", "stamps", ["text-dense"], 5), None),
    "mixed scripts": (("frog лягушка カエル", "stamps", ["text-dense"], 5), None),
    "script tag": (("<script>alert(1)</script>", "stamps", ["text-dense"], 5), None),
    "img onerror": ((EVIL, "stamps", ["text-dense"], 5), None),
    "unknown corpus": (("a frog", "nope", ["text-dense"], 5), ("Unknown corpus", "nope is not in the list of choices")),
    "unknown retriever": (("a frog", "stamps", ["clip"], 5), ("Unknown retriever", "'clip'")),
    "empty selection": (("a frog", "stamps", [], 5), ("at least one retriever",)),
    "k = 0": (("a frog", "stamps", ["text-dense"], 0), ("k must be", "less than minimum value 1")),
    "k = 101": (("a frog", "stamps", ["text-dense"], 101), ("k must be", "greater than maximum value 100")),
    "k negative": (("a frog", "stamps", ["text-dense"], -3), ("k must be", "less than minimum value 1")),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_text_and_parameters_through_gradio_client(client, case):
    args, errors = TEXT_CASES[case]
    html, data = search(client, *args)
    if errors is None:
        assert "error" not in data and all(len(rows) >= 1 for rows in data["results"].values())
    else:
        assert any(e in data["error"] for e in errors), data["error"]
        assert data.get("gradio_check") or "ciea-notice" in html
    assert not live_markup(html)
    assert_still_answers(client)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def _gif() -> bytes:
    frames = [draw_shape("circle", (220, 30, 30)).convert("RGB"), draw_shape("square", (30, 30, 220)).convert("RGB")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


IMAGE_CASES = {
    "text with a .jpg name": ("notes.jpg", b"not a picture\n" * 20, "not an image"),
    "truncated png": ("cut.png", _encoded(draw_shape("circle", (220, 30, 30)), "PNG")[:120], "damaged or truncated"),
    "bomb 30000 x 30000": ("bomb.png", _png_declaring(30000, 30000), "megapixels"),
    "animated gif": ("moving.gif", _gif(), None),
    "cmyk jpeg": ("cmyk.jpg", _encoded(draw_shape("circle", (220, 30, 30)).convert("RGB").convert("CMYK"), "JPEG"),
                  None),
    "palette png": ("palette.png", _encoded(draw_shape("square", (30, 30, 220)).convert("RGB").convert("P"), "PNG"),
                    None),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_uploads_through_gradio_client(client, tmp_path, case):
    from gradio_client import handle_file

    name, data_bytes, error = IMAGE_CASES[case]
    path = tmp_path / name
    path.write_bytes(data_bytes)
    html, data = client.predict(handle_file(str(path)), "stamps", ["dual-fused"], 5, api_name="/search_by_image")
    if error is None:
        assert "error" not in data and len(data["results"]["dual-fused"]) == 5
    else:
        assert error in data["error"] and "ciea-notice" in html
    assert_still_answers(client)


# -- markup in a caption, served by a real app ---------------------------------------------------
@pytest.fixture(scope="module")
def evil_app(tmp_path_factory):
    """``python app.py`` over a two-document corpus whose captions, ids and category hold markup."""
    from benchmarks.soak import launch_app

    root = tmp_path_factory.mktemp("xss")
    corpus_dir = root / "assets" / "xss"
    docs = []
    for i, (kind, colour) in enumerate([("circle", (220, 30, 30)), ("square", (30, 30, 220))]):
        rel = f"thumbs/d{i}.png"
        (corpus_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        draw_shape(kind, colour).save(corpus_dir / rel)
        docs.append(Document(f"d{i}{EVIL}", f"A red ball. {EVIL}", rel, EVIL))
    Corpus("xss", corpus_dir, docs).save()
    settings = dataclasses.replace(Settings(), assets_dir=root / "assets", indexes_dir=root / "indexes",
                                   cache_dir=root / "cache")
    build_indexes("xss", settings, progress=False)
    env = {"CIEA_ASSETS_DIR": str(settings.assets_dir), "CIEA_INDEX_DIR": str(settings.indexes_dir),
           "CIEA_CACHE_DIR": str(settings.cache_dir), "GRADIO_EXAMPLES_CACHE": str(root / "examples")}
    with launch_app(root / "app.log", APP_STARTUP_TIMEOUT_S, env) as app:
        yield app.url


def test_markup_in_captions_and_queries_is_never_live(evil_app):
    from gradio_client import Client

    client = Client(evil_app, verbose=False)
    html, data = client.predict(f"a red ball {EVIL}", "xss", ["text-dense"], 2, api_name="/search")
    assert data["query"] == f"a red ball {EVIL}"
    rows = data["results"]["text-dense"]
    assert {r["text"] for r in rows} == {f"A red ball. {EVIL}"}  # kept as text in the API output
    assert EVIL in html.replace("&lt;", "<").replace("&gt;", ">")  # shown to the user, escaped
    assert not live_markup(html)
    info, _, _, _, _ = client.predict("xss", "text-dense", rows[0]["doc_id"], EVIL, api_name="/document")
    assert "A red ball." in info and not live_markup(info)
    with urllib.request.urlopen(evil_app, timeout=30) as resp:
        page = resp.read().decode("utf-8", "replace")
    assert not live_markup(page)
