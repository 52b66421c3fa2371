"""The bus lanes, receives and the bus health log, against a fake bus that keeps AWS's limits.

moto publishes a PublishBatch of any size and deletes twenty entries in one
DeleteMessageBatch; SNS and SQS refuse both. :class:`StrictBus` refuses them
as AWS does, so these tests fail where the real service would.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from sesshu.bus import sending
from sesshu.bus.api import (
    BATCH_MAX,
    SNS_MAX_BYTES,
    BusError,
    Delete,
    Fault,
    Message,
    Publish,
    Visibility,
)
from sesshu.bus.lanes import BusHealth, Lane, Lanes, receive
from sesshu.bus.sending import Post
from sesshu.jobs.ticket import Ticket


class StrictBus:
    """Keeps SNS's and SQS's batch limits; fails what it is told to, as AWS would answer."""

    def __init__(self, refuse: dict[str, BusError] | None = None, bad_documents: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.refuse = refuse or {}  # operation -> error raised for every call of it
        self.bad_documents = bad_documents  # a batch holding one of these fails as a whole
        self.objects: dict[str, str] = {}

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        self.calls.append(("publish", list(entries)))
        if "publish" in self.refuse:
            raise self.refuse["publish"]
        if len(entries) > BATCH_MAX:
            raise BusError("too many entries", "TooManyEntriesInBatchRequest")
        if sum(e.size() for e in entries) > SNS_MAX_BYTES:  # attributes included, as SNS counts
            raise BusError("publish_batch: BatchRequestTooLong", "BatchRequestTooLong")
        bad = [e for e in entries if e.document in self.bad_documents]
        if bad and len(entries) > 1:
            raise BusError("publish_batch: InvalidParameter", "InvalidParameter")
        return {e.entry_id: "InvalidParameter: bad" for e in bad}

    def delete(self, entries: list[Delete]) -> dict[str, str]:
        self.calls.append(("delete", list(entries)))
        if len(entries) > BATCH_MAX:
            raise BusError("delete_message_batch: too many", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
        return {}

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        self.calls.append(("change_visibility", list(entries)))
        if len(entries) > BATCH_MAX:
            raise BusError("too many", "TooManyEntriesInBatchRequest")
        return {}

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        if "receive" in self.refuse:
            raise self.refuse["receive"]
        return []

    def queue_info(self) -> Any:
        raise AssertionError("the sender never asks")

    def put_object(self, bucket: str, key: str, body: str) -> None:
        self.calls.append(("put_object", [key]))
        self.objects[key] = body

    def published(self) -> list[str]:
        return [e.document for name, entries in self.calls if name == "publish" for e in entries]

    def ops(self) -> list[str]:
        return [name for name, _ in self.calls]


def ticket(name: str) -> Ticket:
    return Ticket(Message(f"id-{name}", f"rh-{name}", "{}", 1))


# -- refusals: permanent errors are not outages ------------------------------------------


@pytest.mark.parametrize("code", ["AuthorizationError", "AccessDenied", "NotFound", "InvalidParameter"])
def test_a_permanent_refusal_is_logged_as_such_once_a_minute(code: str, caplog: pytest.LogCaptureFixture) -> None:
    error = BusError(f"publish: {code}: refused", code)
    now = [100.0]
    health = BusHealth(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "sesshu"):
        for step in (0.0, 10.0, 30.0, 61.0):
            bus = StrictBus(refuse={"publish": error})
            now[0] = 100.0 + step
            sent = sending.publish(bus, [Post(ticket("a"), "doc", {}, 0)])
            assert sent.failed and sent.succeeded() == []
            if code != "InvalidParameter":  # one entry cannot be split further
                assert bus.ops() == ["publish"]
            health.sent(sent.error)
    refusals = [r for r in caplog.records if "not an outage" in r.getMessage()]
    assert len(refusals) == 2  # at 0 s and at 61 s; the lines between are the same refusal
    assert "outage while sending" not in caplog.text and "recovered" not in caplog.text


def test_an_outage_is_still_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    health = BusHealth(clock=lambda: 0.0)
    bus = StrictBus(refuse={"publish": BusError("publish: connect timeout", "ConnectTimeoutError")})
    with caplog.at_level(logging.INFO, "sesshu"):
        sent = sending.publish(bus, [Post(ticket("a"), "doc-a", {}, 0), Post(ticket("b"), "doc-b", {}, 0)])
        assert bus.ops() == ["publish"]  # not split: the endpoint is away, not the batch at fault
        health.sent(sent.error)
        health.sent(None)
    assert "bus outage while sending: publish: connect timeout" in caplog.text
    assert "sending recovered after" in caplog.text and "not an outage" not in caplog.text


def test_a_refusal_during_an_outage_ends_it(caplog: pytest.LogCaptureFixture) -> None:
    health = BusHealth(clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, "sesshu"):
        health.sent(Fault("publish: timeout", "ReadTimeoutError"))
        health.sent(Fault("publish: AuthorizationError", "AuthorizationError"))
    assert "bus outage while sending" in caplog.text and "sending recovered" in caplog.text


@pytest.mark.parametrize("code, kind", [
    ("AWS.SimpleQueueService.NonExistentQueue", "refused"),
    ("QueueDoesNotExist", "refused"),
    ("AccessDenied", "refused"),
    ("RequestThrottled", "throttled"),
    ("ThrottlingException", "throttled"),
    ("EndpointConnectionError", "outage"),
    ("ServiceUnavailable", "outage"),
])
def test_receive_failures_back_off_and_only_an_outage_is_called_one(code: str, kind: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    got = receive(StrictBus(refuse={"receive": BusError(f"receive_message: {code}", code)}), 10, 0)
    assert got.error is not None and got.messages == []
    health = BusHealth(clock=lambda: 50.0)
    with caplog.at_level(logging.INFO, "sesshu"):
        health.receive_failed(got.error)
        health.received()
    assert health.poll_after > 50.0  # backs off either way
    assert ("bus outage: " in caplog.text) is (kind == "outage")
    assert ("bus recovered" in caplog.text) is (kind == "outage")
    assert ("not an outage" in caplog.text) is (kind == "refused")
    assert ("bus throttling: 1 receive call(s)" in caplog.text) is (kind == "throttled")


def test_throttling_is_logged_once_a_minute_per_kind_of_call_with_its_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    health = BusHealth(clock=lambda: now[0])
    throttled = Fault("publish_batch: Rate exceeded", "Throttling")
    with caplog.at_level(logging.INFO, "sesshu"):
        for _ in range(30):  # one a second, for half a minute
            health.sent(throttled, "publish")
            health.sent(Fault("delete_message_batch: slow down", "RequestThrottled"), "delete")
            now[0] += 1
        now[0] = 61
        health.sent(throttled, "publish")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("bus throttling: 1 publish call(s)")
    assert lines[1].startswith("bus throttling: 1 delete call(s)")
    assert lines[2].startswith("bus throttling: 30 publish call(s) refused for the request rate in the last 61 s")
    assert "outage" not in caplog.text


# -- lanes ---------------------------------------------------------------------------------


def test_a_lane_owns_its_busy_flag() -> None:
    woken: list[int] = []
    lane = Lane("test-lane", lambda: woken.append(1))
    try:
        assert not lane.busy
        lane.submit(lambda: 42)
        assert lane.busy
        import time

        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lane.take() == [42]
        assert not lane.busy  # taking the result frees it; nobody else writes the flag
    finally:
        lane.stop()



def test_lanes_run_calls_at_once_and_each_frees_itself() -> None:
    """Several calls in flight: two calls that wait for each other can only finish if both run at once."""
    woken: list[int] = []
    lanes = Lanes("test-lanes", 2, lambda: woken.append(1))
    both = threading.Barrier(2, timeout=10)
    try:
        for _ in range(2):
            lane = lanes.free()
            assert lane is not None
            lane.submit(both.wait)
        assert lanes.free() is None and lanes.busy_count() == 2
        deadline = time.monotonic() + 10
        results: list[Any] = []
        while len(results) < 2 and time.monotonic() < deadline:
            results += lanes.take()
            time.sleep(0.01)
        assert sorted(results) == [0, 1] and not lanes.busy
    finally:
        lanes.stop()
        assert lanes.join(5.0)


def test_an_outage_of_one_kind_of_call_is_logged_once_while_others_work(caplog: pytest.LogCaptureFixture) -> None:
    """SNS down, SQS up: deletes that succeed between failed publishes end no outage of publishes."""
    health = BusHealth(clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, "sesshu"):
        for _ in range(5):
            health.sent(Fault("publish_batch: Service Unavailable", "ServiceUnavailable"), "publish")
            health.sent(None, "delete")
        health.sent(None, "publish")
    assert caplog.text.count("bus outage while sending") == 1
    assert caplog.text.count("sending recovered after") == 1 and "(publish calls)" in caplog.text


def test_a_throttling_line_names_the_code_only_by_its_name(caplog: pytest.LogCaptureFixture) -> None:
    """The code comes from the server: a megabyte of prefix before "Throttling" must not reach the log."""
    health = BusHealth(clock=lambda: 0.0)
    code = "x" * 1_000_000 + "\n\udc80\x00.Throttling"
    with caplog.at_level(logging.INFO, "sesshu"):
        health.sent(Fault("publish: refused", code), "publish")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.endswith("(Throttling); backing off, then trying again") and len(line) < 200


def test_an_outage_line_is_bounded_whatever_the_server_said(caplog: pytest.LogCaptureFixture) -> None:
    health = BusHealth(clock=lambda: 0.0)
    said = "publish: " + "<html>" * 200_000 + "\nforged line \udc80\x00"
    with caplog.at_level(logging.INFO, "sesshu"):
        health.sent(Fault(said, "ServiceUnavailable"), "publish")
        health.receive_failed(Fault(said, "ServiceUnavailable"))
        health.sent(Fault(said, "AccessDenied"), "delete")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(len(line) < 700 and "\n" not in line for line in lines), [len(x) for x in lines]
