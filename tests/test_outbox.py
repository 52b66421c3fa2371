"""The outbox: what waits for the sender, and when a batch is due (a fake clock, in milliseconds)."""

from __future__ import annotations

import json

from sesshu.bus import BATCH_MAX, SNS_MAX_BYTES, BusError, Message, Publish, Visibility
from sesshu.membus import MemoryBus
from sesshu.outbox import LINGER, Outbox, S3Target, Sent
from sesshu.ticket import Ticket


def ticket(n: int) -> Ticket:
    return Ticket(Message(f"m-{n}", f"r-{n}", "{}", 1))


def test_light_load_sends_at_once() -> None:
    box = Outbox()
    box.publish(ticket(1), "{}")
    box.note_waiting(100.0)
    assert box.due(100.0, more_coming=False)


def test_a_partial_batch_lingers_while_more_results_are_coming() -> None:
    box = Outbox()
    box.publish(ticket(1), "{}")
    box.note_waiting(100.0)
    assert not box.due(100.0, more_coming=True)
    assert box.linger_until() == 100.0 + LINGER
    assert not box.due(100.0 + LINGER * 0.9, more_coming=True)
    assert box.due(100.0 + LINGER, more_coming=True)
    assert box.linger_until() is None  # the clock starts afresh with the next result


def test_a_full_batch_never_lingers() -> None:
    box = Outbox()
    for n in range(10):
        box.publish(ticket(n), "{}")
    box.note_waiting(5.0)
    assert box.due(5.0, more_coming=True)


def test_visibility_changes_never_linger() -> None:
    box = Outbox()
    box.publish(ticket(1), "{}")
    box.release(ticket(2), 0)
    box.note_waiting(5.0)
    assert box.due(5.0, more_coming=True)


def test_backlog_is_two_batches() -> None:
    box = Outbox()
    for n in range(19):
        box.publish(ticket(n), "{}")
    assert not box.backlogged()
    box.delete(ticket(99))
    assert box.backlogged()


def test_queuing_an_outcome_drops_the_pending_extension() -> None:
    """An extension must never reach SQS after (or beside) the release or delete of its message."""
    bus = MemoryBus()
    for queue_outcome in ("release", "delete", "publish", "upload"):
        outbox = Outbox()
        bus.send(json.dumps({"plugin": "chaos", "target": f"chaos:echo:{queue_outcome}"}))
        ticket = Ticket(bus.receive(1, 0)[0])
        outbox.extend(ticket, 30)
        if queue_outcome == "release":
            outbox.release(ticket, 0)
        elif queue_outcome == "delete":
            outbox.delete(ticket)
        elif queue_outcome == "publish":
            outbox.publish(ticket, "{}")
        else:
            outbox.upload(ticket, "{}", "key", "{}")
        assert not outbox.extending(ticket), queue_outcome


# -- failure records: out before the last release, batched like results -------------------

ATTRS = {"plugin": "chaos", "outcome": "rejected", "sesshu_version": "0.1.0"}


class RecordingBus(MemoryBus):
    """A memory bus that keeps the order of the sender's calls, and can refuse failure records."""

    def __init__(self, refuse_failures: bool = False) -> None:
        super().__init__()
        self.order: list[str] = []
        self.refuse_failures = refuse_failures

    def publish_failures(self, entries: list[Publish]) -> dict[str, str]:
        self.order.append(f"failures:{len(entries)}")
        if self.refuse_failures:
            raise BusError("publish_batch: NotFound: no such topic", "NotFound")
        assert len(entries) <= BATCH_MAX and sum(e.size() for e in entries) <= SNS_MAX_BYTES
        return super().publish_failures(entries)

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        self.order.append(f"visibility:{len(entries)}")
        return super().change_visibility(entries)


def turns(box: Outbox, bus: MemoryBus) -> list[Sent]:
    out = []
    while (call := box.next_batch(bus)) is not None:
        out.append(call())
    return out


def test_a_record_is_published_before_its_release_in_the_same_turn() -> None:
    bus = RecordingBus()
    box = Outbox()
    t = ticket(1)
    box.publish_failure(t, '{"failure":{}}', ATTRS)
    box.release(t, 0)
    assert box.urgent()
    (sent,) = turns(box, bus)
    assert bus.order == ["failures:1", "visibility:1"]
    assert sent.failures_published == [t] and not sent.failures_failed
    assert bus.failures[0].attributes == ATTRS


def test_a_release_waits_while_its_record_is_still_queued() -> None:
    """Eleven records: the eleventh does not fit the first batch, so its release waits a turn."""
    bus = RecordingBus()
    box = Outbox()
    tickets = [ticket(n) for n in range(11)]
    for t in tickets:
        box.publish_failure(t, "{}", ATTRS)
        box.release(t, 0)
    first, second = turns(box, bus)
    assert bus.order == ["failures:10", "visibility:10", "failures:1", "visibility:1"]
    assert first.failures_published == tickets[:10]
    assert second.failures_published == tickets[10:]


def test_a_release_without_a_record_does_not_wait_for_others() -> None:
    bus = RecordingBus()
    box = Outbox()
    held = [ticket(n) for n in range(11)]
    for t in held:
        box.publish_failure(t, "{}", ATTRS)
    free = ticket(99)
    box.release(held[10], 0)  # its record is the eleventh: not in the first batch
    box.release(free, 5)
    call = box.next_batch(bus)
    assert call is not None
    call()
    assert bus.order == ["failures:10", "visibility:1"]  # the free release went, not held[10]'s
    assert list(box.releases) == [(held[10], 0)]


def test_a_failed_record_publish_still_releases_the_message() -> None:
    bus = RecordingBus(refuse_failures=True)
    box = Outbox()
    t = ticket(1)
    box.publish_failure(t, "{}", ATTRS)
    box.release(t, 0)
    (sent,) = turns(box, bus)
    assert [x for x, _ in sent.failures_failed] == [t] and not sent.failures_published
    assert bus.order == ["failures:1", "visibility:1"]
    assert not box  # nothing left: the release went out


def test_records_are_cut_at_256_kib_counting_their_attributes() -> None:
    bus = RecordingBus()
    box = Outbox()
    attrs_size = Publish("0", "", ATTRS).size()
    # Two records that fit 256 KiB together only without their attributes.
    half = SNS_MAX_BYTES // 2 - attrs_size // 2
    for n in range(2):
        box.publish_failure(ticket(n), "x" * half, ATTRS)
    turns(box, bus)
    assert bus.order == ["failures:1", "failures:1"]


def test_results_are_cut_at_256_kib_counting_their_attributes() -> None:
    bus = MemoryBus()
    box = Outbox()
    attrs = {"plugin": "chaos", "outcome": "done", "sesshu_version": "0.1.0"}
    half = SNS_MAX_BYTES // 2
    for n in range(2):
        box.publish(ticket(n), "x" * half, attrs)  # 256 KiB in all: over, with the attributes
    turns(box, bus)
    assert bus.requests["publish"] == 2 and bus.requests["publish_batch"] == 0
    assert bus.attributes == [attrs, attrs]


def test_a_pointer_goes_with_its_own_attributes() -> None:
    bus = MemoryBus()
    box = Outbox()
    pointer = {"plugin": "chaos", "outcome": "done", "sesshu_version": "0.1.0", "result_location": "s3"}
    box.upload(ticket(1), "huge", "k", '{"result_s3":{}}', pointer)
    call = box.next_batch(bus, S3Target("b", "p/"))
    assert call is not None
    call()
    assert bus.published == ['{"result_s3":{}}'] and bus.attributes == [pointer]
