"""Failure records and message attributes: what a consumer hears besides results."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

import sesshu
from sesshu.bus.api import Message, QueueInfo
from sesshu.jobs.failures import BODY_BYTES, attributes, last_receive, record
from sesshu.jobs.requests import Rejected, Request, RequestParser
from sesshu.jobs.ticket import Ticket

AT = datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)


def ticket(body: str = "{}", receives: int = 2) -> Ticket:
    return Ticket(Message("m-1", "rh-1", body, receives))


def parsed(body: str, receives: int = 2) -> Ticket:
    """A ticket as the supervisor makes it: parsed, or with what a rejected body named."""
    t = ticket(body, receives)
    try:
        t.request = RequestParser(["chaos"]).parse(body)
    except Rejected as exc:
        t.named_plugin, t.named_target = exc.plugin, exc.target
    return t


@pytest.mark.parametrize("receives, max_receive, last", [
    (1, 2, False), (2, 2, True), (3, 2, True), (1, 1, True), (5, None, False),
])
def test_the_last_receive_is_the_one_redrive_allows_last(receives: int, max_receive: int | None,
                                                         last: bool) -> None:
    assert last_receive(receives, QueueInfo(30, max_receive)) is last


def test_a_record_of_a_parsed_request() -> None:
    t = ticket()
    t.request = Request("chaos", "https://user:hunter2@example.com/x")
    document, attrs = record(t, "retried", "timeout", "plugin chaos timed out after 5 s on "
                             "https://user:hunter2@example.com/x", host="worker-3", now=AT)
    doc = json.loads(document)
    assert doc == {
        "target": "https://***@example.com/x",
        "plugin": "chaos",
        "failure": {
            "outcome": "retried", "reason": "timeout",
            "detail": "plugin chaos timed out after 5 s on https://***@example.com/x",
            "receives": 2, "message_id": "m-1", "host": "worker-3", "at": "2025-03-04T05:06:07.891Z",
        },
    }
    assert "hunter2" not in document
    assert attrs == {"plugin": "chaos", "outcome": "retried", "sesshu_version": sesshu.__version__}


def test_the_time_is_utc_whatever_the_clock_gave() -> None:
    later = AT.astimezone(timezone(timedelta(hours=9)))
    doc = json.loads(record(ticket(), "rejected", "invalid", "x", now=later)[0])
    assert doc["failure"]["at"] == "2025-03-04T05:06:07.891Z"
    assert doc["failure"]["host"]  # this host's name by default


def test_a_body_that_never_parsed_is_quoted_masked_and_cut_at_one_kib() -> None:
    body = "not json: ftp://admin:s3cret@files.example/ " + "é" * 2000
    t = parsed(body)
    document, attrs = record(t, "rejected", "invalid", "body is not valid JSON", now=AT)
    doc = json.loads(document)
    assert doc["target"] is None and doc["plugin"] is None
    assert doc["body"].startswith("not json: ftp://***@files.example/ éé")
    assert "s3cret" not in document
    assert len(doc["body"].encode()) <= BODY_BYTES
    assert len(doc["body"].encode()) > BODY_BYTES - 2  # cut at a character boundary, not short of it
    assert attrs["plugin"] == "-" and attrs["outcome"] == "rejected"


def test_a_rejected_request_keeps_what_it_named_masked_and_bounded() -> None:
    t = parsed(json.dumps({"plugin": "not_enabled", "target": "https://u:pw@x.example/" + "a" * 5000}))
    assert t.request is None
    doc = json.loads(record(t, "rejected", "invalid", "plugin 'not_enabled' is not an enabled plugin")[0])
    assert doc["plugin"] == "not_enabled"
    assert doc["target"].startswith("https://***@x.example/aaa") and len(doc["target"]) <= 2048
    assert "body" not in doc  # it named its job: no need to quote it


def test_a_plugin_name_that_is_no_name_never_becomes_an_attribute() -> None:
    t = parsed(json.dumps({"plugin": "../evil\n", "target": "x"}))
    document, attrs = record(t, "rejected", "invalid", "plugin is not an enabled plugin")
    assert json.loads(document)["plugin"] == "../evil\n"  # JSON carries it safely
    assert attrs["plugin"] == "-"


def test_attributes_of_results_and_pointers() -> None:
    assert attributes("http_robots", "done") == {
        "plugin": "http_robots", "outcome": "done", "sesshu_version": sesshu.__version__}
    assert attributes(None, "rejected")["plugin"] == "-"


def test_a_traced_request_s_record_continues_its_trace() -> None:
    from sesshu.jobs.trace import TraceContext, parse_traceparent

    t = ticket()
    t.trace = TraceContext("a" * 32, "b" * 16, "01")
    _, attrs = record(t, "rejected", "invalid", "no")
    given = parse_traceparent(attrs["traceparent"])
    assert given is not None and given.trace_id == "a" * 32 and given.flags == "01" and given.parent_id != "b" * 16
    assert "traceparent" not in record(ticket(), "rejected", "invalid", "no")[1]


def test_an_enveloped_request_brings_its_traceparent() -> None:
    envelope = json.dumps({"Type": "Notification", "Message": json.dumps({"plugin": "chaos", "target": "t"}),
                           "MessageAttributes": {"traceparent": {"Type": "String", "Value": "00-x"}}})
    assert RequestParser(["chaos"]).parse(envelope) == Request("chaos", "t", "00-x")
