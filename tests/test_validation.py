"""Query and parameter checks shared by the app and the CLI."""

from __future__ import annotations

import pytest

from ciea.validation import MAX_QUERY_CHARS, InputError, check_k, clean_query_text


@pytest.mark.parametrize("raw", ["", "   ", "\n\t", None, "\x00\x01"])
def test_empty_queries_are_refused(raw):
    with pytest.raises(InputError, match="empty"):
        clean_query_text(raw)


def test_control_characters_are_removed_and_reported():
    clean = clean_query_text("red\x00 ball\x07")
    assert clean.text == "red ball" and clean.notices


@pytest.mark.parametrize("text", ["🐘 elephant", "فيل كبير", "слон and 象", "<script>alert(1)</script>"])
def test_unicode_and_markup_pass_through_as_text(text):
    assert clean_query_text(text).text == text


def test_very_long_queries_are_cut_with_a_notice():
    clean = clean_query_text("a" * 100_000)
    assert len(clean.text) == MAX_QUERY_CHARS and "cut" in clean.notices[0]


@pytest.mark.parametrize("k, ok", [(1, True), (100, True), (0, False), (101, False), ("x", False), (None, False)])
def test_k_bounds(k, ok):
    if ok:
        assert check_k(k) == k
    else:
        with pytest.raises(InputError, match="k must"):
            check_k(k)
