"""Trace context: W3C traceparent and X-Ray's AWSTraceHeader, read and continued."""

from __future__ import annotations

import re

import pytest

from sesshu.jobs.trace import TraceContext, of_request, parse_traceparent, parse_xray

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_a_traceparent_is_read() -> None:
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == TraceContext(TRACE, PARENT, "01")
    # A later version may add fields; its first four are read as version 00's.
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-00-more") == TraceContext(TRACE, PARENT, "00")


@pytest.mark.parametrize("value", [
    "", "junk", f"00-{TRACE}-{PARENT}-1", f"00-{TRACE.upper()}-{PARENT}-01", f"00-{'0' * 32}-{PARENT}-01",
    f"00-{TRACE}-{'0' * 16}-01", f"ff-{TRACE}-{PARENT}-01", f"00-{TRACE}-{PARENT}-01-extra", f"00-{TRACE}-{PARENT}",
    f"00-{TRACE}-{PARENT}-01" + " " * 600,
])
def test_a_malformed_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_an_xray_header_is_read_as_the_same_trace() -> None:
    header = f"Root=1-{TRACE[:8]}-{TRACE[8:]};Parent={PARENT};Sampled=1"
    assert parse_xray(header) == TraceContext(TRACE, PARENT, "01")
    assert parse_xray(f"Sampled=0;Parent={PARENT};Root=1-{TRACE[:8]}-{TRACE[8:]};Lineage=a:1") == TraceContext(
        TRACE, PARENT, "00")


@pytest.mark.parametrize("header", [
    "", "Root=1-abc", f"Root=1-{TRACE[:8]}-{TRACE[8:]};Sampled=1", f"Root=2-{TRACE[:8]}-{TRACE[8:]};Parent={PARENT}",
    f"Root=1-{TRACE[:8]}-{TRACE[8:]};Parent=xyz;Sampled=1", f"Root=1-{TRACE[:8]}-{TRACE[8:]};Parent={PARENT};Sampled=7",
])
def test_a_malformed_xray_header_is_ignored(header: str) -> None:
    assert parse_xray(header) is None


def test_the_traceparent_attribute_wins_over_the_xray_header_unless_it_is_malformed() -> None:
    xray = f"Root=1-{'a' * 8}-{'b' * 24};Parent={'c' * 16};Sampled=0"
    assert of_request({"traceparent": f"00-{TRACE}-{PARENT}-01"}, xray) == TraceContext(TRACE, PARENT, "01")
    assert of_request({"traceparent": "junk"}, xray) == TraceContext("a" * 8 + "b" * 24, "c" * 16, "00")
    assert of_request({}, None) is None


def test_a_child_keeps_the_trace_and_flags_with_a_new_parent() -> None:
    context = TraceContext(TRACE, PARENT, "01")
    children = {context.child() for _ in range(20)}
    assert len(children) == 20
    for child in children:
        m = re.fullmatch(rf"00-{TRACE}-([0-9a-f]{{16}})-01", child)
        assert m is not None and m.group(1) != PARENT
        assert parse_traceparent(child) is not None
