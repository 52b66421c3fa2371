"""The sender's batches and the bus health log, against a fake bus that keeps AWS's limits.

moto publishes a PublishBatch of any size and deletes twenty entries in one
DeleteMessageBatch; SNS and SQS refuse both. :class:`StrictBus` refuses them
as AWS does, so these tests fail where the real service would.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesshu.bus import (
    BATCH_MAX,
    SNS_MAX_BYTES,
    BusError,
    Delete,
    Message,
    Publish,
    Visibility,
    batches,
    error_name,
    message_size,
)
from sesshu.busio import BusHealth, Fault, Lane, receive
from sesshu.outbox import STORED_KEYS, Outbox, S3Target, send_batch
from sesshu.ticket import Ticket

S3 = S3Target("bucket", "sesshu/")


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


def document(size: int, name: str = "t") -> str:
    """A result document of exactly ``size`` bytes."""
    head = f'{{"target":"{name}","plugin":"chaos","result":"'
    return head + "x" * (size - len(head) - 2) + '"}'


def drain(outbox: Outbox, bus: StrictBus) -> list[Any]:
    """Run sender turns until the outbox is empty; return each turn's Sent."""
    turns = []
    while (call := outbox.next_batch(bus, S3)) is not None:
        turns.append(call())
    return turns


# -- what a batch may hold -------------------------------------------------------------


def test_a_full_document_and_a_pointer_never_exceed_256_kib_together() -> None:
    """The issue's case: 262,144 bytes of document, and an oversized result's pointer, finished together."""
    bus = StrictBus()
    outbox = Outbox()
    full, big = ticket("full"), ticket("big")
    assert message_size(document(SNS_MAX_BYTES)) == 262144
    outbox.publish(full, document(SNS_MAX_BYTES, "full"))
    outbox.upload(big, document(400_000, "big"), "sesshu/id-big.json", '{"result_s3":{"key":"sesshu/id-big.json"}}')
    turns = drain(outbox, bus)
    assert [t.published for t in turns] == [[big], [full]]
    assert all(t.error is None and not t.publish_failed for t in turns)
    assert bus.ops().count("put_object") == 1
    assert all(len(entries) == 1 for name, entries in bus.calls if name == "publish")


def test_a_pointer_takes_one_of_the_ten_entries() -> None:
    bus = StrictBus()
    outbox = Outbox()
    small = [ticket(f"s{i}") for i in range(BATCH_MAX)]
    for t in small:
        outbox.publish(t, document(100, t.message.message_id))
    outbox.upload(ticket("big"), "huge", "k", "pointer")
    drain(outbox, bus)
    batches = [len(entries) for name, entries in bus.calls if name == "publish"]
    assert batches == [BATCH_MAX, 1]
    assert bus.published()[BATCH_MAX - 1] == "pointer"  # in the first batch: the upload is never held back


def test_deletes_go_in_tens() -> None:
    bus = StrictBus()
    outbox = Outbox()
    for i in range(BATCH_MAX):
        outbox.publish(ticket(f"p{i}"), "{}")
    empties = [ticket(f"e{i}") for i in range(5)]
    for t in empties:
        outbox.delete(t)
    (sent,) = drain(outbox, bus)
    assert [len(entries) for name, entries in bus.calls if name == "delete"] == [10, 5]
    assert sent.deleted == empties and len(sent.published) == BATCH_MAX and sent.error is None


def test_message_size_counts_utf8_bytes_and_attributes() -> None:
    assert message_size("abc") == 3
    assert message_size("é€") == 5
    # SNS counts each attribute's name, data type and value.
    assert message_size("x", {"kind": {"DataType": "String", "StringValue": "ab"}}) == 1 + 4 + 6 + 2
    assert message_size("", {"b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}) == 1 + 6 + 2


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("publish"), st.integers(60, SNS_MAX_BYTES)),
    st.tuples(st.just("upload"), st.integers(20, 300)),
    st.tuples(st.just("delete"), st.just(0)),
), max_size=40))
def test_every_batch_keeps_the_limits_and_every_result_goes_once(work: list[tuple[str, int]]) -> None:
    bus = StrictBus()
    outbox = Outbox()
    expected: dict[int, str] = {}
    for i, (kind, size) in enumerate(work):
        t = ticket(str(i))
        if kind == "publish":
            outbox.publish(t, document(size, str(i)))
            expected[id(t)] = "published"
        elif kind == "upload":
            outbox.upload(t, "huge", f"k{i}", "p" * size)
            expected[id(t)] = "published"
        else:
            outbox.delete(t)
            expected[id(t)] = "deleted"
    turns = drain(outbox, bus)
    got = {id(t): "published" for s in turns for t in s.published}
    got.update({id(t): "deleted" for s in turns for t in s.deleted})
    assert got == expected
    assert all(s.error is None and not s.publish_failed and not s.delete_failed for s in turns)
    assert bus.ops().count("put_object") == sum(kind == "upload" for kind, _ in work)


