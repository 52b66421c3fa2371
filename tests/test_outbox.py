"""The outbox: which sender call goes next, what may overlap, and what follows each call.

A fake clock and fake buses: every ordering rule is shown with calls held
in flight at once, completed in the order the test chooses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesshu.bus import sending
from sesshu.bus.api import BATCH_MAX, SNS_MAX_BYTES, BusError, Fault, Publish, Visibility, message_size
from sesshu.bus.memory import MemoryBus
from sesshu.bus.outbox import DELETE_LINGER, LINGER, STORED_KEYS, Outbox, S3Target, Sent
from sesshu.bus.payloads import pointer_body
from sesshu.bus.sending import Completion, Deleted, Unchanged, Unsent
from sesshu.jobs.ticket import Ticket
from tests.harness.clock import FakeClock
from tests.test_lanes import StrictBus, ticket
from tests.test_sending import FakeBus, document

S3 = S3Target("bucket", "sesshu/")


def box(clock: Callable[[], float] | None = None, senders: int = 1) -> Outbox[Ticket]:
    return Outbox(clock or FakeClock(), senders=senders)


def drain(outbox: Outbox[Ticket], bus: Any, more_coming: bool = False) -> list[Sent[Ticket]]:
    """Run sender calls one at a time until nothing is due; return each call's Sent.

    Without more coming, as when stopping: deletes go at once too.
    """
    done = []
    while (call := outbox.next_call(bus, S3, more_coming, stopping=not more_coming)) is not None:
        sent = call()
        outbox.completed(sent, stopping=not more_coming)
        done.append(sent)
    return done


def kinds(sent: list[Sent[Ticket]]) -> list[str]:
    return [s.kind for s in sent]


def published(sent: list[Sent[Ticket]]) -> list[Ticket]:
    return [e.ticket for s in sent if s.kind == sending.PUBLISH for e in s.succeeded()]


def deleted(sent: list[Sent[Ticket]]) -> list[tuple[Ticket, str]]:
    return [(e.ticket, e.outcome) for s in sent if s.kind == sending.DELETE for e in s.succeeded()]


def drops(sent: Sent[Ticket]) -> list[tuple[Ticket, str]]:
    """A delete call's entries: (ticket, the outcome it confirms)."""
    assert sent.kind == sending.DELETE
    return [(e.ticket, e.outcome) for e in sent.entries]


def changes(sent: Sent[Ticket]) -> list[tuple[Ticket, int]]:
    """A visibility call's entries: (ticket, seconds)."""
    assert sent.kind == sending.VISIBILITY
    return [(e.ticket, e.seconds) for e in sent.entries]


def described(done: list[Completion[Ticket]]) -> list[tuple[Any, ...]]:
    """Completions as comparable tuples (they compare by identity): (class, ticket, [outcome,] error)."""
    out: list[tuple[Any, ...]] = []
    for c in done:
        if isinstance(c, Deleted):
            out.append((Deleted, c.ticket, c.outcome, c.error))
        else:
            out.append((type(c), c.ticket, c.error))
    return out


# -- when a call is due -----------------------------------------------------------------


def test_light_load_publishes_at_once_and_deletes_wait_for_a_batch() -> None:
    clock = FakeClock()
    outbox = box(clock)
    a = ticket("a")
    outbox.publish(a, "{}")
    publish = outbox.next_call(FakeBus(), S3, more_coming=False)
    assert publish is not None
    outbox.completed(publish())
    assert outbox.next_call(FakeBus(), S3, more_coming=False) is None  # no one waits on a delete
    clock.now += DELETE_LINGER
    delete = outbox.next_call(FakeBus(), S3, more_coming=False)
    assert delete is not None and drops(delete()) == [(a, "done")]


def test_a_stop_sends_every_delete_at_once() -> None:
    outbox = box()
    a = ticket("a")
    outbox.publish(a, "{}")
    sent = drain(outbox, FakeBus(), more_coming=False)
    assert kinds(sent) == ["publish", "delete"] and deleted(sent) == [(a, "done")]


