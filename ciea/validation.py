"""User input checks shared by the app and the CLI; messages are safe to show to users.

The one place that decides what a query, a corpus name, a retriever selection and ``k`` may
be. Each check returns the cleaned value or raises ``InputError`` whose text says what was
wrong. Nothing here escapes markup: a query such as ``<script>`` is plain text to search
for, and escaping is the renderer's job wherever text reaches HTML or Markdown.

Long queries: up to ``MAX_QUERY_CHARS`` (100,000) characters are accepted unchanged; the
service then encodes only the first ``backbone.max_text_tokens`` tokens and says so in a
notice (the tokenizer, not a character count, knows where that limit falls). Longer input is
refused, so a client cannot make the server tokenize megabytes per request.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from ciea.config import MAX_K

#: Longest query accepted at all, in characters (after cleaning); longer input is refused.
MAX_QUERY_CHARS = 100_000
#: User text quoted back inside a message is shortened to this many characters.
ECHO_CHARS = 60
#: Unicode categories removed from queries: controls (NUL, BEL, ESC ...), lone surrogates,
#: private-use code points. Format characters (Cf: zero-width joiners in emoji, right-to-left
#: marks) are kept, since emoji sequences and RTL text need them.
REMOVED_CATEGORIES = ("Cc", "Cs", "Co")


class InputError(ValueError):
    """Bad user input; ``str(err)`` is the message to show."""


@dataclass
class CleanQuery:
    """A query ready to encode, with notices about what cleaning changed."""

    text: str
    notices: list[str] = field(default_factory=list)


def echo(value: object) -> str:
    """``repr`` of user input for a message, shortened so a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def clean_query_text(raw: object) -> CleanQuery:
    """Normalise a query (NFC), drop control characters with a notice, collapse whitespace.

    Refuses non-text, text that is empty once cleaned, and text over ``MAX_QUERY_CHARS``.
    Emoji, right-to-left and mixed scripts and markup pass through unchanged.
    """
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise InputError(f"The query must be text (got {type(raw).__name__}).")
    if len(raw) > 4 * MAX_QUERY_CHARS:  # refuse before any per-character work
        raise InputError(f"The query is {len(raw):,} characters long; the limit is {MAX_QUERY_CHARS:,}.")
    kept = [ch for ch in raw if ch in "\t\n\r" or unicodedata.category(ch) not in REMOVED_CATEGORIES]
    removed = len(raw) - len(kept)
    text = unicodedata.normalize("NFC", " ".join("".join(kept).split()))
    if not text:
        if removed:
            raise InputError("Type a query: the text was empty once control characters were removed.")
        raise InputError("Type a query: the text was empty.")
    if len(text) > MAX_QUERY_CHARS:
        raise InputError(f"The query is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}.")
    notices = []
    if removed:
        plural = "s were" if removed > 1 else " was"
        notices.append(f"{removed} control character{plural} removed from the query.")
    return CleanQuery(text, notices)


def check_k(k: object) -> int:
    """``k`` as an int in 1..MAX_K; whole-number floats (Gradio sliders send 5.0) and digit strings pass."""
    bad = InputError(f"k must be a whole number between 1 and {MAX_K} (got {echo(k)}).")
    if isinstance(k, bool) or k is None:
        raise bad
    if isinstance(k, str):
        k = k.strip()
    try:
        number = float(k)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    if not math.isfinite(number) or number != int(number):
        raise bad
    value = int(number)
    if not 1 <= value <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K} (got {value}).")
    return value


def check_corpus(corpus: object, available: Sequence[str]) -> str:
    """``corpus`` if it names one of ``available``; otherwise say which exist."""
    choices = ", ".join(available) or "none (build one with python -m ciea build-assets)"
    if corpus is None or (isinstance(corpus, str) and not corpus.strip()):
        raise InputError(f"Choose a corpus. Available: {choices}.")
    if not isinstance(corpus, str) or corpus not in available:
        raise InputError(f"Unknown corpus {echo(corpus)}. Available: {choices}.")
    return corpus


def check_retrievers(selected: object, known: Sequence[str]) -> list[str]:
    """The selected retriever names, in order, duplicates dropped.

    Accepts one name or a list of names; refuses an empty selection and names not in
    ``known`` (every registered retriever; a known but unavailable one is the service's
    business: it answers with a notice instead).
    """
    if isinstance(selected, str):
        selected = [selected] if selected.strip() else []
    if selected is None:
        selected = []
    if not isinstance(selected, (list, tuple)):
        raise InputError(f"Retrievers must be a list of names (got {type(selected).__name__}).")
    if not selected:
        raise InputError("Select at least one retriever.")
    names: list[str] = []
    for name in selected:
        if not isinstance(name, str) or name not in known:
            raise InputError(f"Unknown retriever {echo(name)}. Known: {', '.join(known)}.")
        if name not in names:
            names.append(name)
    return names
