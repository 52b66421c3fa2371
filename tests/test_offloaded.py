"""Requests stored in S3 by a producer's extended client, read back as the poller lane would."""

from __future__ import annotations

import json

import pytest

from sesshu.bus.api import Message, transient
from sesshu.bus.memory import MemoryBus
from sesshu.bus.offloaded import Offload, resolve
from sesshu.bus.payloads import pointer_body

REQUEST = json.dumps({"plugin": "chaos", "target": "chaos:echo:s3"})
OFFLOAD = Offload(frozenset({"requests"}), 1000)


def message(body: str, attributes: dict[str, str] | None = None) -> Message:
    return Message("m-1", "r-1", body, 1, attributes or {})


def stored(key: str = "k", body: str = REQUEST) -> MemoryBus:
    bus = MemoryBus()
    bus.objects[("requests", key)] = body
    return bus


def size(body: str = REQUEST) -> dict[str, str]:
    return {"ExtendedPayloadSize": str(len(body.encode())), "traceparent": "t"}


def envelope(message: str, attributes: dict[str, str]) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "n", "Message": message, "MessageAttributes": {
        name: {"Type": "Number" if name == "ExtendedPayloadSize" else "String", "Value": value}
        for name, value in attributes.items()}})


def test_a_raw_pointer_is_replaced_by_its_payload_and_the_size_attribute_dropped() -> None:
    got = resolve(stored(), message(pointer_body("requests", "k"), size()), OFFLOAD)
    assert got.body == REQUEST and got.attributes == {"traceparent": "t"} and got.unreadable is None


def test_a_pointer_in_an_sns_envelope_is_followed_with_the_envelope_s_attributes() -> None:
    got = resolve(stored(), message(envelope(pointer_body("requests", "k"), size())), OFFLOAD)
    assert got.body == REQUEST and got.attributes == {"traceparent": "t"} and got.unreadable is None


def test_the_legacy_attribute_name_is_read_too() -> None:
    got = resolve(stored(), message(pointer_body("requests", "k"), {"SQSLargePayloadSize": "50"}), OFFLOAD)
    assert got.body == REQUEST


def test_a_message_without_the_attribute_is_left_as_it_came() -> None:
    plain = message(REQUEST)
    assert resolve(stored(), plain, OFFLOAD) is plain
    # A pointer-shaped body without the attribute is no pointer: the parser rejects it as a request.
    bare = message(pointer_body("requests", "k"))
    assert resolve(stored(), bare, OFFLOAD) is bare
    inline = message(envelope(REQUEST, {"plugin": "x"}))
    assert resolve(stored(), inline, OFFLOAD) is inline


@pytest.mark.parametrize("body, why", [
    (" junk " + pointer_body("requests", "k"), "not a JSON S3 pointer"),
    (pointer_body("requests", "k") + "junk", "not a JSON S3 pointer"),
    ('["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"requests","s3Key":"k","x":1}]',
     "exactly s3BucketName and s3Key"),
    ('["other.Pointer",{"s3BucketName":"requests","s3Key":"k"}]', "is not ["),
    ('{"plugin":"chaos","target":"x"}', "is not ["),
    ("[" * 10_000, "too long"),
    ("[" * 1_500 + "]" * 1_500, "nested deeper than an S3 pointer"),  # short enough, but json.loads would recurse
    ('["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":{"a":[1]},"s3Key":"k"}]',
     "nested deeper than an S3 pointer"),
])
def test_a_body_that_is_no_pointer_but_says_it_is_is_unreadable(body: str, why: str) -> None:
    bus = stored()
    got = resolve(bus, message(body, size()), OFFLOAD)
    assert got.unreadable is not None and why in got.unreadable and not transient(got.unreadable)
    assert bus.requests["get_object"] == 0


def test_a_bucket_not_named_in_the_config_is_never_read() -> None:
    bus = stored()
    got = resolve(bus, message(pointer_body("elsewhere", "k"), size()), OFFLOAD)
    assert got.unreadable is not None and "bucket elsewhere is not one of bus.input.s3_buckets" in got.unreadable
    assert bus.requests["get_object"] == 0


def test_a_declared_size_over_the_limit_is_refused_unread() -> None:
    bus = stored()
    got = resolve(bus, message(pointer_body("requests", "k"), {"ExtendedPayloadSize": "2147483648"}), OFFLOAD)
    assert got.unreadable is not None and "2147483648 bytes (ExtendedPayloadSize), over 1000" in got.unreadable
    assert bus.requests["get_object"] == 0


def test_an_object_larger_than_declared_is_refused_by_its_own_size() -> None:
    got = resolve(stored(body="x" * 1001), message(pointer_body("requests", "k"), {"ExtendedPayloadSize": "5"}),
                  OFFLOAD)
    assert got.unreadable is not None and "over 1000" in got.unreadable and not transient(got.unreadable)


def test_a_missing_object_is_unreadable_for_good() -> None:
    got = resolve(stored(), message(pointer_body("requests", "gone"), size()), OFFLOAD)
    assert got.unreadable is not None and "cannot be read" in got.unreadable and not transient(got.unreadable)
    assert got.body == pointer_body("requests", "gone")  # the body stays what came, for the failure record
