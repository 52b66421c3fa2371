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
from sesshu.busio import STORED_KEYS, BusHealth, Fault, Outbox, S3Target, receive, send_batch
from sesshu.settle import Ticket

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
        if sum(message_size(e.document) for e in entries) > SNS_MAX_BYTES:
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
    sent = send_batch(bus, [], [(a, document(200_000, "a")), (b, document(100_000, "b"))], [])
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
    sent = send_batch(bus, [], [(a, "ok-a"), (bad, "bad"), (c, "ok-c")], [])
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
            sent = send_batch(bus, [], [(ticket("a"), "doc")], [])
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
        sent = send_batch(bus, [], [(ticket("a"), "doc-a"), (ticket("b"), "doc-b")], [])
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