def test_a_partial_batch_lingers_while_more_results_are_coming() -> None:
    clock = FakeClock()
    outbox = box(clock)
    outbox.publish(ticket("a"), "{}")
    assert outbox.next_call(FakeBus(), S3, more_coming=True) is None
    assert outbox.linger_until() == 100.0 + LINGER
    clock.now += LINGER * 0.9
    assert outbox.next_call(FakeBus(), S3, more_coming=True) is None
    clock.now = 100.0 + LINGER
    assert outbox.next_call(FakeBus(), S3, more_coming=True) is not None
    assert outbox.linger_until() is None  # the clock starts afresh with the next result


def test_a_partial_batch_waits_while_one_of_its_kind_is_in_flight() -> None:
    """It fills meanwhile; full batches overlap freely."""
    outbox = box(senders=4)
    for n in range(BATCH_MAX + 3):
        outbox.publish(ticket(str(n)), "{}")
    first = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    assert first is not None
    assert outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True) is None  # 3 wait: one is in flight
    for n in range(BATCH_MAX - 3):
        outbox.publish(ticket(f"more{n}"), "{}")
    assert outbox.next_call(FakeBus(), S3, more_coming=True) is not None  # full again: it overlaps
    outbox.completed(first())
    assert len(outbox.deletes) == BATCH_MAX


