"""The nesting check agrees with a plain scanner on any text, valid JSON or not."""

from __future__ import annotations

import json

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sesshu.nesting import deeper_than


def reference_depth(text: str) -> int:
    """The deepest bracket outside strings, by walking every character; -1 for a backslash outside strings."""
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
        elif ch == "\\":
            return -1  # a JSON parser stops here
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
# Arbitrary text made mostly of what the check looks at.
TEXT = st.text(alphabet='[]{}"\\ ab,:', max_size=200)


@given(JSON, st.integers(min_value=0, max_value=12))
@settings(max_examples=400, deadline=None)
def test_valid_json_is_measured_exactly(doc: object, limit: int) -> None:
    text = json.dumps(doc)
    assert deeper_than(text, limit) == (reference_depth(text) > limit)
    assert deeper_than(text.encode(), limit) == (reference_depth(text) > limit)


@given(TEXT, st.integers(min_value=0, max_value=12))
@settings(max_examples=400, deadline=None)
def test_any_text_is_measured_as_a_plain_scan_measures_it(text: str, limit: int) -> None:
    assume(reference_depth(text) >= 0)
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
