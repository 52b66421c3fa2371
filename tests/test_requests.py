"""RequestParser: raw and SNS-wrapped requests, and every way a body is rejected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu.jobs.requests import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    MAX_PLUGIN_CHARS,
    MAX_TARGET_CHARS,
    Rejected,
    Request,
    RequestParser,
)

ENABLED = ("chaos", "http_robots")
# A marker that must never be echoed back in full: the body can be large.
SECRET = "S3CRET" * 2000


@pytest.fixture
def parser() -> RequestParser:
    return RequestParser(ENABLED)


def envelope(message: Any, **extra: Any) -> str:
    doc = {"Type": "Notification", "MessageId": "5f0e", "TopicArn": "arn:aws:sns:us-east-1:1:req",
           "Message": message if isinstance(message, str) else json.dumps(message), **extra}
    return json.dumps(doc)


def rejection(parser: RequestParser, body: str) -> str:
    with pytest.raises(Rejected) as info:
        parser.parse(body)
    return str(info.value)


def test_raw_request(parser: RequestParser) -> None:
    body = json.dumps({"plugin": "chaos", "target": "chaos:echo:x"})
    assert parser.parse(body) == Request("chaos", "chaos:echo:x")


def test_sns_envelope(parser: RequestParser) -> None:
    body = envelope({"plugin": "http_robots", "target": "https://example.com/"})
    assert parser.parse(body) == Request("http_robots", "https://example.com/")


def test_extra_keys_are_allowed_and_ignored(parser: RequestParser) -> None:
    body = json.dumps({"plugin": "chaos", "target": "t", "priority": 5, "meta": {"by": "panorama"}})
    assert parser.parse(body) == Request("chaos", "t")
    body = envelope({"plugin": "chaos", "target": "t", "extra": [1, 2]}, Subject="s", Signature="x")
    assert parser.parse(body) == Request("chaos", "t")


def test_target_at_the_limit_is_accepted(parser: RequestParser) -> None:
    target = "t" * MAX_TARGET_CHARS
    assert parser.parse(json.dumps({"plugin": "chaos", "target": target})).target == target


@pytest.mark.parametrize("message, expected", [
    ("{not json", "SNS Message is not valid JSON"),
    ("[1, 2]", "SNS Message is not a JSON object"),
    ('"chaos"', "SNS Message is not a JSON object"),
    ("", "SNS Message is not valid JSON"),
])
def test_envelope_with_a_bad_message(parser: RequestParser, message: str, expected: str) -> None:
    assert rejection(parser, envelope(message)) == expected


def test_envelope_whose_message_is_not_a_string(parser: RequestParser) -> None:
    body = json.dumps({"Type": "Notification", "Message": {"plugin": "chaos", "target": "t"}})
    assert rejection(parser, body) == "bad SNS envelope: Message must be of string type"


def test_envelope_of_another_type(parser: RequestParser) -> None:
    body = json.dumps({"Type": "SubscriptionConfirmation", "Message": "confirm me"})
    assert rejection(parser, body).startswith("bad SNS envelope: Type")


@pytest.mark.parametrize("plugin", ["os", "subprocess", "CHAOS", "http_javascript"])
def test_names_that_are_not_enabled_plugins_are_named(parser: RequestParser, plugin: str) -> None:
    body = json.dumps({"plugin": plugin, "target": "t"})
    assert rejection(parser, body) == f"plugin {plugin!r} is not an enabled plugin (enabled: chaos, http_robots)"


@pytest.mark.parametrize("plugin", ["../x", "a.b", "sesshu.worker.runner", "/etc/passwd", "", "chaos "])
def test_what_is_not_even_a_plugin_name_is_not_repeated(parser: RequestParser, plugin: str) -> None:
    body = json.dumps({"plugin": plugin, "target": "t"})
    assert rejection(parser, body) == "plugin is not an enabled plugin"


def test_disabled_plugin_via_envelope(parser: RequestParser) -> None:
    assert rejection(parser, envelope({"plugin": "http_stylesheet", "target": "t"})) == (
        "plugin 'http_stylesheet' is not an enabled plugin (enabled: chaos, http_robots)")


def test_an_empty_enabled_list_rejects_everything() -> None:
    assert rejection(RequestParser(()), json.dumps({"plugin": "chaos", "target": "t"})) == (
        "plugin 'chaos' is not an enabled plugin (enabled: )")


def test_empty_target(parser: RequestParser) -> None:
    assert rejection(parser, json.dumps({"plugin": "chaos", "target": ""})) == "target empty values not allowed"


def test_huge_target(parser: RequestParser) -> None:
    text = rejection(parser, json.dumps({"plugin": "chaos", "target": SECRET}))
    assert text == f"target max length is {MAX_TARGET_CHARS}"


def test_huge_body(parser: RequestParser) -> None:
    body = json.dumps({"plugin": "chaos", "target": "t", "pad": "x" * MAX_BODY_BYTES})
    assert rejection(parser, body) == f"body is over {MAX_BODY_BYTES} bytes ({len(body)} characters)"


@pytest.mark.parametrize("body, expected", [
    ("", "body is not valid JSON"),
    ("{", "body is not valid JSON"),
    ("plugin=chaos&target=t", "body is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, f"body is nested deeper than {MAX_DEPTH} levels"),
    ("[]", "body is not a JSON object"),
    ('["chaos", "t"]', "body is not a JSON object"),
    ('"chaos"', "body is not a JSON object"),
    ("42", "body is not a JSON object"),
    ("null", "body is not a JSON object"),
])
def test_non_object_bodies(parser: RequestParser, body: str, expected: str) -> None:
    assert rejection(parser, body) == expected


@pytest.mark.parametrize("doc, expected", [
    ({"plugin": 1, "target": "t"}, "plugin must be of string type"),
    ({"plugin": ["chaos"], "target": "t"}, "plugin must be of string type"),
    ({"plugin": {"$ne": ""}, "target": "t"}, "plugin must be of string type"),
    ({"plugin": "chaos", "target": 42}, "target must be of string type"),
    ({"plugin": "chaos", "target": ["a"]}, "target must be of string type"),
    ({"plugin": "chaos", "target": None}, "target null value not allowed"),
    ({"plugin": None, "target": "t"}, "plugin null value not allowed"),
    ({"plugin": "chaos"}, "target required field"),
    ({"target": "t"}, "plugin required field"),
    ({}, "plugin required field, target required field"),
])
def test_missing_keys_and_non_string_types(parser: RequestParser, doc: dict[str, Any], expected: str) -> None:
    assert rejection(parser, json.dumps(doc)) == expected


@pytest.mark.parametrize("body", [
    json.dumps({"plugin": SECRET, "target": "t"}),
    json.dumps({"plugin": "chaos", "target": SECRET}),
    json.dumps({"plugin": "chaos", "target": {"x": SECRET}}),
    json.dumps({"plugin": "../" + SECRET, "target": SECRET}),
    json.dumps({"plugin": "chaos", "target": "t", "x": SECRET})[:-1],
    json.dumps([SECRET]),
    json.dumps({"note": SECRET}),
    envelope("{" + SECRET),
    envelope([SECRET]),
    envelope({"plugin": "../" + SECRET, "target": SECRET}),
    json.dumps({"Type": "Notification", "Message": {"m": SECRET}}),
    SECRET * 30,
])
def test_error_texts_never_echo_the_body(parser: RequestParser, body: str) -> None:
    text = rejection(parser, body)
    assert "S3CRET" not in text
    assert len(text) < 200


def test_error_text_of_a_bad_envelope_type_is_bounded(parser: RequestParser) -> None:
    text = rejection(parser, json.dumps({"Type": SECRET, "Message": "{}"}))
    assert "S3CRET" not in text
    assert len(text) < 200


# -- bounds, checked before json or cerberus see the body ------------------------------------


def test_the_size_cap_counts_utf8_bytes_not_characters(parser: RequestParser) -> None:
    # 100,000 characters of three bytes each: under the cap in characters, far over it in bytes.
    body = json.dumps({"plugin": "chaos", "target": "t", "pad": "€" * 100_000}, ensure_ascii=False)
    assert len(body) < MAX_BODY_BYTES < len(body.encode())
    assert rejection(parser, body) == f"body is {len(body.encode())} bytes, over {MAX_BODY_BYTES}"


def test_a_body_of_exactly_the_cap_in_bytes_is_accepted(parser: RequestParser) -> None:
    head = json.dumps({"plugin": "chaos", "target": "t", "pad": ""})[:-2]  # up to the pad's opening quote
    room = MAX_BODY_BYTES - len(head.encode()) - len('"}')
    body = head + "é" * (room // 2) + "x" * (room % 2) + '"}'
    assert len(body.encode()) == MAX_BODY_BYTES
    assert parser.parse(body) == Request("chaos", "t")
    assert "bytes, over" in rejection(parser, body[:-2] + 'x"}')


def test_a_body_that_is_no_utf8_is_rejected(parser: RequestParser) -> None:
    body = '{"plugin": "chaos", "target": "t\ud800"}'  # a lone surrogate, raw in the str
    assert rejection(parser, body) == "body is not valid UTF-8 (it holds a lone surrogate)"


def nest(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("body, expected", [
    (f'{{"plugin": "chaos", "target": {nest(600)}}}', "body is nested deeper than 32 levels"),
    (f'{{"plugin": {nest(600)}, "target": "t"}}', "body is nested deeper than 32 levels"),
    (f'{{"plugin": "chaos", "target": "t", "x": {nest(600)}}}', "body is nested deeper than 32 levels"),
    ('{"a": ' * 5000 + "1" + "}" * 5000, "body is nested deeper than 32 levels"),
    (envelope(nest(600)), "SNS Message is nested deeper than 32 levels"),
    (envelope({"plugin": "chaos", "target": json.loads(nest(200))}), "SNS Message is nested deeper than 32 levels"),
    (f'{{"Type": "Notification", "Message": {nest(600)}}}', "body is nested deeper than 32 levels"),
    (f'{{"Type": {nest(600)}, "Message": "{{}}"}}', "body is nested deeper than 32 levels"),
    ("[" * 200_000, "body is nested deeper than 32 levels"),  # not even valid JSON
])
def test_deep_nesting_is_rejected_before_parsing(parser: RequestParser, body: str, expected: str) -> None:
    assert rejection(parser, body) == expected


def test_nesting_up_to_the_limit_is_fine_in_extra_keys(parser: RequestParser) -> None:
    body = json.dumps({"plugin": "chaos", "target": "t", "x": json.loads(nest(MAX_DEPTH - 1))})
    assert parser.parse(body) == Request("chaos", "t")
    body = json.dumps({"plugin": "chaos", "target": "t", "x": json.loads(nest(MAX_DEPTH))})
    assert rejection(parser, body) == "body is nested deeper than 32 levels"


def test_brackets_inside_strings_do_not_count(parser: RequestParser) -> None:
    target = '[{"\\' * 500
    assert parser.parse(json.dumps({"plugin": "chaos", "target": target})) == Request("chaos", target)


@pytest.mark.parametrize("doc, expected", [
    ({"plugin": "chaos", "target": [[["t"]]]}, "target must be of string type"),
    ({"plugin": {"a": {"b": {}}}, "target": "t"}, "plugin must be of string type"),
    ({"Type": "Notification", "Message": [[{"m": 1}]]}, "bad SNS envelope: Message must be of string type"),
    ({"Type": [["Notification"]], "Message": "{}"}, "bad SNS envelope: Type must be of string type"),
    ({"plugin": "chaos", "target": 1e400}, "target must be of string type"),
    ({"plugin": "x" * 10_000, "target": "t"}, "plugin is not an enabled plugin"),
])
def test_containers_and_odd_values_get_plain_errors(parser: RequestParser, doc: dict[str, Any],
                                                   expected: str) -> None:
    assert rejection(parser, json.dumps(doc)) == expected


@pytest.mark.parametrize("body", [
    '{"plugin": "chaos", "target": ' + "9" * 5000 + "}",  # beyond Python's int digit limit
    '{"plugin": "chaos", "target": "t", "n": ' + "9" * 100_000 + "}",
    '{"plugin": "chaos", "target": "t"}\x00',
    '{"plugin": "chaos", "target": "a\x00b"}',  # a raw control character inside a JSON string
    '{"plugin": "chaos", "target": "\\ud800',
])
def test_odd_json_is_not_valid_json(parser: RequestParser, body: str) -> None:
    assert rejection(parser, body) == "body is not valid JSON"


@pytest.mark.parametrize("target, char", [
    ("https://a/\u0000x", "U+0000"),
    ("https://a/\r\n2099-01-01 00:00:00,000 [1] INFO sesshu.jobs.outcomes: done", "U+000D"),
    ("https://a/\nx", "U+000A"),
    ("https://a/\tx", "U+0009"),
    ("\x1b[31mred", "U+001B"),
    ("https://a/\x85", "U+0085"),
    ("https://a/\u2028", "U+2028"),
    ("https://a/\u2029", "U+2029"),
    ("https://a/\u202egnp.exe", "U+202E"),
    ("https://a/\u2066x", "U+2066"),
    ("https://a/\u200bx", "U+200B"),
    ("https://a/\ud800", "U+D800"),  # arrives as the JSON escape \\ud800
    ("https://a/\udfff", "U+DFFF"),
    ("https://a/\x7f", "U+007F"),
    ("https://a/\u00a0", "U+00A0"),
])
def test_targets_are_printable_text(parser: RequestParser, target: str, char: str) -> None:
    for body in (json.dumps({"plugin": "chaos", "target": target}),
                 envelope({"plugin": "chaos", "target": target})):
        text = rejection(parser, body)
        assert text.startswith(f"target holds the non-printable character {char} at position ")
        assert text.isprintable()


def test_printable_unicode_and_spaces_are_fine(parser: RequestParser) -> None:
    for target in ("https://例え.jp/ök?q=a b", "chaos:echo:😀", " x "):
        assert parser.parse(json.dumps({"plugin": "chaos", "target": target})).target == target


def test_plugin_names_that_are_not_text_are_not_enabled() -> None:
    parser = RequestParser(["chaos"])
    for plugin in ("chaos\x00", "cha\u202eos", "chaos\ud800", "chaos\n"):
        assert rejection(parser, json.dumps({"plugin": plugin, "target": "t"})) == "plugin is not an enabled plugin"


def test_plugin_name_bound_matches_the_config_rule() -> None:
    from sesshu.config.schema import valid_plugin_name
    assert valid_plugin_name("p" * MAX_PLUGIN_CHARS)
    assert not valid_plugin_name("p" * (MAX_PLUGIN_CHARS + 1))


# -- fuzz: parse() returns a Request or raises Rejected, whatever the body -------------------

def _json_values() -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
               | st.sampled_from(["chaos", "http_robots", "Notification", "x" * 3000]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.sampled_from(["plugin", "target", "Type", "Message", "x"]) | st.text(),
                                          inner, max_size=4), max_leaves=20)


def _request_docs() -> st.SearchStrategy[str]:
    doc = st.fixed_dictionaries({}, optional={"plugin": _json_values(), "target": _json_values(),
                                              "Type": _json_values(), "x": _json_values()})
    raw = doc.map(json.dumps)
    wrapped = st.builds(lambda d, t: json.dumps({"Type": t, "Message": d}), raw | st.text(),
                        st.sampled_from(["Notification", "Other"]) | _json_values())
    deep = st.builds(lambda d, leaf, k: "[" * d + leaf + "]" * d if k else '{"a":' * d + leaf + "}" * d,
                     st.integers(0, 2000), raw | st.text(max_size=20), st.booleans())
    return raw | wrapped | deep | st.text() | st.binary().map(lambda b: b.decode("utf-8", "surrogateescape"))


def _outcome(parser: RequestParser, body: str) -> Request | str:
    try:
        return parser.parse(body)
    except Rejected as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(_request_docs())
def test_fuzz_parse_returns_a_request_or_rejects(body: str) -> None:
    parser = RequestParser(ENABLED)
    out = _outcome(parser, body)
    if isinstance(out, Request):
        assert out.plugin in ENABLED
        assert out.target.isprintable() and 0 < len(out.target) <= MAX_TARGET_CHARS
    else:
        assert out.isprintable() and len(out) < 200  # one short line, never the body


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('[]{}",:\\ 0a-e.tu'), max_size=400))
def test_fuzz_bracket_soup(body: str) -> None:
    _outcome(RequestParser(ENABLED), body)


@settings(max_examples=500, deadline=None)
@given(st.fixed_dictionaries({}, optional={"plugin": _json_values(), "target": _json_values(), "Type": _json_values(),
                                           "Message": _json_values() | st.text()}))
def test_the_plain_case_checked_without_cerberus_is_always_one_cerberus_takes(doc: dict[str, Any]) -> None:
    from sesshu.jobs.requests import _ENVELOPE, _plain_envelope, _scalars

    parser = RequestParser(ENABLED)
    if parser._plain(doc):
        assert parser._validator.validate(_scalars(doc, parser._schema), normalize=False), doc
    if _plain_envelope(doc):
        assert parser._envelope.validate(_scalars(doc, _ENVELOPE), normalize=False), doc


def test_the_plain_case_is_the_common_one() -> None:
    parser = RequestParser(ENABLED)
    assert parser._plain({"plugin": "chaos", "target": "https://example.com/", "extra": [1]})
    assert _plain_envelope_of({"Type": "Notification", "Message": "{}", "MessageId": "m"})
    for odd in ({"plugin": "chaos", "target": ""}, {"plugin": "nope", "target": "t"}, {"plugin": "chaos"},
                {"plugin": "chaos", "target": "t" * (MAX_TARGET_CHARS + 1)}, {"plugin": True, "target": "t"}):
        assert not parser._plain(odd)  # cerberus says why


def _plain_envelope_of(doc: dict[str, Any]) -> bool:
    from sesshu.jobs.requests import _plain_envelope

    return _plain_envelope(doc)