def test_a_full_batch_never_lingers() -> None:
    outbox = box()
    for n in range(BATCH_MAX):
        outbox.publish(ticket(str(n)), "{}")
    assert outbox.next_call(FakeBus(), S3, more_coming=True) is not None
    outbox.publish(ticket("half"), document(SNS_MAX_BYTES // 2 + 1))  # another like it would not fit
    assert outbox.next_call(FakeBus(), S3, more_coming=True) is not None


def test_visibility_changes_and_uploads_never_linger() -> None:
    outbox = box()
    outbox.publish(ticket("p"), "{}")
    outbox.release(ticket("r"), 0)
    outbox.upload(ticket("u"), "doc", "k", "pointer")
    calls = [outbox.next_call(FakeBus(), S3, more_coming=True) for _ in range(3)]
    assert [c is not None for c in calls] == [True, True, False]
    assert [c().kind for c in calls if c is not None] == ["visibility", "upload"]


def test_deletes_wait_across_turns_for_a_batch_of_ten() -> None:
    """Large results go one publish each; their deletes still share DeleteMessageBatch in tens."""
    clock = FakeClock()
    outbox = box(clock)
    bus = StrictBus()
    big = [ticket(f"big{n}") for n in range(25)]
    for t in big:
        outbox.publish(t, document(200_000, t.message.message_id))  # 200 KiB: one per PublishBatch
        drain(outbox, bus, more_coming=True)  # no lingering: another like it would not fit
        clock.now += 0.02
    assert [len(entries) for name, entries in bus.calls if name == "delete"] == [10, 10]
    assert len(outbox.deletes) == 5 and outbox.next_call(bus, S3, more_coming=True) is None
    clock.now = outbox.linger_until() or 0.0
    (last,) = drain(outbox, bus, more_coming=True)
    assert len(last.entries) == 5
    assert bus.ops().count("publish") == 25 and bus.ops().count("delete") == 3


def test_backlog_is_two_batches_per_sender() -> None:
    for senders in (1, 4):
        outbox = box(senders=senders)
        for n in range(2 * BATCH_MAX * senders - 1):
            outbox.publish(ticket(str(n)), "{}")
        assert not outbox.backlogged()
        outbox.delete(ticket("e"))
        assert outbox.backlogged()


# -- what a batch may hold ----------------------------------------------------------------


def test_a_full_document_and_a_pointer_never_exceed_256_kib_together() -> None:
    """A document of exactly 262,144 bytes and an oversized result's pointer, finished together."""
    bus = StrictBus()
    outbox = box()
    full, big = ticket("full"), ticket("big")
    assert message_size(document(SNS_MAX_BYTES)) == 262144
    outbox.publish(full, document(SNS_MAX_BYTES, "full"))
    outbox.upload(big, document(400_000, "big"), "sesshu/id-big.json", pointer_body("b", "sesshu/id-big.json"))
    sent = drain(outbox, bus)
    assert published(sent) == [big, full]  # the pointer first, though its upload came second
    assert all(s.error is None and not s.failed for s in sent)
    assert bus.ops().count("put_object") == 1
    assert all(len(entries) == 1 for name, entries in bus.calls if name == "publish")


def test_a_pointer_takes_one_of_the_ten_entries() -> None:
    bus = StrictBus()
    outbox = box()
    for n in range(BATCH_MAX):
        outbox.publish(ticket(f"s{n}"), document(100, f"s{n}"))
    outbox.upload(ticket("big"), "huge", "k", "pointer")
    drain(outbox, bus)
    assert [len(entries) for name, entries in bus.calls if name == "publish"] == [BATCH_MAX, 1]
    assert bus.published()[0] == "pointer"  # in the first batch: the upload is never held back


def test_deletes_go_in_tens() -> None:
    bus = StrictBus()
    outbox = box()
    for n in range(BATCH_MAX):
        outbox.publish(ticket(f"p{n}"), "{}")
    for n in range(5):
        outbox.delete(ticket(f"e{n}"), "empty")
    drain(outbox, bus)
    assert [len(entries) for name, entries in bus.calls if name == "delete"] == [10, 5]


@given(st.lists(st.one_of(
    st.tuples(st.just("publish"), st.integers(60, SNS_MAX_BYTES)),
    st.tuples(st.just("upload"), st.integers(20, 300)),
    st.tuples(st.just("delete"), st.just(0)),
), max_size=40), st.booleans())
def test_every_batch_keeps_the_limits_and_every_result_goes_once(work: list[tuple[str, int]],
                                                                  more_coming: bool) -> None:
    bus = StrictBus()
    clock = FakeClock()
    outbox = box(clock)
    expected: dict[Ticket, str] = {}
    for i, (kind, size) in enumerate(work):
        t = ticket(str(i))
        if kind == "publish":
            outbox.publish(t, document(size, str(i)))
            expected[t] = "done"
        elif kind == "upload":
            outbox.upload(t, "huge", f"k{i}", "p" * size)
            expected[t] = "done"
        else:
            outbox.delete(t, "empty")
            expected[t] = "empty"
    sent = drain(outbox, bus, more_coming)
    for _ in range(3):
        clock.now += DELETE_LINGER  # whatever lingered is due now
        sent += drain(outbox, bus, more_coming)
    assert len(deleted(sent)) == len(expected) and dict(deleted(sent)) == expected
    assert all(s.error is None and not s.failed for s in sent) and len(outbox) == 0
    assert bus.ops().count("put_object") == sum(kind == "upload" for kind, _ in work)


# -- ordering with several calls in flight -------------------------------------------------


def test_a_failed_publish_is_deleted_only_once_it_went_out() -> None:
    """Two publish calls in flight; the first fails, the second succeeds, and they come back out of order."""
    outbox = box(senders=2)
    first = [ticket(f"f{n}") for n in range(BATCH_MAX)]
    later = [ticket(f"l{n}") for n in range(BATCH_MAX)]
    for t in [*first, *later]:
        outbox.publish(t, f"doc-{t.message.message_id}")
    call1 = outbox.next_call(FakeBus(), S3, more_coming=True)
    call2 = outbox.next_call(FakeBus(), S3, more_coming=True)
    assert call1 is not None and call2 is not None and outbox.calls_in_flight == 2
    sent2 = call2()
    sent1 = call1.func(FakeBus(raise_on="publish"), *call1.args[1:])  # type: ignore[attr-defined]
    outbox.completed(sent2)
    assert outbox.completed(sent1) == []  # throttled: sent again, not settled
    assert sent1.error == "throttled"
    bus = FakeBus()
    drain(outbox, bus)
    # The throttled batch is published again and only then deleted; every message is deleted once.
    order = [(name, getattr(e, "receipt_handle", None) or e.document.removeprefix("doc-id-"))
             for name, entries in bus.calls for e in entries]
    deletes = [what for name, what in order if name == "delete"]
    assert sorted(deletes) == sorted(f"rh-{t.message.message_id.removeprefix('id-')}" for t in [*first, *later])
    for n in range(BATCH_MAX):
        assert order.index(("publish", f"f{n}")) < order.index(("delete", f"rh-f{n}"))


def test_an_extension_in_flight_holds_back_the_delete_of_its_message() -> None:
    outbox = box(senders=3)
    a, b = ticket("a"), ticket("b")
    outbox.extend(a, 30)
    extension = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    assert extension is not None
    outbox.delete(a, "empty")
    outbox.delete(b, "empty")
    # b's delete may run beside a's extension; a's must wait for it.
    delete_b = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    assert delete_b is not None
    sent_b = delete_b()
    assert drops(sent_b) == [(b, "empty")]
    outbox.completed(sent_b)
    assert outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True) is None
    outbox.completed(extension())
    delete_a = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    assert delete_a is not None and drops(delete_a()) == [(a, "empty")]


def test_no_extension_is_queued_while_a_delete_is_in_flight() -> None:
    outbox = box(senders=2)
    a = ticket("a")
    outbox.delete(a, "empty")
    delete = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    assert delete is not None
    outbox.extend(a, 30)  # the heartbeat, while the delete is under way
    assert outbox.extending(a)  # so the settler queues nothing more for it
    assert outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True) is None
    outbox.completed(delete())
    assert not outbox.extending(a) and len(outbox) == 0