# -- refusals: permanent errors are not outages ------------------------------------------


def test_a_batch_refused_as_too_long_goes_entry_by_entry(caplog: pytest.LogCaptureFixture) -> None:
    """Were the sizes ever miscounted, the batch is split instead of retried as a whole for ever."""
    bus = StrictBus()
    a, b = ticket("a"), ticket("b")
    sent = send_batch(bus, [], [(a, document(200_000, "a"), {}), (b, document(100_000, "b"), {})], [])
    assert bus.ops() == ["publish", "publish", "publish", "delete"]
    assert sent.published == [a, b] and not sent.publish_failed
    assert isinstance(sent.error, Fault) and sent.error.permanent
    assert "one by one" in sent.error
    health = BusHealth(clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, "sesshu.supervisor"):
        health.sent(sent.error)
    assert "not an outage" in caplog.text and "BatchRequestTooLong" in caplog.text
    assert "bus outage" not in caplog.text


def test_one_invalid_entry_fails_alone() -> None:
    bus = StrictBus(bad_documents=("bad",))
    a, bad, c = ticket("a"), ticket("bad"), ticket("c")
    sent = send_batch(bus, [], [(a, "ok-a", {}), (bad, "bad", {}), (c, "ok-c", {})], [])
    assert sent.published == [a, c]
    assert sent.publish_failed == [(bad, "InvalidParameter: bad")]
    assert [e.receipt_handle for name, entries in bus.calls if name == "delete" for e in entries] == ["rh-a", "rh-c"]


@pytest.mark.parametrize("code", ["AuthorizationError", "AccessDenied", "NotFound", "InvalidParameter"])
def test_a_permanent_refusal_is_logged_as_such_once_a_minute(code: str, caplog: pytest.LogCaptureFixture) -> None:
    error = BusError(f"publish: {code}: refused", code)
    now = [100.0]
    health = BusHealth(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "sesshu.supervisor"):
        for step in (0.0, 10.0, 30.0, 61.0):
            bus = StrictBus(refuse={"publish": error})
            now[0] = 100.0 + step
            sent = send_batch(bus, [], [(ticket("a"), "doc", {})], [])
            assert sent.publish_failed and sent.published == []
            if code != "InvalidParameter":  # one entry cannot be split further
                assert bus.ops() == ["publish"]
            health.sent(sent.error)
    refusals = [r for r in caplog.records if "not an outage" in r.getMessage()]
    assert len(refusals) == 2  # at 0 s and at 61 s; the lines between are the same refusal
    assert "outage while sending" not in caplog.text and "recovered" not in caplog.text


def test_an_outage_is_still_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    health = BusHealth(clock=lambda: 0.0)
    bus = StrictBus(refuse={"publish": BusError("publish: connect timeout", "ConnectTimeoutError")})
    with caplog.at_level(logging.INFO, "sesshu.supervisor"):
        sent = send_batch(bus, [], [(ticket("a"), "doc-a", {}), (ticket("b"), "doc-b", {})], [])
        assert bus.ops() == ["publish"]  # not split: the endpoint is away, not the batch at fault
        health.sent(sent.error)
        health.sent(None)
    assert "bus outage while sending: publish: connect timeout" in caplog.text
    assert "sending recovered after" in caplog.text and "not an outage" not in caplog.text


def test_a_refusal_during_an_outage_ends_it(caplog: pytest.LogCaptureFixture) -> None:
    health = BusHealth(clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, "sesshu.supervisor"):
        health.sent(Fault("publish: timeout", "ReadTimeoutError"))
        health.sent(Fault("publish: AuthorizationError", "AuthorizationError"))
    assert "bus outage while sending" in caplog.text and "sending recovered" in caplog.text


