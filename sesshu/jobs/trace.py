"""Trace context through the daemon: W3C ``traceparent``, or X-Ray's ``AWSTraceHeader``.

A request carries its creator's trace context as the message attribute
``traceparent`` (raw, or in the SNS envelope's ``MessageAttributes``; what
OpenTelemetry's botocore instrumentation injects), or else as the SQS
system attribute ``AWSTraceHeader``
(``Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>``). What the daemon
publishes for that request (its result, its failure record) carries a
``traceparent`` with the same trace id and flags and a new parent id. A
malformed header is ignored: the job runs as it would without one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

ATTRIBUTE = "traceparent"
MAX_HEADER_CHARS = 512  # a traceparent is 55 characters, an X-Ray header about 80; more is not one

# Version 00 exactly; a later version may append fields after a "-" (W3C's rule for forward compatibility).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_XRAY_ROOT = re.compile(r"1-([0-9a-f]{8})-([0-9a-f]{24})\Z")
_SPAN_ID = re.compile(r"[0-9a-f]{16}\Z")


@dataclass(frozen=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits
    parent_id: str  # 16: the span that sent the request
    flags: str  # 2: "01" when sampled

    def child(self) -> str:
        """A ``traceparent`` for something the daemon sends: same trace and flags, a new parent id."""
        span = secrets.token_hex(8)
        while span == "0" * 16:
            span = secrets.token_hex(8)
        return f"00-{self.trace_id}-{span}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return int(self.flags, 16) & 1 == 1


def parse_traceparent(value: str) -> TraceContext | None:
    if len(value) > MAX_HEADER_CHARS:
        return None
    m = _TRACEPARENT.match(value.strip())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return TraceContext(trace_id, parent_id, flags)


def parse_xray(value: str) -> TraceContext | None:
    if len(value) > MAX_HEADER_CHARS:
        return None
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    root = _XRAY_ROOT.match(fields.get("Root", ""))
    parent = fields.get("Parent", "")
    if root is None or not _SPAN_ID.match(parent) or parent == "0" * 16:
        return None
    sampled = fields.get("Sampled", "0")
    if sampled not in ("0", "1", "?"):
        return None
    trace_id = root.group(1) + root.group(2)
    if trace_id == "0" * 32:
        return None
    return TraceContext(trace_id, parent, "01" if sampled == "1" else "00")


def of_request(attributes: Mapping[str, str], trace_header: str | None) -> TraceContext | None:
    """The request's trace context: its ``traceparent`` attribute, else its AWSTraceHeader; None if neither parses."""
    value = attributes.get(ATTRIBUTE)
    if value is not None and (found := parse_traceparent(value)) is not None:
        return found
    return parse_xray(trace_header) if trace_header is not None else None
