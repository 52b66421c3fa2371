"""The settler: outcomes, retry delays and the visibility heartbeat, on a fake clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

import sesshu
from sesshu.bus import payloads
from sesshu.bus.api import SNS_MAX_BYTES, Message, QueueInfo, message_size, wire_attributes
from sesshu.bus.sending import Sent
from sesshu.config.model import Config, from_mapping
from sesshu.jobs import failures
from sesshu.jobs.requests import Request
from sesshu.jobs.settle import Settler, retry_delay
from sesshu.jobs.ticket import Ticket
from sesshu.pool.events import JobFinished
from sesshu.pool.protocol import Job, Result
from sesshu.pool.slot import RunningJob


def config(**workers: Any) -> Config:
    return from_mapping({"plugin": ["chaos"], "workers": workers,
                         "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})


def fixed(config: Config) -> Callable[[], Config]:
    return lambda: config


def ticket(n: int, visible_until: float, receives: int = 1) -> Ticket:
    return Ticket(Message(f"m-{n}", f"r-{n}", "{}", receives), visible_until=visible_until)


def deliver(settler: Settler, sent: Sent[Ticket], stopping: bool = False) -> None:
    """A sender call came back: what the supervisor does with it."""
    for done in settler.outbox.completed(sent, stopping):
        settler.on_sent(done, stopping)


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n, 5, 60) for n in (0, 1, 2, 3, 4, 5)] == [5, 5, 10, 20, 40, 60]
    assert retry_delay(1000, 5, 900) == 900


def test_the_heartbeat_extends_only_what_is_about_to_lapse() -> None:
    settler = Settler(fixed(config()), QueueInfo(visibility_timeout=30, max_receive_count=3))
    margin = 10.0  # a third of 30 s
    fresh, due = ticket(1, visible_until=1000.0 + margin + 1), ticket(2, visible_until=1000.0 + margin)
    settler.extend_visibility(1000.0, [(fresh, None), (due, None)])
    assert not settler.outbox.extending(fresh)
    assert settler.outbox.extending(due)
    assert due.visible_until == 1030.0


def test_the_heartbeat_is_capped_by_the_job_deadline() -> None:
    settler = Settler(fixed(config()), QueueInfo(visibility_timeout=300, max_receive_count=3))
    running = ticket(1, visible_until=1000.0)
    settler.extend_visibility(1000.0, [(running, 1004.5)])
    # Up to the deadline plus the margin (10 s), not the whole 300 s.
    assert running.visible_until == 1000.0 + 15
    # Locked past the job's end: no more extensions for it, turn after turn.
    settler.outbox.extensions.clear()
    for now in (1001.0, 1003.0, 1004.0):
        settler.extend_visibility(now, [(running, 1004.5)])
    assert not settler.outbox.extensions and running.visible_until == 1000.0 + 15


def test_one_extension_per_ticket_until_it_is_sent() -> None:
    settler = Settler(fixed(config()), QueueInfo(visibility_timeout=30, max_receive_count=3))
    t = ticket(1, visible_until=1000.0)
    settler.extend_visibility(1000.0, [(t, None)])
    t.visible_until = 1000.0  # as if the clock had not moved
    settler.extend_visibility(1001.0, [(t, None)])
    assert len(settler.outbox.extensions) == 1


def test_without_the_permission_there_is_no_heartbeat() -> None:
    settler = Settler(fixed(config()), QueueInfo(30, 3), heartbeat=False)
    t = ticket(1, visible_until=0.0)
    settler.extend_visibility(1000.0, [(t, None)])
    assert not settler.outbox.extending(t)


def test_rejected_is_released_at_once_with_a_dlq_and_backed_off_without() -> None:
    with_dlq = Settler(fixed(config()), QueueInfo(30, 3))
    without = Settler(fixed(config(retry={"delay": 5, "max_delay": 900})), QueueInfo(30, None))
    a, b = ticket(1, 0.0, receives=3), ticket(2, 0.0, receives=3)
    with_dlq.reject(a, "bad")
    without.reject(b, "bad")
    assert [(c.ticket, c.seconds) for c in with_dlq.outbox.releases] == [(a, 0)]
    assert [(c.ticket, c.seconds) for c in without.outbox.releases] == [(b, 20)]
    assert with_dlq.outcomes.total("rejected") == without.outcomes.total("rejected") == 1


def test_every_outcome_reaches_the_observer() -> None:
    seen: list[tuple[str, str, str, float | None]] = []
    settler = Settler(fixed(config()), QueueInfo(30, 3), observer=lambda *a: seen.append(a))
    settler.retry(ticket(1, 0.0), "timeout", "late")
    assert seen == [("-", "retried", "timeout", None)]


# -- failure records and attributes --------------------------------------------------------

FAILURES = "arn:aws:sns:us-east-1:000000000000:failures"


def with_failures(**bus_output: Any) -> Config:
    return from_mapping({"plugin": ["chaos"], "bus": {"input": {"queue": "q"}, "output": {
        "topic": "t", "failures_topic": FAILURES, **bus_output}}})


def parsed(n: int, receives: int, target: str = "chaos:hang") -> Ticket:
    t = ticket(n, 0.0, receives)
    t.request = Request("chaos", target)
    return t


def finished(t: Ticket, payload: bytes) -> tuple[Ticket, JobFinished]:
    """A ticket, and the event of its job that ran to its end with this payload."""
    assert t.request is not None
    job = Job(1, t.request.plugin, t.request.target)
    return t, JobFinished(RunningJob(job, t.message_id, 0.0, 10.0), Result(1, "done", payload=payload), 42, 1.0)


def test_a_record_goes_out_on_the_last_receive_only() -> None:
    settler = Settler(fixed(with_failures()), QueueInfo(30, 2))
    early, last = parsed(1, receives=1), parsed(2, receives=2)
    settler.retry(early, "timeout", "late")
    settler.retry(last, "timeout", "plugin chaos timed out after 5 s on chaos:hang")
    assert [e.ticket for e in settler.outbox.failures] == [last]
    document, attrs = settler.outbox.failures[0].document, settler.outbox.failures[0].attributes
    doc = json.loads(document)
    assert (doc["target"], doc["plugin"]) == ("chaos:hang", "chaos")
    assert doc["failure"]["outcome"] == "retried" and doc["failure"]["reason"] == "timeout"
    assert doc["failure"]["receives"] == 2 and doc["failure"]["message_id"] == "m-2"
    assert attrs["outcome"] == "retried" and attrs["plugin"] == "chaos"
    # Both are released all the same; the outbox holds the last one's release until its record is out.
    assert [c.ticket for c in settler.outbox.releases] == [early, last]


def test_a_rejected_message_gets_its_record_with_the_reason_invalid() -> None:
    settler = Settler(fixed(with_failures()), QueueInfo(30, 2))
    t = ticket(1, 0.0, receives=2)
    settler.reject(t, "body is not valid JSON")
    (record,) = settler.outbox.failures
    document, attrs = record.document, record.attributes
    doc = json.loads(document)
    assert doc["failure"]["outcome"] == "rejected" and doc["failure"]["reason"] == "invalid"
    assert doc["failure"]["detail"] == "body is not valid JSON" and doc["body"] == "{}"
    assert attrs["plugin"] == "-"


def test_no_record_without_a_failures_topic_or_without_a_redrive_policy() -> None:
    without_topic = Settler(fixed(config()), QueueInfo(30, 2))
    without_redrive = Settler(fixed(with_failures()), QueueInfo(30, None))
    for settler in (without_topic, without_redrive):
        settler.retry(parsed(1, receives=99), "timeout", "late")
        settler.reject(ticket(2, 0.0, receives=99), "bad")
        assert not settler.outbox.failures and len(settler.outbox.releases) == 2


class LosesSecond:
    def publish_failures(self, entries: list[Any]) -> dict[str, str]:
        return {"1": "NotFound: no\ntopic"}


def test_published_and_lost_records_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    settler = Settler(fixed(with_failures()), QueueInfo(30, 2))
    ok, lost = parsed(1, 2), parsed(2, 2)
    settler.retry(ok, "timeout", "late")
    settler.retry(lost, "timeout", "late")
    call = settler.outbox.next_call(LosesSecond(), None, more_coming=False)  # type: ignore[arg-type]
    assert call is not None
    with caplog.at_level(logging.INFO):
        deliver(settler, call())
    assert "failure record published for message m-1" in caplog.text
    assert "message m-2: its failure record was not published (NotFound: no\\ntopic)" in caplog.text
    assert sum(settler.outcomes.counts.values()) == 2  # recorded when decided, not again when sent


def test_results_carry_their_attributes() -> None:
    settler = Settler(fixed(config()), QueueInfo(30, 2))
    t = parsed(1, 1, "chaos:echo:x")
    settler.on_job_finished(*finished(t, b'{"echo":"x"}'))
    (result,) = settler.outbox.publishes
    document, attrs = result.document, result.attributes
    assert json.loads(document) == {"target": "chaos:echo:x", "plugin": "chaos", "message_id": "m-1",
                                     "result": {"echo": "x"}}
    assert attrs == {"plugin": "chaos", "outcome": "done", "sesshu_version": sesshu.__version__}


def result_of_size(size: int) -> bytes:
    """A payload that makes the document of ``parsed(...)`` with target chaos:big exactly ``size`` bytes."""
    head = len('{"target":"chaos:big","plugin":"chaos","message_id":"m-1","result":""}')
    return json.dumps("x" * (size - head)).encode()


def test_the_fits_in_sns_check_counts_the_attributes() -> None:
    """A document of exactly 256 KiB fits only without attributes: with them, it goes to S3."""
    plain = Settler(fixed(config()), QueueInfo(30, 2))
    t = parsed(1, 1, "chaos:big")
    plain.on_job_finished(*finished(t, result_of_size(SNS_MAX_BYTES)))
    assert not plain.outbox.publishes and plain.outcomes.reasons["retried:too_large"] == 1

    s3 = Settler(fixed(from_mapping({"plugin": ["chaos"], "bus": {"input": {"queue": "q"}, "output": {
        "topic": "t", "s3_bucket": "b"}}})), QueueInfo(30, 2))
    s3.on_job_finished(*finished(parsed(2, 1, "chaos:big"), result_of_size(SNS_MAX_BYTES)))
    (upload,) = s3.outbox.uploads
    document, pointer, attrs = upload.document, upload.pointer.document, upload.pointer.attributes
    assert len(document) == SNS_MAX_BYTES
    assert json.loads(pointer) == [payloads.POINTER_CLASS, {"s3BucketName": "b", "s3Key": "sesshu/m-2.json"}]
    assert attrs == {"plugin": "chaos", "outcome": "done", "sesshu_version": sesshu.__version__,
                     "ExtendedPayloadSize": str(SNS_MAX_BYTES)}

    fits = Settler(fixed(config()), QueueInfo(30, 2))
    room = SNS_MAX_BYTES - message_size("", wire_attributes(failures.attributes("chaos", "done")))
    fits.on_job_finished(*finished(parsed(3, 1, "chaos:big"), result_of_size(room)))
    assert len(fits.outbox.publishes) == 1


def test_results_over_the_s3_threshold_go_to_s3_even_when_sns_would_take_them() -> None:
    cfg = from_mapping({"plugin": ["chaos"], "bus": {"input": {"queue": "q"}, "output": {
        "topic": "t", "s3_bucket": "b", "s3_prefix": "p/", "s3_threshold": 1000}}})
    settler = Settler(fixed(cfg), QueueInfo(30, 3))
    small, big = parsed(1, 1, "chaos:x"), parsed(2, 1, "chaos:x")
    settler.on_job_finished(*finished(small, b'"' + b"x" * 800 + b'"'))
    settler.on_job_finished(*finished(big, b'"' + b"x" * 1000 + b'"'))
    assert [e.ticket for e in settler.outbox.publishes] == [small]
    (upload,) = settler.outbox.uploads
    t, document, key, pointer = upload.ticket, upload.document, upload.key, upload.pointer.document
    assert t is big and key == "p/m-2.json" and len(document) > 1000
    assert pointer == '["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"p/m-2.json"}]'
    assert upload.pointer.attributes["ExtendedPayloadSize"] == str(len(document.encode()))


def test_a_publish_refused_for_good_is_retried_and_never_deleted() -> None:
    from tests.test_sending import FakeBus

    settler = Settler(fixed(config()), QueueInfo(30, 3))
    a = parsed(1, 1, "chaos:x")
    settler.on_job_finished(*finished(a, b"1"))
    call = settler.outbox.next_call(FakeBus(raise_on="publish", code="AuthorizationError"),  # type: ignore[arg-type]
                             None, more_coming=False)
    assert call is not None
    deliver(settler, call())
    assert settler.outcomes.reasons == {"retried:publish_error": 1}
    assert not settler.outbox.deletes and [c.ticket for c in settler.outbox.releases] == [a]


def test_a_throttled_publish_keeps_its_result_until_it_goes_out_and_only_a_stop_gives_it_up() -> None:
    from tests.test_sending import FakeBus

    clock = [100.0]
    settler = Settler(fixed(config()), QueueInfo(30, 3), clock=lambda: clock[0])
    a = parsed(1, 1, "chaos:x")
    settler.on_job_finished(*finished(a, b"1"))
    throttled = FakeBus(raise_on="publish")
    for _ in range(3):  # throttled three times: no outcome, the result waits, the job is not redone
        clock[0] += 60  # past any backoff
        call = settler.outbox.next_call(throttled, None, more_coming=False)  # type: ignore[arg-type]
        assert call is not None
        deliver(settler, call())
        assert settler.outcomes.reasons == {} and not settler.outbox.releases
        assert [e.ticket for e in settler.outbox.publishes] == [a] and a in settler.outbox.waiting()
    # Backing off: nothing is due until the pause ends.
    assert settler.outbox.next_call(throttled, None, more_coming=False) is None  # type: ignore[arg-type]
    # A stop tries once more at once; failing again, the message is released for redelivery.
    call = settler.outbox.next_call(throttled, None, more_coming=False, stopping=True)  # type: ignore[arg-type]
    assert call is not None
    deliver(settler, call(), stopping=True)
    assert settler.outcomes.reasons == {"retried:publish_error": 1}
    assert [c.ticket for c in settler.outbox.releases] == [a]


def test_an_extension_the_bus_could_not_make_is_queued_again_after_a_short_backoff() -> None:
    from tests.test_sending import FakeBus

    clock = [1000.0]
    settler = Settler(fixed(config()), QueueInfo(visibility_timeout=30, max_receive_count=3), clock=lambda: clock[0])
    t = ticket(1, visible_until=1005.0)  # within the margin (10 s): due for an extension
    settler.extend_visibility(clock[0], [(t, None)])
    call = settler.outbox.next_call(FakeBus(raise_on="change_visibility", code="EndpointConnectionError"),  # type: ignore[arg-type]
                             None, more_coming=False)
    assert call is not None
    deliver(settler, call())
    assert t.visible_until == 1000.0  # not extended after all
    settler.extend_visibility(clock[0], [(t, None)])
    assert settler.outbox.extending(t)  # queued again at once, ...
    assert settler.outbox.next_call(FakeBus(), None, more_coming=False) is None  # ... sent once the backoff passed
    clock[0] += 2.0  # the cap of an extension's backoff
    call = settler.outbox.next_call(FakeBus(), None, more_coming=False)  # type: ignore[arg-type]
    assert call is not None and call().entries[0].ticket is t


def test_a_refused_visibility_change_or_delete_is_logged_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """The reason comes from the server: a megabyte with a newline stays one short line."""
    from sesshu.bus.api import Fault
    from tests.test_sending import FakeBus

    said = "ReceiptHandleIsInvalid: " + "x" * 1_000_000 + "\nforged \udc80"
    settler = Settler(fixed(config()), QueueInfo(30, 3))
    t = ticket(1, visible_until=1005.0)
    settler.extend_visibility(1000.0, [(t, None)])
    call = settler.outbox.next_call(FakeBus(fails={"0": Fault(said, "ReceiptHandleIsInvalid", transient=False)}),  # type: ignore[arg-type]
                             None, more_coming=False)
    assert call is not None
    with caplog.at_level(logging.WARNING, "sesshu"):
        deliver(settler, call())
    (line,) = [r.getMessage() for r in caplog.records]
    assert "could not change its visibility" in line and len(line) < 700 and "\n" not in line