def test_a_release_waits_for_the_extension_in_flight() -> None:
    """Were they to overlap, the extension could land last and hide a released message."""
    outbox = box(senders=2)
    a = ticket("a")
    outbox.extend(a, 30)
    extension = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    outbox.release(a, 0)
    assert extension is not None and outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True) is None
    outbox.completed(extension())
    release = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    assert release is not None and changes(release()) == [(a, 0)]


def test_uploads_run_in_parallel() -> None:
    outbox = box(senders=3)
    for n in range(3):
        outbox.upload(ticket(f"u{n}"), "doc", f"k{n}", "pointer")
    calls = [outbox.next_call(FakeBus(), S3, more_coming=True) for _ in range(3)]
    assert all(c is not None for c in calls) and outbox.calls_in_flight == 3
    for call in calls:
        assert call is not None
        outbox.completed(call())
    assert len(outbox.publishes) == 3 and outbox.calls_in_flight == 0


def test_messages_in_flight_stay_locked() -> None:
    """The heartbeat extends what is being published, not only what is queued."""
    outbox = box()
    a, b = ticket("a"), ticket("b")
    outbox.publish(a, "{}")
    call = outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True)
    outbox.delete(b, "empty")
    assert set(map(id, outbox.waiting())) == {id(a), id(b)}
    assert call is not None
    outbox.completed(call())
    assert set(map(id, outbox.waiting())) == {id(a), id(b)}  # a's delete is queued now


def test_queuing_an_outcome_drops_the_pending_extension() -> None:
    """An extension must never reach SQS after (or beside) the release or delete of its message."""
    for queue_outcome in ("release", "delete", "publish", "upload"):
        outbox = box()
        t = ticket(queue_outcome)
        outbox.extend(t, 30)
        if queue_outcome == "release":
            outbox.release(t, 0)
        elif queue_outcome == "delete":
            outbox.delete(t, "empty")
        elif queue_outcome == "publish":
            outbox.publish(t, "{}")
        else:
            outbox.upload(t, "{}", "key", "{}")
        assert not outbox.extending(t), queue_outcome


# -- uploads: an object stored once is not stored again --------------------------------------


def test_a_stored_result_is_not_uploaded_again_when_its_message_comes_back() -> None:
    outbox = box()
    key = "sesshu/id-big.json"
    pointer = pointer_body("b", key)
    down = StrictBus(refuse={"publish": BusError("publish: timeout", "ReadTimeoutError")})
    outbox.upload(ticket("big"), "first run", key, pointer)
    first = drain(outbox, down)
    assert down.ops() == ["put_object", "publish"] and first[-1].failed  # stored, not published
    # The message is retried, its job runs again, and the result goes out: only its pointer.
    up = StrictBus()
    again = ticket("big")
    outbox.upload(again, "second run", key, pointer)
    second = drain(outbox, up)
    assert up.ops() == ["publish", "delete"]
    assert published(second) == [again] and up.published() == [pointer]


def test_a_failed_upload_is_not_remembered() -> None:
    class NoS3(StrictBus):
        def put_object(self, bucket: str, key: str, body: str) -> None:
            self.calls.append(("put_object", [key]))
            raise BusError("put_object: NoSuchBucket", "NoSuchBucket")

    outbox = box()
    for _ in range(2):
        bus = NoS3()
        outbox.upload(ticket("big"), "doc", "k", "pointer")
        (sent,) = drain(outbox, bus)
        assert bus.ops() == ["put_object"] and sent.failed
    assert outbox.stored == {}


