"""Payloads stored in S3, as AWS's extended client libraries store them.

The SQS and SNS Extended Client Libraries (Java and Python) put a payload
that is too large for the message in S3, and send in its place the pointer
body::

    ["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"<bucket>","s3Key":"<key>"}]

with the message attribute ``ExtendedPayloadSize`` (data type Number): the
payload's length in UTF-8 bytes. Sesshu speaks the same format both ways:
it stores its large results so, and it reads requests that a producer
offloaded so. A body is a pointer only when the attribute is there and the
body is exactly that JSON array (nothing around it, no other keys).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sesshu import nesting

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
# The extended clients read the attribute under its first name too.
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
SIZE_ATTRIBUTES = (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE)
MAX_POINTER_CHARS = 4096  # a bucket name is at most 63 characters, a key 1,024 bytes


class BadPointer(ValueError):
    """The message says its payload is in S3, but its body is no pointer the extended clients would write."""


@dataclass(frozen=True)
class Pointer:
    bucket: str
    key: str
    size: int | None  # what ExtendedPayloadSize said; None when it was not a number


def pointer_body(bucket: str, key: str) -> str:
    """The body the extended clients send in place of a payload stored at ``bucket``/``key``."""
    return json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}], separators=(",", ":"))


def size_attribute(payload: str) -> str:
    """The value of ``ExtendedPayloadSize`` for this payload: its length in UTF-8 bytes."""
    return str(len(payload.encode()))


def declared(attributes: Mapping[str, str]) -> str | None:
    """The ExtendedPayloadSize (or its legacy name) among these attributes, if any."""
    return next((attributes[name] for name in SIZE_ATTRIBUTES if name in attributes), None)


def parse(body: str, size: str | None) -> Pointer:
    """The pointer a body holds; raises :class:`BadPointer` for anything else."""
    if len(body) > MAX_POINTER_CHARS:
        raise BadPointer(f"the body is {len(body)} characters, too long for an S3 pointer")
    if nesting.deeper_than(body, 2):  # a pointer is two levels deep; json.loads would recurse on more
        raise BadPointer("the body is nested deeper than an S3 pointer")
    try:
        doc: Any = json.loads(body)
    except ValueError:
        raise BadPointer("the body is not a JSON S3 pointer") from None
    if not (isinstance(doc, list) and len(doc) == 2 and doc[0] == POINTER_CLASS and isinstance(doc[1], dict)):
        raise BadPointer(f'the body is not ["{POINTER_CLASS}", {{"s3BucketName", "s3Key"}}]')
    where = doc[1]
    bucket, key = where.get("s3BucketName"), where.get("s3Key")
    if set(where) != {"s3BucketName", "s3Key"} or not isinstance(bucket, str) or not isinstance(key, str) \
            or not bucket or not key:
        raise BadPointer("the S3 pointer needs exactly s3BucketName and s3Key, both non-empty strings")
    try:
        length: int | None = int(size) if size is not None else None
    except ValueError:
        length = None
    return Pointer(bucket, key, length)


def in_envelope(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """An SNS envelope's ``Message`` and ExtendedPayloadSize, when its attributes say the payload is in S3."""
    attributes = doc.get("MessageAttributes")
    message = doc.get("Message")
    if not isinstance(attributes, dict) or not isinstance(message, str):
        return None
    for name in SIZE_ATTRIBUTES:
        attribute = attributes.get(name)
        if isinstance(attribute, dict):
            value = attribute.get("Value")
            return message, value if isinstance(value, str) else ""
    return None
