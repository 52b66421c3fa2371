"""RequestParser: raw and SNS-wrapped requests, and every way a body is rejected."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sesshu.messages import MAX_BODY_BYTES, MAX_TARGET_CHARS, Rejected, Request, RequestParser

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


@pytest.mark.parametrize("plugin", ["os", "subprocess", "../x", "a.b", "sesshu.child", "/etc/passwd",
                                    "", "CHAOS", "chaos ", "http_javascript"])
def test_names_that_are_not_enabled_plugins(parser: RequestParser, plugin: str) -> None:
    body = json.dumps({"plugin": plugin, "target": "t"})
    assert rejection(parser, body) == "plugin is not an enabled plugin"


def test_disabled_plugin_via_envelope(parser: RequestParser) -> None:
    assert rejection(parser, envelope({"plugin": "http_stylesheet", "target": "t"})) == (
        "plugin is not an enabled plugin")


def test_an_empty_enabled_list_rejects_everything() -> None:
    assert rejection(RequestParser(()), json.dumps({"plugin": "chaos", "target": "t"})) == (
        "plugin is not an enabled plugin")


def test_empty_target(parser: RequestParser) -> None:
    assert rejection(parser, json.dumps({"plugin": "chaos", "target": ""})) == "target empty values not allowed"


def test_huge_target(parser: RequestParser) -> None:
    text = rejection(parser, json.dumps({"plugin": "chaos", "target": SECRET}))
    assert text == f"target max length is {MAX_TARGET_CHARS}"


def test_huge_body(parser: RequestParser) -> None:
    body = json.dumps({"plugin": "chaos", "target": "t", "pad": "x" * MAX_BODY_BYTES})
    assert rejection(parser, body) == f"body is {len(body)} characters, over {MAX_BODY_BYTES}"


@pytest.mark.parametrize("body, expected", [
    ("", "body is not valid JSON"),
    ("{", "body is not valid JSON"),
    ("plugin=chaos&target=t", "body is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "body is not valid JSON"),  # too deep: RecursionError
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
    envelope({"plugin": SECRET, "target": SECRET}),
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