def test_the_memory_of_stored_keys_is_bounded() -> None:
    outbox = box()
    bus = StrictBus()
    for i in range(STORED_KEYS + 5):
        outbox.upload(ticket(str(i)), "doc", f"k{i}", "pointer")
    drain(outbox, bus)
    assert len(outbox.stored) == STORED_KEYS
    assert "k0" not in outbox.stored and f"k{STORED_KEYS + 4}" in outbox.stored


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


def test_a_record_is_published_before_its_release() -> None:
    bus = RecordingBus()
    outbox = box()
    t = ticket("1")
    outbox.publish_failure(t, '{"failure":{}}', ATTRS)
    outbox.release(t, 0)
    (record, release) = drain(outbox, bus, more_coming=True)  # neither lingers
    assert bus.order == ["failures:1", "visibility:1"]
    assert record.kind == "failure"
    assert [(e.ticket, e.document, e.attributes) for e in record.succeeded()] == [(t, '{"failure":{}}', ATTRS)]
    assert changes(release) == [(t, 0)] and bus.failures[0].attributes == ATTRS


def test_a_release_waits_while_its_record_is_in_flight() -> None:
    """With several senders, the record and the release would otherwise race."""
    outbox = box(senders=3)
    t, free = ticket("1"), ticket("2")
    outbox.publish_failure(t, "{}", ATTRS)
    outbox.release(t, 0)
    outbox.release(free, 5)
    record = outbox.next_call(RecordingBus(), S3, more_coming=False, stopping=True)
    assert record is not None
    release_free = outbox.next_call(RecordingBus(), S3, more_coming=False, stopping=True)
    assert release_free is not None and changes(release_free()) == [(free, 5)]  # not held back
    assert outbox.next_call(RecordingBus(), S3, more_coming=False, stopping=True) is None  # t's release waits
    outbox.completed(record())
    release = outbox.next_call(RecordingBus(), S3, more_coming=False, stopping=True)
    assert release is not None and changes(release()) == [(t, 0)]


def test_records_go_in_tens_and_each_release_follows_its_own() -> None:
    bus = RecordingBus()
    outbox = box()
    tickets = [ticket(str(n)) for n in range(11)]
    for t in tickets:
        outbox.publish_failure(t, "{}", ATTRS)
        outbox.release(t, 0)
    drain(outbox, bus)
    assert bus.order == ["failures:10", "failures:1", "visibility:10", "visibility:1"]


def test_a_failed_record_publish_still_releases_the_message() -> None:
    bus = RecordingBus(refuse_failures=True)
    outbox = box()
    t = ticket("1")
    outbox.publish_failure(t, "{}", ATTRS)
    outbox.release(t, 0)
    record, release = drain(outbox, bus)
    assert record.failures() and record.error is not None
    assert bus.order == ["failures:1", "visibility:1"] and changes(release) == [(t, 0)]
    assert len(outbox) == 0  # nothing left: the release went out


def test_records_are_cut_at_256_kib_counting_their_attributes() -> None:
    bus = RecordingBus()
    outbox = box()
    attrs_size = Publish("0", "", ATTRS).size()
    # Two records that fit 256 KiB together only without their attributes.
    half = SNS_MAX_BYTES // 2 - attrs_size // 2
    for n in range(2):
        outbox.publish_failure(ticket(str(n)), "x" * half, ATTRS)
    drain(outbox, bus)
    assert bus.order == ["failures:1", "failures:1"]


def test_results_are_cut_at_256_kib_counting_their_attributes() -> None:
    bus = MemoryBus()
    outbox = box()
    attrs = {"plugin": "chaos", "outcome": "done", "sesshu_version": "0.1.0"}
    half = SNS_MAX_BYTES // 2
    for n in range(2):
        outbox.publish(ticket(str(n)), "x" * half, attrs)  # 256 KiB in all: over, with the attributes
    drain(outbox, bus)
    assert bus.requests["publish"] == 2 and bus.requests["publish_batch"] == 0
    assert bus.attributes == [attrs, attrs]


def test_a_pointer_goes_with_its_own_attributes() -> None:
    bus = MemoryBus()
    outbox = box()
    pointer = {"plugin": "chaos", "outcome": "done", "sesshu_version": "0.1.0", "ExtendedPayloadSize": "4"}
    outbox.upload(ticket("1"), "huge", "k", pointer_body("b", "k"), pointer)
    drain(outbox, bus)
    assert bus.published == [pointer_body("b", "k")] and bus.attributes == [pointer]