@pytest.mark.parametrize("code, outage", [
    ("AWS.SimpleQueueService.NonExistentQueue", False),
    ("QueueDoesNotExist", False),
    ("AccessDenied", False),
    ("RequestThrottled", True),
    ("EndpointConnectionError", True),
])
def test_receive_refusals_back_off_without_an_outage(code: str, outage: bool,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    got = receive(StrictBus(refuse={"receive": BusError(f"receive_message: {code}", code)}), 10, 0)
    assert got.error is not None and got.messages == []
    health = BusHealth(clock=lambda: 50.0)
    with caplog.at_level(logging.INFO, "sesshu.supervisor"):
        health.receive_failed(got.error)
        health.received()
    assert health.poll_after > 50.0  # backs off either way
    assert ("bus outage: " in caplog.text) is outage
    assert ("not an outage" in caplog.text) is not outage
    assert ("bus recovered" in caplog.text) is outage


@pytest.mark.parametrize("code, name, permanent, splittable", [
    ("BatchRequestTooLong", "BatchRequestTooLong", True, True),
    ("AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong", True, True),
    ("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "TooManyEntriesInBatchRequest", True, True),
    ("InvalidParameterValueException", "InvalidParameterValue", True, True),
    ("AuthorizationError", "AuthorizationError", True, False),
    ("AccessDeniedException", "AccessDenied", True, False),
    ("NotFound", "NotFound", True, False),
    ("AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue", True, False),
    ("Throttling", "Throttling", False, False),
    ("InternalError", "InternalError", False, False),
    ("ReadTimeoutError", "ReadTimeoutError", False, False),
])
def test_error_classes(code: str, name: str, permanent: bool, splittable: bool) -> None:
    assert error_name(code) == name
    error = BusError("x", code)
    assert (error.permanent, error.splittable) == (permanent, splittable)


# -- uploads: an object stored once is not stored again --------------------------------------


def test_a_stored_result_is_not_uploaded_again_when_its_message_comes_back() -> None:
    outbox = Outbox()
    key, pointer = "sesshu/id-big.json", '{"result_s3":"sesshu/id-big.json"}'
    down = StrictBus(refuse={"publish": BusError("publish: timeout", "ReadTimeoutError")})
    outbox.upload(ticket("big"), "first run", key, pointer)
    (first,) = drain(outbox, down)
    assert down.ops() == ["put_object", "publish"] and first.publish_failed  # stored, not published
    # The message is retried, its job runs again, and the result goes out: only its pointer.
    up = StrictBus()
    again = ticket("big")
    outbox.upload(again, "second run", key, pointer)
    (second,) = drain(outbox, up)
    assert up.ops() == ["publish", "delete"]
    assert second.published == [again] and up.published() == [pointer]


def test_a_failed_upload_is_not_remembered() -> None:
    class NoS3(StrictBus):
        def put_object(self, bucket: str, key: str, body: str) -> None:
            self.calls.append(("put_object", [key]))
            raise BusError("put_object: NoSuchBucket", "NoSuchBucket")

    outbox = Outbox()
    for _ in range(2):
        bus = NoS3()
        outbox.upload(ticket("big"), "doc", "k", "pointer")
        (sent,) = drain(outbox, bus)
        assert bus.ops() == ["put_object"] and sent.publish_failed
    assert outbox.stored == {}


def test_the_memory_of_stored_keys_is_bounded() -> None:
    outbox = Outbox()
    bus = StrictBus()
    for i in range(STORED_KEYS + 5):
        outbox.upload(ticket(str(i)), "doc", f"k{i}", "pointer")
    drain(outbox, bus)
    assert len(outbox.stored) == STORED_KEYS
    assert "k0" not in outbox.stored and f"k{STORED_KEYS + 4}" in outbox.stored


# -- batches for sesshu submit -------------------------------------------------------------


@pytest.mark.parametrize("sizes, limit, expected", [
    ([], 100, []),
    ([10] * 25, 1000, [range(0, 10), range(10, 20), range(20, 25)]),
    ([60, 40, 1, 99, 100], 100, [range(0, 2), range(2, 4), range(4, 5)]),
    ([300, 5], 100, [range(0, 1), range(1, 2)]),  # too big alone: it goes alone, for the server to judge
])
def test_batches(sizes: list[int], limit: int, expected: list[range]) -> None:
    assert batches(sizes, limit) == expected


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 1000), st.integers(1, 10))
def test_batches_cover_everything_in_order_within_limits(sizes: list[int], limit: int, entries: int) -> None:
    got = batches(sizes, limit, entries)
    assert [i for r in got for i in r] == list(range(len(sizes)))
    for r in got:
        assert 1 <= len(r) <= entries
        assert len(r) == 1 or sum(sizes[i] for i in r) <= limit


# -- one sender turn, in order and per entry (a fake bus that records) --------------


class FakeBus:
    """Records every call; fails the entries (or whole calls) it is told to."""

    def __init__(self, publish_fails: dict[str, str] | None = None,
                 delete_fails: dict[str, str] | None = None, raise_on: str = "") -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.publish_fails = publish_fails or {}
        self.delete_fails = delete_fails or {}
        self.raise_on = raise_on

    def _call(self, name: str, entries: list[Any], fails: dict[str, str]) -> dict[str, str]:
        self.calls.append((name, list(entries)))
        if self.raise_on == name:
            raise BusError("throttled", "Throttling")
        return dict(fails)

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        return self._call("publish", entries, self.publish_fails)

    def delete(self, entries: list[Delete]) -> dict[str, str]:
        return self._call("delete", entries, self.delete_fails)

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        return self._call("change_visibility", entries, {})

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        raise AssertionError("the sender never receives")

    def queue_info(self) -> Any:
        raise AssertionError("the sender never asks")

    def put_object(self, bucket: str, key: str, body: str) -> None:
        self.calls.append(("put_object", [bucket, key, body]))
        if self.raise_on == "put_object":
            raise BusError("access denied", "AccessDenied")

    def deleted(self) -> list[str]:
        return [e.receipt_handle for name, entries in self.calls if name == "delete" for e in entries]


