"""The extended clients' S3 pointer, both ways: the body and size Sesshu writes, and what it takes as a pointer."""

from __future__ import annotations

import json

import pytest

from sesshu.bus.payloads import (
    LEGACY_SIZE_ATTRIBUTE,
    MAX_POINTER_CHARS,
    POINTER_CLASS,
    SIZE_ATTRIBUTE,
    BadPointer,
    Pointer,
    declared,
    in_envelope,
    parse,
    pointer_body,
    size_attribute,
)


def test_the_body_written_is_exactly_the_extended_clients_and_reads_back() -> None:
    body = pointer_body("bucket", "sesshu/m-1.json")
    assert body == ('["software.amazon.payloadoffloading.PayloadS3Pointer",'
                    '{"s3BucketName":"bucket","s3Key":"sesshu/m-1.json"}]')
    assert parse(body, "300000") == Pointer("bucket", "sesshu/m-1.json", 300000)


def test_the_size_is_the_payloads_utf8_bytes_not_its_characters() -> None:
    assert size_attribute("abc") == "3"
    assert size_attribute("é✓😀") == str(2 + 3 + 4)


def test_either_name_of_the_size_attribute_is_read_and_the_current_one_first() -> None:
    assert declared({SIZE_ATTRIBUTE: "5", LEGACY_SIZE_ATTRIBUTE: "6"}) == "5"
    assert declared({LEGACY_SIZE_ATTRIBUTE: "6"}) == "6"
    assert declared({"other": "1"}) is None


def test_a_size_that_is_no_number_still_leaves_a_pointer_of_unknown_size() -> None:
    assert parse(pointer_body("b", "k"), "many").size is None
    assert parse(pointer_body("b", "k"), None).size is None


@pytest.mark.parametrize("body", [
    "",
    "[]",
    '["software.amazon.payloadoffloading.PayloadS3Pointer"]',
    json.dumps(["another.Pointer", {"s3BucketName": "b", "s3Key": "k"}]),
    json.dumps([POINTER_CLASS, {"s3BucketName": "b"}]),
    json.dumps([POINTER_CLASS, {"s3BucketName": "b", "s3Key": "k", "extra": 1}]),
    json.dumps([POINTER_CLASS, {"s3BucketName": "", "s3Key": "k"}]),
    json.dumps([POINTER_CLASS, {"s3BucketName": "b", "s3Key": 7}]),
    json.dumps([POINTER_CLASS, {"s3BucketName": "b", "s3Key": "k"}, "more"]),
    "junk" + pointer_body("b", "k"),
    '["' + "x" * MAX_POINTER_CHARS + '"]',
    "[" * 1500 + "]" * 1500,
    json.dumps([POINTER_CLASS, {"s3BucketName": "b", "s3Key": {"nested": ["deeper"]}}]),
])
def test_anything_but_the_exact_pointer_is_a_bad_pointer(body: str) -> None:
    with pytest.raises(BadPointer):
        parse(body, "10")


def test_an_envelopes_pointer_is_found_only_where_its_attributes_say_so() -> None:
    body = pointer_body("b", "k")
    doc = {"Message": body, "MessageAttributes": {SIZE_ATTRIBUTE: {"Type": "Number", "Value": "42"}}}
    assert in_envelope(doc) == (body, "42")
    legacy = {"Message": body, "MessageAttributes": {LEGACY_SIZE_ATTRIBUTE: {"Type": "Number", "Value": 42}}}
    assert in_envelope(legacy) == (body, "")  # a value that is no string says nothing of the size
    assert in_envelope({"Message": body}) is None
    assert in_envelope({"Message": body, "MessageAttributes": {"other": {"Value": "1"}}}) is None
    assert in_envelope({"Message": ["not text"], "MessageAttributes": doc["MessageAttributes"]}) is None
