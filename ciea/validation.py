"""User input checks shared by the app and the CLI; messages are safe to show to users."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from ciea.config import MAX_K

#: Hard cap on characters considered at all; the tokenizer limit applies after this.
MAX_QUERY_CHARS = 2000


class InputError(ValueError):
    """Bad user input; ``str(err)`` is the message to show."""


@dataclass
class CleanQuery:
    text: str
    notices: list[str] = field(default_factory=list)


def clean_query_text(raw: object) -> CleanQuery:
    """Strip control characters and surrounding space; refuse empty; shorten very long text."""
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise InputError("The query must be text.")
    notices = []
    text = "".join(
        ch if ch in "\t\n" or unicodedata.category(ch) not in ("Cc", "Cs", "Co") else " " for ch in raw
    )
    if text != raw:
        notices.append("Control characters were removed from the query.")
    text = " ".join(text.split())
    if not text:
        raise InputError("Type a query: the text was empty.")
    if len(text) > MAX_QUERY_CHARS:
        text = text[:MAX_QUERY_CHARS]
        notices.append(f"The query was cut to its first {MAX_QUERY_CHARS} characters.")
    return CleanQuery(text, notices)


def check_k(k: object) -> int:
    try:
        value = int(k)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"k must be a whole number between 1 and {MAX_K}.") from None
    if not 1 <= value <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K} (got {value}).")
    return value
