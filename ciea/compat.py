"""The third-party internals this project relies on, in one place.

Each reaches past a library's public API because no public way does the job; each has a test
in tests/test_compat.py that fails when the library changes underneath. Gradio is never
imported here (the CLI and indexing use Pillow's part without loading the web stack).
"""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image


def event_payload(evt: Any) -> dict:
    """The data a custom JavaScript ``trigger('click', {...})`` sent with a Gradio event.

    Gradio 6 keeps it in ``gr.EventData._data`` (its ``__getattr__`` reads fields from there but
    raises for missing ones); an event without data gives ``{}``.
    """
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


def pass_upload_path(image: Any) -> Any:
    """``image`` (a ``gr.Image``) changed to hand its event the uploaded file's path unopened.

    ``gr.Image.preprocess`` opens uploads with Pillow before the event function runs, so a file
    that is not an image fails inside Gradio with no message; this way ``ciea.images`` decides
    and says why. An instance override: a ``gr.Image`` subclass would make Gradio write a .pyi
    stub next to its module. Gradio has already checked that the path is an upload.
    """
    opened = image.preprocess

    def preprocess(payload):
        if payload is not None and payload.path:
            return str(payload.path)
        return opened(payload)  # None, or inline (base64) data

    image.preprocess = preprocess
    return image


def pillow_opener(fmt: str) -> tuple[Callable, Callable | None]:
    """Pillow's registered ``(factory, accept)`` pair for format ``fmt`` (``Image.OPEN``), used
    to read a declared image size from a header that ``Image.open`` refused as a bomb.
    ``accept(prefix)`` is truthy when the bytes look like ``fmt`` (a str means "almost");
    ``factory(fp, filename)`` opens lazily, reading the header only."""
    Image.init()
    return Image.OPEN[fmt]
