"""Deciding each message's outcome, and queuing the bus work that carries it out.

Every received message gets exactly one outcome (``sesshu.jobs.outcomes``), and
this is the only place that records one: it is decided here from a job's
result or loss, and, for done and empty, recorded here once the sender
reports the delete (a result's delete is sent only after its publish).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from sesshu.backoff import exponential
from sesshu.bus import payloads
from sesshu.bus.api import SNS_MAX_BYTES, QueueInfo, denied, message_size, transient, wire_attributes
from sesshu.bus.outbox import Outbox
from sesshu.bus.sending import Completion, Deleted, Unsent
from sesshu.config.model import Config
from sesshu.jobs import failures
from sesshu.jobs.outcomes import OutcomeObserver, Outcomes
from sesshu.jobs.spans import JobSpans
from sesshu.jobs.ticket import Ticket
from sesshu.pool.events import JobFinished
from sesshu.text import loggable

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_VISIBILITY = 30  # seconds, assumed when the queue's attributes cannot be read


def retry_delay(receive_count: int, base: float, cap: float) -> int:
    """Seconds until a retried message comes back: doubling with each receive, capped."""
    return math.ceil(exponential(receive_count, base, cap))


class Settler:
    """Owns outcomes and visibility: decides them, and queues the bus work that carries them out."""

    def __init__(self, config: Callable[[], Config], queue_info: QueueInfo | None = None, *,
                 outbox: Outbox[Ticket] | None = None, heartbeat: bool = True,
                 observer: OutcomeObserver | None = None, clock: Callable[[], float] = time.monotonic,
                 spans: JobSpans | None = None) -> None:
        self._config = config  # the running config is the reloader's (sesshu.daemon.reload): read, never kept
        self.queue_info = queue_info or QueueInfo(None, None)
        self.outcomes = Outcomes(observer)
        self.outbox: Outbox[Ticket] = outbox if outbox is not None else Outbox(clock, senders=config().senders)
        self.heartbeat = heartbeat  # extend visibility of held and running messages
        self.clock = clock
        self.spans = spans  # an OpenTelemetry span per outcome, where the host has OpenTelemetry

    @property
    def config(self) -> Config:
        return self._config()

    def on_job_finished(self, ticket: Ticket, event: JobFinished) -> None:
        """Decide what becomes of a message whose job ran to its end."""
        ticket.duration = event.finished - event.running.started
        ticket.pid = event.pid
        result = event.result
        if result.status == "done":
            self._publish_result(ticket, event)
        elif result.status == "empty":
            self.outbox.delete(ticket, "empty")
        elif result.status == "rejected":
            self.reject(ticket, result.error)
        else:
            # A plugin's RetryLater sets the delay; the protocol bounded it to 12 hours.
            self.retry(ticket, result.reason or "fetch_error", result.error, pid=event.pid, delay=result.delay)

    def _publish_result(self, ticket: Ticket, event: JobFinished) -> None:
        """Queue a result's publish: the document itself, or where it does not fit, its S3 pointer."""
        job = event.running.job
        # The child's payload is already JSON: splice it in rather than decode it again.
        document = (f'{{"target":{json.dumps(job.target)},"plugin":{json.dumps(job.plugin)},'
                    f'"message_id":{json.dumps(ticket.message_id)},"result":{event.result.payload.decode("ascii")}}}')
        attrs = failures.attributes(job.plugin, "done", ticket.trace)
        size = message_size(document, wire_attributes(attrs))  # what SNS counts
        # Above the threshold, S3 even where SNS would take it: botocore
        # encodes a big SNS body twice, while PutObject sends it as it is.
        if size <= (self.config.s3_threshold or SNS_MAX_BYTES):
            self.outbox.publish(ticket, document, attrs, size=size)
        elif self.config.s3_bucket:
            # As AWS's extended clients store a payload: any of them reads it back.
            key = f"{self.config.s3_prefix}{ticket.message_id}.json"
            pointer = payloads.pointer_body(self.config.s3_bucket, key)
            self.outbox.upload(ticket, document, key, pointer,
                               {**attrs, payloads.SIZE_ATTRIBUTE: payloads.size_attribute(document)})
        else:
            self.retry(ticket, "too_large", f"result document and its attributes are {size} bytes, over "
                       f"the topic's {SNS_MAX_BYTES} (set bus.output.s3_bucket to store it in S3)", pid=event.pid)

    def _record(self, outcome: str, ticket: Ticket, *, reason: str = "", detail: str = "",
                pid: int | None = None) -> None:
        req = ticket.request
        self.outcomes.record(outcome, ticket.message.message_id, req.plugin if req else None,
                             req.target if req else None, reason=reason, detail=detail,
                             duration=ticket.duration, pid=pid or ticket.pid,
                             receive=(ticket.message.receive_count, self.queue_info.max_receive_count),
                             named=(ticket.named_plugin, ticket.named_target),
                             trace_id=ticket.trace.trace_id if ticket.trace is not None else None)
        if self.spans is not None:
            self.spans.record(ticket, outcome, reason, time.time_ns())

    def guarded(self, ticket: Ticket, step: Callable[[], T]) -> T | None:
        """Run one step of one message; our own bug there is that message's outcome (retried), not the daemon's.

        Returns what the step returned, or None when it raised.
        """
        try:
            return step()
        except Exception:
            log.error("internal error on message %s", ticket.message_id, exc_info=True)
            try:
                self.retry(ticket, "internal_error", "internal error (see the traceback above)")
            except Exception:  # noqa: BLE001 - not even that worked: the visibility timeout will return it
                log.error("message %s: cannot record its outcome; it reappears after its visibility timeout",
                          ticket.message_id)
            return None

    def reject(self, ticket: Ticket, detail: str) -> None:
        self._record("rejected", ticket, reason="invalid", detail=detail)
        self._give_up("rejected", ticket, "invalid", detail)
        # With a DLQ, release at once so redrive moves it with the fewest
        # re-fetches; without one, back off instead of spinning on it.
        has_dlq = self.queue_info.max_receive_count is not None
        self.outbox.release(ticket, 0 if has_dlq else max(1, self._backoff(ticket)))

    def retry(self, ticket: Ticket, reason: str, detail: str, *,
               pid: int | None = None, delay: int | None = None) -> None:
        self._record("retried", ticket, reason=reason, detail=detail, pid=pid)
        self._give_up("retried", ticket, reason, detail)
        self.outbox.release(ticket, self._backoff(ticket) if delay is None else delay)

    def _give_up(self, outcome: str, ticket: Ticket, reason: str, detail: str) -> None:
        """On the last receive redrive allows, queue the failure record; the release queued next waits for it."""
        if self.config.failures_topic and failures.last_receive(ticket.message.receive_count, self.queue_info):
            self.outbox.publish_failure(ticket, *failures.record(ticket, outcome, reason, detail))

    def _backoff(self, ticket: Ticket) -> int:
        return retry_delay(ticket.message.receive_count, self.config.retry_delay, self.config.retry_max_delay)

    def on_sent(self, done: Completion[Ticket], stopping: bool = False) -> None:
        """Record what became of a message's bus work; the outbox already queued what follows."""
        ticket = done.ticket
        if isinstance(done, Deleted):
            self._record(done.outcome, ticket)
            if done.error is not None:
                log.warning("message %s: delete failed (%s); it may be processed again",
                            loggable(ticket.message_id), loggable(done.error, 500))
        elif isinstance(done, Unsent):
            self.retry(ticket, "publish_error", done.error)
        elif denied(done.error):
            if self.heartbeat:
                self.heartbeat = False
                log.warning("sqs:ChangeMessageVisibility is denied: no visibility heartbeat, and no release "
                            "of rejected or retried messages; grant it (see the IAM policy in docs/security.md)")
        elif transient(done.error) and not stopping:
            # Not extended after all: the heartbeat queues it again once the
            # outbox's backoff allows (a failed release is left to lapse).
            ticket.visible_until = min(ticket.visible_until, self.clock())
        else:
            log.warning("message %s: could not change its visibility (%s); it reappears "
                        "when its visibility timeout ends", loggable(ticket.message_id), loggable(done.error, 500))

    # -- the visibility heartbeat ---------------------------------------------

    def visibility(self) -> int:
        return self.queue_info.visibility_timeout or DEFAULT_VISIBILITY

    def extend_visibility(self, now: float, live: list[tuple[Ticket, float | None]]) -> None:
        """Queue an extension for every message whose visibility is about to lapse.

        ``live`` holds the held and running messages, with the running job's
        deadline. Finished results still waiting for the sender (an outage)
        are kept locked too; an extension always goes out before, or with,
        their delete, and none is queued once a release is.
        """
        if not self.heartbeat:
            return
        vt = self.visibility()
        # A third of the timeout ahead: an extension that meets a bus outage is
        # tried again (``sesshu.bus.outbox``) for that long before the message lapses.
        margin = max(2.0, vt / 3)
        slack = min(margin, 10.0)  # past a job's deadline: time to kill it and release its message
        outbox = self.outbox
        due = [*live, *((t, None) for t in outbox.waiting())]
        for ticket, deadline in due:
            if ticket.visible_until - now > margin or outbox.extending(ticket):
                continue
            if deadline is not None and ticket.visible_until >= deadline + slack:
                continue  # already locked past the job's end
            # Capped by the job's deadline: a job past it is killed and released anyway.
            horizon = vt if deadline is None else min(vt, deadline - now + slack)
            seconds = max(1, math.ceil(horizon))
            ticket.visible_until = now + seconds
            outbox.extend(ticket, seconds)

    def summary(self) -> str:
        return self.outcomes.summary()
