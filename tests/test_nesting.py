"""The nesting check agrees with a plain scanner on valid JSON and on malformed text a parser could read."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu.nesting import deeper_than


def reference_depth(text: str) -> int:
    """The deepest bracket outside strings, by walking every character."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=3), inner,
                                                               max_size=4),
    max_leaves=60,
)
# Malformed text made of what the check looks at: brackets in any order, and
# strings full of brackets and escapes, the last one perhaps never closed.
# A backslash appears only inside strings: outside, a parser stops at it.
_INSIDE = st.lists(st.sampled_from(["[", "]", "{", "}", "a", " ", "\\\\", '\\"', "\\n", "\\u005c"]), max_size=8)
_STRING = _INSIDE.map(lambda parts: '"' + "".join(parts) + '"')
_UNCLOSED = st.builds(lambda parts, cut: '"' + "".join(parts) + cut, _INSIDE, st.sampled_from(["", "\\"]))
TEXT = st.builds(lambda tokens, tail: "".join(tokens) + tail,
                 st.lists(st.sampled_from(["[", "]", "{", "}", ",", ":", " ", "1"]) | _STRING, max_size=60),
                 st.just("") | _UNCLOSED)


@given(JSON, st.integers(min_value=0, max_value=12))
@settings(max_examples=400, deadline=None)
def test_valid_json_is_measured_exactly(doc: object, limit: int) -> None:
    text = json.dumps(doc)
    assert deeper_than(text, limit) == (reference_depth(text) > limit)
    assert deeper_than(text.encode(), limit) == (reference_depth(text) > limit)


@given(TEXT, st.integers(min_value=0, max_value=12))
@settings(max_examples=400, deadline=None)
def test_malformed_text_is_measured_as_a_plain_scan_measures_it(text: str, limit: int) -> None:
    assert deeper_than(text, limit) == (reference_depth(text) > limit)
    assert deeper_than(text.encode(), limit) == (reference_depth(text) > limit)


def test_brackets_inside_strings_do_not_count() -> None:
    assert not deeper_than(json.dumps({"a": "[" * 1000}), 2)
    assert not deeper_than(json.dumps({"a": "\\\"[[[[" * 100}).encode(), 2)
    assert deeper_than("[" * 65 + "]" * 65, 64)
    assert not deeper_than("[" * 64 + "]" * 64, 64)


def test_wide_and_deep_texts_are_still_measured_exactly() -> None:
    deep = "[" * 40 + "]" * 40
    wide = "[" + ",".join([deep] * 2000) + "]"
    assert not deeper_than(wide, 41)
    assert deeper_than(wide, 40)
    # Unclosed brackets leave pairs no pass removes: the exact count decides.
    assert not deeper_than(wide + "[" * 50, 60)
    assert deeper_than(wide + "[" * 61, 60)
