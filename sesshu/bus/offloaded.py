"""Requests that a producer stored in S3 with an extended client, read back in a poller lane.

A producer that sends through the SQS or SNS Extended Client Library puts
the request in S3 and sends a pointer (``sesshu.bus.payloads``). The pointer
is raw, with ``ExtendedPayloadSize`` among the SQS message's attributes, or
it is the ``Message`` of an SNS envelope, with the attribute in the
envelope's ``MessageAttributes``. :func:`resolve` reads the payload in the
poller lane that received the message, so the loop never waits for S3, and
hands on the message with the payload as its body and the attributes that
came with it.

Nothing of a pointer is trusted: the bucket must be one the operator named
(``bus.input.s3_buckets``), the size that the attribute declares and then
the object's own are bounded before a byte is read, and the text must be
UTF-8. A pointer that fails any of that marks the message ``unreadable``,
and the supervisor decides its outcome.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sesshu import nesting
from sesshu.bus import payloads
from sesshu.bus.api import Bus, BusError, Fault, Message
from sesshu.text import loggable

MAX_ENVELOPE_CHARS = 1024 * 1024  # an SNS envelope of a 256 KiB message, escaped, is well under it
MAX_DEPTH = 8  # an envelope with a pointer is three levels deep


@dataclass(frozen=True)
class Offload:
    """Where producers may store requests, and how large one may be."""

    buckets: Collection[str]  # bus.input.s3_buckets
    max_bytes: int  # as an inline body may be


def resolve(bus: Bus, message: Message, offload: Offload) -> Message:
    """The message with its payload from S3 in place of a pointer; or as it came, if it holds none.

    Raises nothing: a pointer that cannot be followed sets ``unreadable``.
    """
    body, attributes = message.body, message.attributes
    size = payloads.declared(attributes)
    if size is None:
        found = _enveloped(body)
        if found is None:
            return message
        body, size, attributes = found
    rest = {k: v for k, v in attributes.items() if k not in payloads.SIZE_ATTRIBUTES}
    try:
        pointer = payloads.parse(body, size)
    except payloads.BadPointer as exc:
        return replace(message, attributes=rest, unreadable=f"request stored in S3: {exc}")
    where = loggable(f"s3://{pointer.bucket}/{pointer.key}", 300)
    if pointer.bucket not in offload.buckets:
        return replace(message, attributes=rest, unreadable=(
            f"request stored in {where}: bucket {loggable(pointer.bucket, 70)} is not one of "
            f"bus.input.s3_buckets, so it is not read"))
    if pointer.size is not None and pointer.size > offload.max_bytes:
        return replace(message, attributes=rest, unreadable=(
            f"request stored in {where} is {pointer.size} bytes (ExtendedPayloadSize), over {offload.max_bytes}"))
    try:
        text = bus.get_object(pointer.bucket, pointer.key, offload.max_bytes)
    except BusError as exc:
        return replace(message, attributes=rest, unreadable=Fault(
            f"request stored in {where} cannot be read: {loggable(str(exc), 300)}", exc.code))
    except Exception as exc:  # noqa: BLE001 - a bug in a bus must not lose the whole receive
        return replace(message, attributes=rest, unreadable=f"request stored in {where}: "
                       f"unexpected {type(exc).__name__}: {loggable(str(exc), 300)}")
    return replace(message, body=text, attributes=rest)


def _enveloped(body: str) -> tuple[str, str, dict[str, str]] | None:
    """The pointer, its size and the message attributes of an SNS envelope that holds one.

    Only a body that names the size attribute is parsed at all (most bodies
    are not), and only once it is known to be small and shallow.
    """
    if not any(name in body for name in payloads.SIZE_ATTRIBUTES) or len(body) > MAX_ENVELOPE_CHARS:
        return None
    if nesting.deeper_than(body, MAX_DEPTH):
        return None
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("Type") != "Notification":
        return None
    found = payloads.in_envelope(doc)
    if found is None:
        return None
    message, size = found
    return message, size, envelope_attributes(doc)


def envelope_attributes(doc: Mapping[str, Any]) -> dict[str, str]:
    """An SNS envelope's String and Number ``MessageAttributes``, by name."""
    attributes = doc.get("MessageAttributes")
    if not isinstance(attributes, dict):
        return {}
    return {name: a["Value"] for name, a in attributes.items()
            if isinstance(a, dict) and a.get("Type") in ("String", "Number") and isinstance(a.get("Value"), str)}
