"""ZeroGPU support in one place: Hugging Face's ``spaces.GPU`` decorator where that package
exists (free Gradio Spaces run on ZeroGPU, which lends a GPU only inside decorated calls),
and a no-op everywhere else, so the app never depends on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

try:  # present on Hugging Face Spaces only
    import spaces
except ImportError:
    spaces = None

F = TypeVar("F", bound=Callable)
#: Seconds a ZeroGPU call may hold the GPU: encoding one query takes well under a second.
GPU_DURATION_S = 30


def on_gpu(fn: F) -> F:
    """``fn`` wrapped with ``spaces.GPU`` when running on a Space with ZeroGPU, else ``fn`` itself."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=GPU_DURATION_S)(fn)
