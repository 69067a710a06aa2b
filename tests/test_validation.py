"""Query and parameter checks shared by the app and the CLI (ciea.validation)."""

from __future__ import annotations

import math

import pytest

from ciea.config import MAX_K
from ciea.validation import (
    ECHO_CHARS,
    MAX_QUERY_CHARS,
    InputError,
    check_corpus,
    check_k,
    check_retrievers,
    clean_query_text,
)


@pytest.mark.parametrize("raw", ["", "   ", "\n\t\r ", None])
def test_empty_queries_are_refused(raw):
    with pytest.raises(InputError, match="the text was empty"):
        clean_query_text(raw)


def test_a_query_of_only_control_characters_says_why_it_is_empty():
    with pytest.raises(InputError, match="empty once control characters were removed"):
        clean_query_text("\x00\x01\x1b")


@pytest.mark.parametrize("raw, text, removed", [
    ("red\x00 ball\x07", "red ball", 2),
    ("\x1b[31mred\x1b[0m", "[31mred[0m", 2),       # ESC goes, the printable rest stays
    ("ball\ud800", "ball", 1),                     # lone surrogate (cannot be UTF-8 encoded)
    ("red\ue000ball", "redball", 1),               # private use
])
def test_control_characters_are_removed_with_a_counting_notice(raw, text, removed):
    clean = clean_query_text(raw)
    assert clean.text == text
    verb = "s were" if removed > 1 else " was"
    assert clean.notices == [f"{removed} control character{verb} removed from the query."]


def test_whitespace_is_collapsed_without_a_notice():
    clean = clean_query_text("  red \n\t  ball\r\n")
    assert clean.text == "red ball" and clean.notices == []


@pytest.mark.parametrize("text", [
    "🐘 elephant",
    "👨\u200d👩\u200d👧 family",          # emoji joined by zero-width joiners (format chars stay)
    "فيل كبير",                            # Arabic, right to left
    "\u200fשלום\u200f world",              # right-to-left marks
    "слон and 象 and ελέφαντας",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "**bold** [link](javascript:alert(1))",
])
def test_unicode_and_markup_pass_through_as_text(text):
    clean = clean_query_text(text)
    assert clean.text == text and clean.notices == []


def test_queries_are_nfc_normalised():
    decomposed = "cafe\u0301"  # e + combining acute
    assert clean_query_text(decomposed).text == "caf\u00e9"


def test_long_queries_up_to_the_cap_pass_unchanged():
    text = "ab " * (MAX_QUERY_CHARS // 3) + "a"
    assert len(text) == MAX_QUERY_CHARS
    clean = clean_query_text(text)
    assert clean.text == text and clean.notices == []


@pytest.mark.parametrize("length", [MAX_QUERY_CHARS + 1, 10 * MAX_QUERY_CHARS])
def test_queries_over_the_cap_are_refused_with_their_length(length):
    with pytest.raises(InputError, match=f"{length:,} characters long; the limit is 100,000"):
        clean_query_text("a" * length)


@pytest.mark.parametrize("raw", [42, b"ball", ["ball"], {"q": "ball"}])
def test_non_text_queries_are_refused(raw):
    with pytest.raises(InputError, match="must be text"):
        clean_query_text(raw)


@pytest.mark.parametrize("k, want", [(1, 1), (MAX_K, MAX_K), (5.0, 5), ("7", 7), (" 12 ", 12)])
def test_k_accepts_whole_numbers_in_range(k, want):
    assert check_k(k) == want and isinstance(check_k(k), int)


@pytest.mark.parametrize("k", [0, MAX_K + 1, -3, 2.5, "x", "", None, True, math.nan, math.inf,
                               -math.inf, 10**400, [5], "1" * 500])
def test_k_refuses_everything_else(k):
    with pytest.raises(InputError, match="k must be") as info:
        check_k(k)
    assert len(str(info.value)) < 120  # the bad value is echoed shortened


def test_corpus_check():
    assert check_corpus("stamps", ["scenes", "stamps"]) == "stamps"
    with pytest.raises(InputError, match="Choose a corpus. Available: scenes, stamps"):
        check_corpus("  ", ["scenes", "stamps"])
    with pytest.raises(InputError, match="Choose a corpus"):
        check_corpus(None, ["stamps"])
    for bad in ("nope", "../stamps", "Stamps", ["stamps"], 3):
        with pytest.raises(InputError, match="Unknown corpus .*Available: stamps"):
            check_corpus(bad, ["stamps"])
    with pytest.raises(InputError, match="none"):
        check_corpus("stamps", [])


def test_a_long_bad_value_is_echoed_shortened():
    with pytest.raises(InputError) as info:
        check_corpus("x" * 10_000, ["stamps"])
    assert "x" * (ECHO_CHARS - 2) in str(info.value) and "x" * ECHO_CHARS not in str(info.value)


KNOWN = ["text-dense", "dual-split", "dual-fused"]


@pytest.mark.parametrize("selected, want", [
    (["dual-fused", "text-dense"], ["dual-fused", "text-dense"]),
    (("text-dense",), ["text-dense"]),
    ("dual-split", ["dual-split"]),                              # one name, not its characters
    (["text-dense", "dual-fused", "text-dense"], ["text-dense", "dual-fused"]),
])
def test_retriever_selection_is_kept_in_order_without_duplicates(selected, want):
    assert check_retrievers(selected, KNOWN) == want


@pytest.mark.parametrize("selected, message", [
    ([], "Select at least one retriever"),
    (None, "Select at least one retriever"),
    ("", "Select at least one retriever"),
    (["clip"], r"Unknown retriever 'clip'\. Known: text-dense, dual-split, dual-fused"),
    (["text-dense", None], "Unknown retriever None"),
    ([["text-dense"]], "Unknown retriever"),
    ({"text-dense": 1}, "must be a list"),
    (7, "must be a list"),
])
def test_retriever_selection_refusals(selected, message):
    with pytest.raises(InputError, match=message):
        check_retrievers(selected, KNOWN)
