"""The sender calls, one kind each, per entry: against fake buses that record and keep AWS's limits."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest

from sesshu.bus import sending
from sesshu.bus.api import BusError, Delete, Fault, Message, Publish, Visibility
from sesshu.bus.lanes import BusHealth
from sesshu.bus.sending import Change, Drop, Post, S3Target, Upload
from sesshu.jobs.ticket import Ticket
from tests.test_lanes import StrictBus


class FakeBus:
    """Records every call; fails the entries (or whole calls) it is told to."""

    def __init__(self, fails: dict[str, str] | None = None, raise_on: str = "", code: str = "Throttling") -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.fails = fails or {}
        self.raise_on = raise_on
        self.code = code  # the error code a whole call fails with
        self.requests: Counter[str] = Counter()

    def _call(self, name: str, entries: list[Any]) -> dict[str, str]:
        self.calls.append((name, list(entries)))
        if self.raise_on == name:
            raise BusError("throttled" if self.code == "Throttling" else self.code, self.code)
        return dict(self.fails)

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        return self._call("publish", entries)

    def publish_failures(self, entries: list[Publish]) -> dict[str, str]:
        return self._call("publish_failures", entries)

    def delete(self, entries: list[Delete]) -> dict[str, str]:
        return self._call("delete", entries)

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        return self._call("change_visibility", entries)

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        raise AssertionError("the sender never receives")

    def queue_info(self) -> Any:
        raise AssertionError("the sender never asks")

    def put_object(self, bucket: str, key: str, body: str) -> None:
        self.calls.append(("put_object", [bucket, key, body]))
        if self.raise_on == "put_object":
            raise BusError("access denied", "AccessDenied")


def tickets(*names: str) -> list[Ticket]:
    return [Ticket(Message(f"id-{n}", f"rh-{n}", "{}", 1)) for n in names]


def posts(*pairs: tuple[Ticket, str]) -> list[Post[Ticket]]:
    """Results to publish, without attributes (their size matters to the outbox only)."""
    return [Post(t, doc, {}, len(doc)) for t, doc in pairs]


def document(size: int, name: str = "t") -> str:
    """A result document of exactly ``size`` bytes."""
    head = f'{{"target":"{name}","plugin":"chaos","result":"'
    return head + "x" * (size - len(head) - 2) + '"}'


def test_a_failed_publish_entry_fails_alone() -> None:
    bus = FakeBus(fails={"1": "InternalError"})
    a, b, c = tickets("a", "b", "c")
    entries = posts((a, "doc-a"), (b, "doc-b"), (c, "doc-c"))
    sent = sending.publish(bus, entries)
    assert sent.kind == sending.PUBLISH and sent.succeeded() == [entries[0], entries[2]]
    assert sent.failures() == [(entries[1], "InternalError")]
    assert sent.error is None and [name for name, _ in bus.calls] == ["publish"]  # the delete is not its job
    assert bus.calls[0][1] == [Publish("0", "doc-a", {}, "sesshu", "id-a"), Publish("1", "doc-b", {}, "sesshu", "id-b"),
                               Publish("2", "doc-c", {}, "sesshu", "id-c")]


def test_a_publish_call_failing_as_a_whole_fails_every_entry() -> None:
    a, b = tickets("a", "b")
    sent = sending.publish(FakeBus(raise_on="publish"), posts((a, "doc-a"), (b, "doc-b")))
    assert sent.succeeded() == [] and [err for _, err in sent.failures()] == ["throttled", "throttled"]
    assert sent.error == "throttled"


def test_delete_failures_are_reported_per_entry() -> None:
    bus = FakeBus(fails={"0": "ReceiptHandleIsInvalid", "2": "InternalError"})
    p, e1, e2 = tickets("p", "e1", "e2")
    entries = [Drop(p, "done"), Drop(e1, "empty"), Drop(e2, "empty")]
    sent = sending.delete(bus, entries)
    assert sent.kind == sending.DELETE
    assert sent.failures() == [(entries[0], "ReceiptHandleIsInvalid"), (entries[2], "InternalError")]
    assert sent.succeeded() == [entries[1]]
    assert [e.receipt_handle for e in bus.calls[0][1]] == ["rh-p", "rh-e1", "rh-e2"]


def test_a_visibility_change_carries_its_seconds() -> None:
    bus = FakeBus()
    (r,) = tickets("r")
    sent = sending.change_visibility(bus, [Change(r, 0)])
    assert bus.calls == [("change_visibility", [Visibility("0", "rh-r", 0)])] and not sent.failed


@pytest.mark.parametrize("fails", [False, True])
def test_an_upload_stores_the_document_only(fails: bool) -> None:
    bus = FakeBus(raise_on="put_object" if fails else "")
    (big,) = tickets("big")
    (pointer,) = posts((big, "pointer-doc"))
    entry = Upload(big, "huge-doc", "sesshu/id-big.json", pointer)
    sent = sending.upload(bus, S3Target("bucket", "sesshu/"), entry)
    assert bus.calls == [("put_object", ["bucket", "sesshu/id-big.json", "huge-doc"])]  # no publish here
    if fails:
        assert sent.failures() == [(entry, "S3 upload failed: access denied")] and sent.error is not None
    else:
        assert sent.succeeded() == [entry] and sent.error is None


def test_a_bus_bug_does_not_escape_the_sender() -> None:
    class Broken(FakeBus):
        def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
            raise KeyError("oops")

    (r,) = tickets("r")
    change = Change(r, 5)
    sent = sending.change_visibility(Broken(), [change])
    assert sent.failures() == [(change, "unexpected KeyError: 'oops'")]
    assert sent.error == "unexpected KeyError: 'oops'"


def test_a_batch_refused_as_too_long_goes_entry_by_entry(caplog: pytest.LogCaptureFixture) -> None:
    """Were the sizes ever miscounted, the batch is split instead of retried as a whole for ever."""
    bus = StrictBus()
    a, b = tickets("a", "b")
    sent = sending.publish(bus, posts((a, document(200_000, "a")), (b, document(100_000, "b"))))
    assert bus.ops() == ["publish", "publish", "publish"]
    assert [e.ticket for e in sent.succeeded()] == [a, b] and not sent.failed
    assert isinstance(sent.error, Fault) and sent.error.permanent
    assert "one by one" in sent.error
    health = BusHealth(clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, "sesshu"):
        health.sent(sent.error)
    assert "not an outage" in caplog.text and "BatchRequestTooLong" in caplog.text
    assert "bus outage" not in caplog.text


def test_one_invalid_entry_fails_alone() -> None:
    bus = StrictBus(bad_documents=("bad",))
    a, bad, c = tickets("a", "bad", "c")
    entries = posts((a, "ok-a"), (bad, "bad"), (c, "ok-c"))
    sent = sending.publish(bus, entries)
    assert [e.ticket for e in sent.succeeded()] == [a, c]
    assert sent.failures() == [(entries[1], "InvalidParameter: bad")]


def test_failure_records_go_to_the_failures_topic() -> None:
    bus = FakeBus(fails={"1": "InternalError"})
    a, b = tickets("a", "b")
    attrs = {"plugin": "chaos", "outcome": "rejected"}
    entries = [Post(a, "record-a", attrs, 10), Post(b, "record-b", attrs, 10)]
    sent = sending.publish(bus, entries, kind=sending.FAILURE)
    assert bus.calls == [("publish_failures", [Publish("0", "record-a", attrs, "sesshu", "id-a"),
                                               Publish("1", "record-b", attrs, "sesshu", "id-b")])]
    assert sent.kind == sending.FAILURE
    assert sent.succeeded() == [entries[0]] and sent.failures() == [(entries[1], "InternalError")]


# -- cutting results into PublishBatch calls -------------------------------------------


def test_a_batch_takes_ten_results_at_most_and_leaves_the_rest_queued() -> None:
    from collections import deque

    queue = deque(posts(*((t, "{}") for t in tickets(*map(str, range(13))))))
    batch, size = sending.take_posts(queue)
    assert [p.ticket.message.message_id for p in batch] == [f"id-{n}" for n in range(10)]
    assert size == 10 * 2 and len(queue) == 3


def test_a_batch_stops_before_256_kib_and_a_lone_big_result_goes_alone() -> None:
    from collections import deque

    a, b, c = tickets("a", "b", "c")
    queue = deque(posts((a, document(150_000)), (b, document(150_000)), (c, document(100))))
    batch, size = sending.take_posts(queue)
    assert [p.ticket for p in batch] == [a] and size == 150_000
    batch, size = sending.take_posts(queue)
    assert [p.ticket for p in batch] == [b, c] and size == 150_100
    assert not queue
    over = deque(posts((a, document(300_000))))  # the settler sent it alone: it still goes
    assert [p.ticket for p in sending.take_posts(over)[0]] == [a]


def test_a_post_is_measured_as_sns_counts_it_unless_its_size_is_known() -> None:
    (t,) = tickets("m")
    assert Post.measured(t, "abc", {"plugin": "chaos"}).size > len("abc")  # the attribute counts too
    assert Post.measured(t, "abc", {}, size=7).size == 7