def test_a_lingering_batch_is_measured_once(monkeypatch: Any) -> None:
    """Every turn asks whether the batch is full; a 200 KiB document must not be encoded again each time."""
    import sesshu.bus.sending as sending_module

    measured: list[str] = []
    real = message_size

    def counting(body: str, attributes: Any = None) -> int:
        measured.append(body)
        return real(body, attributes)

    monkeypatch.setattr(sending_module, "message_size", counting)
    outbox = box()
    for n in range(3):
        outbox.publish(ticket(str(n)), document(1000, str(n)))
    for _ in range(50):
        assert outbox.next_call(FakeBus(), S3, more_coming=True) is None  # lingering
    assert len(measured) == 3
    drain(outbox, FakeBus())
    assert len(measured) == 3 and len(outbox) == 0


def test_a_kind_backing_off_wakes_the_loop_when_its_pause_ends_not_before() -> None:
    """A throttled publish waits out its backoff; the loop must sleep until then, not spin on a lapsed linger."""
    clock = FakeClock()
    outbox = box(clock)
    outbox.publish(ticket("a"), "doc-a")
    throttled = FakeBus(raise_on="publish")
    waits = []
    for _ in range(4):
        call = outbox.next_call(throttled, S3, more_coming=False)
        assert call is not None
        assert outbox.completed(call()) == []  # sent again later, not settled
        due = outbox.linger_until()
        assert due is not None and due > clock.now  # never a time already past: that would spin
        assert outbox.next_call(throttled, S3, more_coming=False) is None
        waits.append(due - clock.now)
        clock.now = due
    assert waits == sorted(waits) and waits[-1] > waits[0]  # the backoff grows while it keeps failing
    assert outbox.backing_off()
    call = outbox.next_call(FakeBus(), S3, more_coming=False)
    assert call is not None and outbox.completed(call()) == [] and not outbox.backing_off()


# -- what the settler is told: typed completions -----------------------------------------------

GONE = Fault("ReceiptHandleIsInvalid: gone", "ReceiptHandleIsInvalid", transient=False)  # as SQS says it
BLIP = Fault("InternalError: try again", "InternalError", transient=True)


def due(outbox: Outbox[Ticket], clock: FakeClock, bus: Any) -> Sent[Ticket]:
    """The next call, once whatever lingers or backs off is due (as the loop would sleep till then); run it."""
    for _ in range(3):  # a backoff, then a linger
        if (call := outbox.next_call(bus, S3, more_coming=False)) is not None:
            return call()
        wake = outbox.linger_until()
        assert wake is not None and wake > clock.now  # never a time already past: the loop would spin
        clock.now = wake
    raise AssertionError("no call fell due")


def test_a_delete_that_goes_through_is_deleted_without_error() -> None:
    clock = FakeClock()
    outbox = box(clock)
    a, b = ticket("a"), ticket("b")
    outbox.delete(a, "done")
    outbox.delete(b, "empty")
    done = outbox.completed(due(outbox, clock, FakeBus()))
    assert described(done) == [(Deleted, a, "done", None), (Deleted, b, "empty", None)]
    assert len(outbox) == 0 and not outbox.backing_off()


def test_a_delete_refused_for_good_is_deleted_with_its_error() -> None:
    """The outcome holds (the result went out), but the message may come back: the settler must know."""
    clock = FakeClock()
    outbox = box(clock)
    a, b = ticket("a"), ticket("b")
    outbox.delete(a, "done")
    outbox.delete(b, "empty")
    done = outbox.completed(due(outbox, clock, FakeBus(fails={"0": GONE})))
    assert len(done) == 2
    assert set(described(done)) == {(Deleted, a, "done", GONE), (Deleted, b, "empty", None)}
    assert not outbox.deletes and len(outbox) == 0 and not outbox.backing_off()  # not sent again


