"""sesshu.text: masking, escaping and clipping of untrusted text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesshu.text import clip, escape, loggable, mask


@pytest.mark.parametrize(("text", "expected"), [
    ("https://u:p@example.com/", "https://***@example.com/"),
    ("https://user:p@ssw0rd@example.com/x", "https://***@example.com/x"),
    ("fetch of http://a:b@h/ failed; see http://c:d@i/", "fetch of http://***@h/ failed; see http://***@i/"),
    ("mail me@example.com", "mail me@example.com"),
    ("https://example.com/@user", "https://example.com/@user"),
])
def test_mask_hides_every_userinfo(text: str, expected: str) -> None:
    assert mask(text) == expected


@pytest.mark.parametrize("bad", ["\n", "\r", "\x00", "\x1b", "\x85", "\u2028", "\u2029", "\u202e", "\u2066",
                                 "\ud800", "\x7f", "\u200f"])
def test_escape_leaves_no_line_breaking_or_reordering_character(bad: str) -> None:
    out = escape(f"a{bad}b")
    assert out.isprintable() and out.startswith("a") and out.endswith("b") and len(out) > 3


def test_escape_keeps_printable_text_as_it_is() -> None:
    assert escape("https://例え.jp/ök?q=1 x") == "https://例え.jp/ök?q=1 x"


def test_clip_bounds_and_marks() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("abcdefgh", 5) == "ab..."


@given(st.text(), st.integers(min_value=3, max_value=300))
def test_loggable_is_always_one_bounded_printable_line(text: str, limit: int) -> None:
    out = loggable(text, limit)
    assert len(out) <= limit
    assert out.isprintable()
    out.encode("utf-8")  # no lone surrogate survives


def test_loggable_never_shows_a_password_even_when_clipped() -> None:
    out = loggable("https://user:hunter2@example.com/" + "x" * 5000, 20)
    assert "hunter2" not in out