def tickets(*names: str) -> list[Ticket]:
    return [Ticket(Message(f"id-{n}", f"rh-{n}", "{}", 1)) for n in names]


def test_a_failed_publish_entry_is_not_deleted() -> None:
    bus = FakeBus(publish_fails={"1": "InternalError"})
    a, b, c = tickets("a", "b", "c")
    sent = send_batch(bus, [], [(a, "doc-a", {}), (b, "doc-b", {}), (c, "doc-c", {})], [])
    assert sent.published == [a, c]
    assert sent.publish_failed == [(b, "InternalError")]
    assert bus.deleted() == ["rh-a", "rh-c"]
    assert sent.deleted == [] and sent.delete_failed == [] and sent.error is None
    assert [name for name, _ in bus.calls] == ["publish", "delete"]


def test_releases_then_publishes_then_deletes_in_one_turn() -> None:
    bus = FakeBus()
    r, p, e = tickets("r", "p", "e")
    sent = send_batch(bus, [(r, 0)], [(p, "doc-p", {})], [e])
    assert [name for name, _ in bus.calls] == ["change_visibility", "publish", "delete"]
    assert bus.calls[0][1] == [Visibility("0", "rh-r", 0)]
    assert bus.calls[1][1] == [Publish("0", "doc-p")]
    assert bus.deleted() == ["rh-p", "rh-e"]
    assert sent.published == [p] and sent.deleted == [e]


def test_delete_failures_are_reported() -> None:
    bus = FakeBus(delete_fails={"0": "ReceiptHandleIsInvalid", "2": "InternalError"})
    p, e1, e2 = tickets("p", "e1", "e2")
    sent = send_batch(bus, [], [(p, "doc", {})], [e1, e2])
    assert sent.published == [p]  # published even though its delete failed
    assert sent.delete_failed == [(p, "ReceiptHandleIsInvalid"), (e2, "InternalError")]
    assert sent.deleted == [e1]


def test_a_publish_call_failing_as_a_whole_deletes_nothing() -> None:
    bus = FakeBus(raise_on="publish")
    a, b, e = tickets("a", "b", "e")
    sent = send_batch(bus, [], [(a, "doc-a", {}), (b, "doc-b", {})], [e])
    assert sent.published == []
    assert sent.publish_failed == [(a, "throttled"), (b, "throttled")]
    assert bus.deleted() == ["rh-e"]  # an empty result's delete does not depend on any publish
    assert sent.error == "throttled"


def test_a_delete_call_failing_as_a_whole_is_reported_per_ticket() -> None:
    bus = FakeBus(raise_on="delete")
    p, e = tickets("p", "e")
    sent = send_batch(bus, [], [(p, "doc", {})], [e])
    assert sent.published == [p]
    assert sent.delete_failed == [(p, "throttled"), (e, "throttled")]
    assert sent.deleted == [] and sent.error == "throttled"


@pytest.mark.parametrize("fails", [False, True])
def test_an_upload_is_published_as_a_pointer_only_once_stored(fails: bool) -> None:
    bus = FakeBus(raise_on="put_object" if fails else "")
    (big,) = tickets("big")
    sent = send_batch(bus, [], [], [], [(big, "huge-doc", "sesshu/id-big.json", "pointer-doc", {})],
                      S3Target("bucket", "sesshu/"))
    assert bus.calls[0] == ("put_object", ["bucket", "sesshu/id-big.json", "huge-doc"])
    if fails:
        assert sent.publish_failed == [(big, "S3 upload failed: access denied")]
        assert [name for name, _ in bus.calls] == ["put_object"]  # no publish, no delete
    else:
        assert bus.calls[1] == ("publish", [Publish("0", "pointer-doc")])
        assert sent.published == [big] and bus.deleted() == ["rh-big"]


def test_a_bus_bug_does_not_escape_the_sender() -> None:
    class Broken(FakeBus):
        def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
            raise KeyError("oops")

    (r,) = tickets("r")
    sent = send_batch(Broken(), [(r, 5)], [], [])
    assert sent.visibility_failed == [(r, "unexpected KeyError: 'oops'")]
    assert sent.error == "unexpected KeyError: 'oops'"


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