def test_a_delete_failing_transiently_is_sent_again_not_settled() -> None:
    clock = FakeClock()
    outbox = box(clock)
    a, b = ticket("a"), ticket("b")
    outbox.delete(a, "done")
    outbox.delete(b, "empty")
    done = outbox.completed(due(outbox, clock, FakeBus(fails={"0": BLIP})))
    assert described(done) == [(Deleted, b, "empty", None)]  # a's delete is not over yet
    assert [(d.ticket, d.outcome) for d in outbox.deletes] == [(a, "done")] and outbox.backing_off()
    assert outbox.waiting() == [a]  # its message stays locked meanwhile
    bus = FakeBus()
    retry = due(outbox, clock, bus)
    assert drops(retry) == [(a, "done")]
    assert described(outbox.completed(retry)) == [(Deleted, a, "done", None)]
    assert len(outbox) == 0 and not outbox.backing_off()


def test_a_delete_failing_transiently_while_stopping_is_final() -> None:
    outbox = box()
    a = ticket("a")
    outbox.delete(a, "done")
    call = outbox.next_call(FakeBus(fails={"0": BLIP}), S3, more_coming=False, stopping=True)
    assert call is not None
    done = outbox.completed(call(), stopping=True)
    assert described(done) == [(Deleted, a, "done", BLIP)] and len(outbox) == 0


def test_a_publish_refused_for_good_is_unsent_and_never_deleted() -> None:
    clock = FakeClock()
    outbox = box(clock)
    a, b = ticket("a"), ticket("b")
    outbox.publish(a, "doc-a")
    outbox.publish(b, "doc-b")
    refused = Fault("InvalidParameter: bad", "InvalidParameter")
    sent = due(outbox, clock, FakeBus(fails={"0": refused}))
    assert sent.kind == sending.PUBLISH
    done = outbox.completed(sent)
    assert described(done) == [(Unsent, a, "publish failed: InvalidParameter: bad")]
    assert [(d.ticket, d.outcome) for d in outbox.deletes] == [(b, "done")]  # a's message is not deleted
    assert not outbox.publishes and not outbox.backing_off()


def test_an_upload_refused_for_good_is_unsent_and_its_pointer_never_published() -> None:
    clock = FakeClock()
    outbox = box(clock)
    a = ticket("a")
    outbox.upload(a, "huge", "k", "pointer")
    sent = due(outbox, clock, FakeBus(raise_on="put_object"))  # AccessDenied: permanent
    assert sent.kind == sending.UPLOAD
    assert described(outbox.completed(sent)) == [(Unsent, a, "S3 upload failed: access denied")]
    assert len(outbox) == 0 and outbox.stored == {}


def test_a_failed_visibility_change_is_unchanged_and_not_sent_again() -> None:
    """Transient or not: the heartbeat queues a failed extension anew; a failed release lapses."""
    clock = FakeClock()
    outbox = box(clock)
    a, b = ticket("a"), ticket("b")
    outbox.extend(a, 30)
    outbox.release(b, 0)
    throttled = Fault("Throttling: slow down", "Throttling")
    denied = Fault("AccessDenied: no", "AccessDenied")
    sent = due(outbox, clock, FakeBus(fails={"0": throttled, "1": denied}))
    assert changes(sent) == [(a, 30), (b, 0)]
    done = outbox.completed(sent)
    assert described(done) == [(Unchanged, a, throttled), (Unchanged, b, denied)]
    assert not outbox.extensions and not outbox.releases and len(outbox) == 0
    assert not outbox.extending(a)  # so the heartbeat may queue a new one
    clock.now += 60.0
    assert outbox.next_call(FakeBus(), S3, more_coming=False, stopping=True) is None


def test_failure_records_are_logged_and_settle_nothing(caplog: pytest.LogCaptureFixture) -> None:
    for refuse in (False, True):
        caplog.clear()
        outbox = box()
        t = ticket("1")
        outbox.publish_failure(t, "{}", ATTRS)
        call = outbox.next_call(RecordingBus(refuse_failures=refuse), S3, more_coming=False)
        assert call is not None
        sent = call()
        assert sent.kind == sending.FAILURE and bool(sent.failed) == refuse
        with caplog.at_level(logging.INFO, "sesshu.bus.outbox"):
            assert outbox.completed(sent) == []
        (line,) = [r for r in caplog.records if r.name == "sesshu.bus.outbox"]
        assert "id-1" in line.getMessage()
        if refuse:
            assert line.levelno == logging.WARNING and "not published" in line.getMessage()
        else:
            assert line.levelno == logging.INFO and "failure record published" in line.getMessage()
        assert not outbox.failures and len(outbox) == 0
