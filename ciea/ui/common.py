"""Small pieces every tab shares: retriever choices and turning failures into messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from ciea.service import SearchService, retriever_title
from ciea.validation import InputError

log = logging.getLogger("ciea.app")
T = TypeVar("T")
#: What a user sees when something unexpected failed (the details go to the log only).
INTERNAL_ERROR = "Something went wrong; the error was logged. Try again or try another input."


def retriever_choices(names: list[str]) -> list[tuple[str, str]]:
    """(label, name) pairs for a retriever picker (result columns show both title and name)."""
    return [(retriever_title(n), n) for n in names]


def guarded(call: Callable[[], T], on_error: Callable[[str], T], what: str) -> T:
    """``call()``, or ``on_error(message)``: the input error's own message for bad input,
    a generic one (with the stack trace logged) for anything else. Never a trace in the UI."""
    try:
        return call()
    except InputError as exc:  # includes ImageInputError: messages written for users
        return on_error(str(exc))
    except Exception:
        log.exception("%s failed", what)
        return on_error(INTERNAL_ERROR)


def towers_of(service: SearchService, corpus: str, names: list[str]) -> dict[str, str]:
    """Which towers each (ready) retriever uses, for column headers and the About tab."""
    out = {}
    for name in names:
        state = service.retriever(corpus, name)
        if state.ready:
            out[name] = state.retriever.towers()
    return out
