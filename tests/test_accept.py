"""Accepting a receive: which messages may run, and the outcome of each that may not, on a fake clock."""

from __future__ import annotations

import json
from typing import Any

from sesshu.bus.api import Fault, Message, QueueInfo
from sesshu.config.model import from_mapping
from sesshu.jobs.accept import Acceptor
from sesshu.jobs.settle import Settler
from tests.harness.clock import FakeClock

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def make(plugins: tuple[str, ...] = ("chaos",)) -> tuple[Acceptor, Settler, FakeClock]:
    config = from_mapping({"plugin": list(plugins), "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    clock = FakeClock(1000.0)
    settler = Settler(lambda: config, QueueInfo(visibility_timeout=30, max_receive_count=3), clock=clock)
    return Acceptor(config.plugin_names, settler, clock), settler, clock


def body(plugin: str = "chaos", target: str = "chaos:echo:1") -> str:
    return json.dumps({"plugin": plugin, "target": target})


def message(n: int, text: str, **extra: Any) -> Message:
    return Message(f"m-{n}", f"r-{n}", text, 1, **extra)


def test_a_valid_request_may_run_and_is_locked_from_when_its_receive_began() -> None:
    acceptor, settler, clock = make()
    clock.now = 1005.0
    [ticket] = acceptor.accept([message(1, body())], started=1002.0, stopping=False)
    assert ticket.request is not None and (ticket.request.plugin, ticket.request.target) == ("chaos", "chaos:echo:1")
    assert ticket.visible_until == 1002.0 + 30
    assert not settler.outcomes.counts


def test_each_message_that_may_not_run_has_its_one_outcome_and_the_rest_keep_their_order() -> None:
    acceptor, settler, _ = make()
    messages = [message(1, body(target="a")), message(2, "{not json"), message(3, body("nosuch")),
                message(4, body(target="b"))]
    runnable = acceptor.accept(messages, started=1000.0, stopping=False)
    assert [t.message_id for t in runnable] == ["m-1", "m-4"]
    assert settler.outcomes.reasons == {"rejected:invalid": 2}


def test_an_unreadable_stored_request_is_retried_when_s3_failed_now_and_rejected_when_it_never_can_be_read() -> None:
    acceptor, settler, _ = make()
    failed_now = Fault("request stored in s3://b/k cannot be read: slow down", "SlowDown")
    never = "request stored in s3://b/k is 300000 bytes (ExtendedPayloadSize), over 262144"
    assert acceptor.accept([message(1, "[]", unreadable=failed_now), message(2, "[]", unreadable=never)],
                           started=1000.0, stopping=False) == []
    assert settler.outcomes.reasons == {"retried:payload_error": 1, "rejected:invalid": 1}


def test_a_message_received_while_stopping_goes_back_at_once() -> None:
    acceptor, settler, _ = make()
    assert acceptor.accept([message(1, body())], started=1000.0, stopping=True) == []
    assert settler.outcomes.reasons == {"retried:shutdown": 1}


def test_the_trace_context_in_the_sns_envelope_wins_over_the_xray_header() -> None:
    acceptor, _, _ = make()
    envelope = json.dumps({"Type": "Notification", "MessageId": "n", "Message": body(),
                           "MessageAttributes": {"traceparent": {"Type": "String", "Value": TRACEPARENT}}})
    xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    [from_envelope, from_header] = acceptor.accept(
        [message(1, envelope, trace_header=xray), message(2, body(), trace_header=xray)],
        started=1000.0, stopping=False)
    assert from_envelope.trace is not None and from_envelope.trace.trace_id == TRACE_ID
    assert from_header.trace is not None and from_header.trace.trace_id == "5759e988bd862e3fe1be46a994272793"


def test_a_reload_changes_which_plugins_are_valid() -> None:
    acceptor, settler, _ = make(("chaos", "robots"))
    assert len(acceptor.accept([message(1, body("robots"))], started=1000.0, stopping=False)) == 1
    acceptor.reconfigure(("chaos",))
    assert acceptor.accept([message(2, body("robots"))], started=1000.0, stopping=False) == []
    assert settler.outcomes.reasons == {"rejected:invalid": 1}
