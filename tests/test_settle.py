"""The settler: outcomes, retry delays and the visibility heartbeat, on a fake clock."""

from __future__ import annotations

from typing import Any

from sesshu.bus import Message, QueueInfo
from sesshu.config import Config, from_mapping
from sesshu.settle import Settler, retry_delay
from sesshu.ticket import Ticket


def config(**workers: Any) -> Config:
    return from_mapping({"plugin": ["chaos"], "workers": workers,
                         "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})


def ticket(n: int, visible_until: float, receives: int = 1) -> Ticket:
    return Ticket(Message(f"m-{n}", f"r-{n}", "{}", receives), visible_until=visible_until)


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n, 5, 60) for n in (0, 1, 2, 3, 4, 5)] == [5, 5, 10, 20, 40, 60]
    assert retry_delay(1000, 5, 900) == 900


def test_the_heartbeat_extends_only_what_is_about_to_lapse() -> None:
    settler = Settler(config(), QueueInfo(visibility_timeout=30, max_receive_count=3))
    margin = 10.0  # a third of 30 s
    fresh, due = ticket(1, visible_until=1000.0 + margin + 1), ticket(2, visible_until=1000.0 + margin)
    settler.extend_visibility(1000.0, [(fresh, None), (due, None)])
    assert not settler.outbox.extending(fresh)
    assert settler.outbox.extending(due)
    assert due.visible_until == 1030.0


def test_the_heartbeat_is_capped_by_the_job_deadline() -> None:
    settler = Settler(config(), QueueInfo(visibility_timeout=300, max_receive_count=3))
    running = ticket(1, visible_until=1000.0)
    settler.extend_visibility(1000.0, [(running, 1004.5)])
    # Up to the deadline plus the margin (10 s), not the whole 300 s.
    assert running.visible_until == 1000.0 + 15


def test_one_extension_per_ticket_until_it_is_sent() -> None:
    settler = Settler(config(), QueueInfo(visibility_timeout=30, max_receive_count=3))
    t = ticket(1, visible_until=1000.0)
    settler.extend_visibility(1000.0, [(t, None)])
    t.visible_until = 1000.0  # as if the clock had not moved
    settler.extend_visibility(1001.0, [(t, None)])
    assert len(settler.outbox.extensions) == 1


def test_without_the_permission_there_is_no_heartbeat() -> None:
    settler = Settler(config(), QueueInfo(30, 3), heartbeat=False)
    t = ticket(1, visible_until=0.0)
    settler.extend_visibility(1000.0, [(t, None)])
    assert not settler.outbox.extending(t)


def test_rejected_is_released_at_once_with_a_dlq_and_backed_off_without() -> None:
    with_dlq = Settler(config(), QueueInfo(30, 3))
    without = Settler(config(retry={"delay": 5, "max_delay": 900}), QueueInfo(30, None))
    a, b = ticket(1, 0.0, receives=3), ticket(2, 0.0, receives=3)
    with_dlq.reject(a, "bad")
    without.reject(b, "bad")
    assert list(with_dlq.outbox.releases) == [(a, 0)]
    assert list(without.outbox.releases) == [(b, 20)]
    assert with_dlq.outcomes.total("rejected") == without.outcomes.total("rejected") == 1


def test_every_outcome_reaches_the_observer() -> None:
    seen: list[tuple[str, str, str, float | None]] = []
    settler = Settler(config(), QueueInfo(30, 3), observer=lambda *a: seen.append(a))
    settler.retry(ticket(1, 0.0), "timeout", "late")
    assert seen == [("-", "retried", "timeout", None)]


def finished(t: Ticket, payload: bytes) -> Any:
    from sesshu.children import RunningJob
    from sesshu.events import JobFinished
    from sesshu.protocol import Job, Result

    return JobFinished(RunningJob(Job(1, "chaos", "chaos:x"), t, 0.0, 30.0), Result(1, "done", payload=payload),
                       pid=1, finished=0.5)


def test_results_over_the_s3_threshold_go_to_s3_even_when_sns_would_take_them() -> None:
    cfg = from_mapping({"plugin": ["chaos"], "bus": {"input": {"queue": "q"}, "output": {
        "topic": "t", "s3_bucket": "b", "s3_prefix": "p/", "s3_threshold": 1000}}})
    settler = Settler(cfg, QueueInfo(30, 3))
    small, big = ticket(1, 0.0), ticket(2, 0.0)
    settler.on_job_finished(finished(small, b'"' + b"x" * 900 + b'"'))
    settler.on_job_finished(finished(big, b'"' + b"x" * 1000 + b'"'))
    assert [t for t, _ in settler.outbox.publishes] == [small]
    ((t, document, key, pointer),) = settler.outbox.uploads
    assert t is big and key == "p/m-2.json" and len(document) > 1000
    assert '"result_s3":{"bucket": "b", "key": "p/m-2.json"}' in pointer


def test_a_failed_publish_is_retried_and_never_deleted() -> None:
    from tests.test_sending import FakeBus

    settler = Settler(config(), QueueInfo(30, 3))
    a = ticket(1, 0.0)
    settler.on_job_finished(finished(a, b"1"))
    call = settler.next_send(FakeBus(raise_on="publish"), more_coming=False)  # type: ignore[arg-type]
    assert call is not None
    settler.on_sent(call())
    assert settler.outcomes.reasons == {"retried:publish_error": 1}
    assert not settler.outbox.deletes and [t for t, _ in settler.outbox.releases] == [a]
