"""The library internals in ciea/compat.py still behave as relied upon: each test drives the
library's own code path, so it fails when Gradio or Pillow changes underneath."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace

import pytest
from PIL import Image, UnidentifiedImageError

from ciea.compat import event_payload, pass_upload_path, pillow_opener
from ciea.images import ALLOWED_FORMATS


def test_gradio_hands_the_triggered_data_to_event_payload():
    from gradio.route_utils import prepare_event_data

    sent = {"doc_id": "a.png", "retriever": "ciea", "corpus": "stamps", "query": "a frog"}
    body = SimpleNamespace(trigger_id=None, event_data=sent)  # what the browser posts
    evt = prepare_event_data(SimpleNamespace(blocks={}), body)
    assert event_payload(evt) == sent
    assert event_payload(prepare_event_data(SimpleNamespace(blocks={}), SimpleNamespace(trigger_id=None,
                                                                                         event_data=None))) == {}


def test_an_upload_reaches_the_event_as_its_path_unopened(tmp_path):
    import gradio as gr

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image", encoding="utf-8")
    seen = []
    with gr.Blocks() as demo:
        image = pass_upload_path(gr.Image(type="filepath"))
        out = gr.Textbox()
        image.change(lambda path: seen.append(path) or "", image, out)
    block_fn = demo.fns[0]
    payload = {"path": str(not_an_image), "meta": {"_type": "gradio.FileData"}}
    processed = asyncio.run(demo.preprocess_data(block_fn, [payload], None, explicit_call=True))
    assert isinstance(processed[0], str) and processed[0].endswith("notes.png")  # Pillow never ran
    assert asyncio.run(demo.preprocess_data(block_fn, [None], None, explicit_call=True)) == [None]
    # Why the override exists: Gradio's own preprocess opens the file and fails on it.
    with pytest.raises(UnidentifiedImageError):
        gr.Image(type="filepath").preprocess(image.data_model.model_validate(payload))


def test_pillow_openers_read_a_header_without_decoding():
    buffer = io.BytesIO()
    Image.new("RGB", (37, 21), "red").save(buffer, "PNG")
    data = buffer.getvalue()
    factory, accept = pillow_opener("PNG")
    assert accept(data[:16]) and not accept(b"GIF89a" + b"\0" * 10)
    assert factory(io.BytesIO(data), None).size == (37, 21)
    for fmt in ALLOWED_FORMATS:  # every allowed format has a registered opener
        assert callable(pillow_opener(fmt)[0])
