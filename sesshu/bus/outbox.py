"""What waits for the senders, and which call goes next.

The :class:`Outbox` owns every pending bus change of the outcomes: results
to publish or upload, deletes, releases and heartbeat extensions, and what
of them is in flight. Several sender calls run at once (``bus.senders``);
the outbox alone decides which call is due, which may overlap, and when
receiving must wait (backpressure). Four rules keep overlapping calls safe:

1. A message is deleted only after its result's publish succeeded: a
   result's delete is queued when its publish call comes back, never before.
2. At most one SQS call per message is in flight. A visibility extension
   never races the message's delete or release: each waits for the other.
3. Queuing a message's outcome drops its pending extension, and no extension
   is queued for a message whose delete or release is under way, so an
   extension never lands after its message was released or deleted.
4. A failure record (``sesshu.jobs.failures``) goes out before its message's
   last release: the release waits while the record is queued or in flight.
   Whether the record's publish succeeds or fails, the release follows: a
   lost record loses only the record, never the message.

A publish, upload, failure record or delete that fails for a transient
reason (:func:`sesshu.bus.api.transient`: throttling, a server error, a timeout,
a lost connection) goes back to the head of its queue, and calls of its kind
wait out a jittered backoff that grows while they keep failing
(``sesshu.bus.pacing``, which also says when a partial batch is due): the job is
not done again, and its message stays locked by the heartbeat meanwhile (it
is :meth:`Outbox.waiting`). Only a permanent refusal, or a failure while the
daemon stops, is final. A stop sends everything still queued once more,
without waiting out a backoff.

:meth:`Outbox.completed` turns a call's return into what follows it (a
published result's delete, an uploaded result's pointer) and into typed
completions for the settler (defined in ``sesshu.bus.sending``): :class:`Deleted` (done or empty, confirmed or
not), :class:`Unsent` (a result that could not go out) and
:class:`Unchanged` (a visibility change that failed). Each queued entry
(``sesshu.bus.sending``) carries its ticket, by which the outbox knows it.

Results linger briefly (:data:`LINGER`) for a fuller PublishBatch while jobs
still run; deletes linger longer (:data:`DELETE_LINGER`), across sender
turns, so that large results, one publish each, still share deletes in tens.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Generic

from sesshu.bus import sending
from sesshu.bus.api import BATCH_MAX, SNS_MAX_BYTES, Bus, transient
from sesshu.bus.pacing import Pacing
from sesshu.bus.sending import (
    Attributes,
    Change,
    Completion,
    Deleted,
    Drop,
    Post,
    S3Target,
    Sent,
    T,
    Unchanged,
    Unsent,
    Upload,
)
from sesshu.text import loggable

__all__ = ["DELETE_LINGER", "LINGER", "STORED_KEYS", "Outbox", "S3Target", "Sent"]

log = logging.getLogger(__name__)

STORED_KEYS = 1024  # S3 keys remembered as stored, so a retried result is not uploaded again
LINGER = 0.05  # seconds a partial batch of results may wait for more while jobs still run
# Seconds a partial batch of deletes may wait for more. The result is out by
# then, so no one waits on it, and the heartbeat keeps the message locked.
# Large results come at a dozen a second or so, and a second fills their
# DeleteMessageBatch. The price: a master killed by SIGKILL leaves up to a
# second of published results undeleted, and they are processed again
# (duplicates, never losses; a graceful stop sends every delete first).
DELETE_LINGER = 1.0

class Outbox(Generic[T]):
    """Pending bus work by kind, each entry carrying its ticket; and what is in flight."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, senders: int = 1) -> None:
        self._clock = clock
        self.senders = senders
        self.publishes: deque[Post[T]] = deque()
        self.uploads: deque[Upload[T]] = deque()
        self.failures: deque[Post[T]] = deque()  # failure records
        self._records: set[T] = set()  # tickets whose failure record is queued or in flight
        self.deletes: deque[Drop[T]] = deque()
        self.releases: deque[Change[T]] = deque()
        self.extensions: dict[T, Change[T]] = {}  # heartbeat extensions: one per ticket at most
        self._publish_since: float | None = None  # when the oldest waiting result was queued
        self._delete_since: float | None = None
        self._in_sqs: set[T] = set()  # tickets with a visibility change or delete in flight
        self._in_flight: set[T] = set()  # tickets with an upload or publish in flight
        self._publish_bytes = 0  # of everything in ``publishes``
        # S3 keys stored by earlier uploads (oldest first, bounded). The key is
        # the message's own, so when a result whose pointer failed to publish
        # comes back, only the pointer goes out again.
        self.stored: dict[str, None] = {}
        self._pacing = Pacing(clock)

    def __len__(self) -> int:
        """Entries queued, and calls in flight: zero once everything has been sent."""
        return (len(self.publishes) + len(self.uploads) + len(self.deletes) + len(self.releases)
                + len(self.failures) + len(self.extensions) + self.calls_in_flight)

    @property
    def calls_in_flight(self) -> int:
        return self._pacing.calls_in_flight

    # -- queuing: each outcome drops its ticket's pending extension, here and
    # only here, so no caller can forget it and let an extension follow a release.

    def publish(self, ticket: T, document: str, attributes: Attributes | None = None, *,
                size: int | None = None) -> None:
        """Queue a result; ``size`` is what SNS counts, if known."""
        self._queue_post(Post.measured(ticket, document, attributes or {}, size))

    def _queue_post(self, entry: Post[T], first: bool = False) -> None:
        """Queue a result (``first``: ahead of the others, as one that was held back already)."""
        self.extensions.pop(entry.ticket, None)
        if not self.publishes:
            self._publish_since = self._clock()
        self._publish_bytes += entry.size
        if first:
            self.publishes.appendleft(entry)
        else:
            self.publishes.append(entry)

    def upload(self, ticket: T, document: str, key: str, pointer: str, attributes: Attributes | None = None) -> None:
        """Queue a result for S3, and the ``pointer`` document to publish once it is stored."""
        self.extensions.pop(ticket, None)
        announce = Post.measured(ticket, pointer, attributes or {})
        if key in self.stored:
            self._queue_post(announce)  # stored by an earlier receive: only the pointer again
        else:
            self.uploads.append(Upload(ticket, document, key, announce))

    def publish_failure(self, ticket: T, record: str, attributes: Attributes) -> None:
        """Queue a failure record; the ticket's release, queued next, waits until it has been sent."""
        self.extensions.pop(ticket, None)
        self._records.add(ticket)
        self.failures.append(Post.measured(ticket, record, attributes))

    def delete(self, ticket: T, outcome: str = "empty") -> None:
        self.extensions.pop(ticket, None)
        if not self.deletes:
            self._delete_since = self._clock()
        self.deletes.append(Drop(ticket, outcome))

    def release(self, ticket: T, seconds: int) -> None:
        self.extensions.pop(ticket, None)
        self.releases.append(Change(ticket, seconds))

    def extend(self, ticket: T, seconds: int) -> None:
        """Queue a heartbeat extension; at most one per ticket, none while its delete or release is under way."""
        if ticket not in self._in_sqs:
            self.extensions[ticket] = Change(ticket, seconds)

    def extending(self, ticket: T) -> bool:
        """An extension is queued or a visibility change or delete is in flight: queue none now."""
        return ticket in self.extensions or ticket in self._in_sqs

    def publishing(self) -> list[T]:
        """Tickets whose result is queued, or being stored or published."""
        return [*(e.ticket for e in self.publishes), *(e.ticket for e in self.uploads), *self._in_flight]

    def releasing(self, ticket: T) -> bool:
        """A release of this ticket's message is queued."""
        return any(c.ticket is ticket for c in self.releases)

    def waiting(self) -> list[T]:
        """Tickets whose result is on its way out: still to keep locked."""
        return [*(e.ticket for e in self.publishes), *(e.ticket for e in self.uploads),
                *(e.ticket for e in self.deletes), *self._in_flight]

    # -- when, and what ---------------------------------------------------------

    def linger_until(self) -> float | None:
        """When a lingering batch, or a kind of call waiting out its backoff, falls due."""
        # A kind backing off is due when its pause ends, though its linger may have passed long ago.
        times = [since + wait for kind, since, wait, queued in (
            (sending.PUBLISH, self._publish_since, LINGER, self.publishes),
            (sending.DELETE, self._delete_since, DELETE_LINGER, self.deletes))
            if queued and since is not None and not self._pacing.paused(kind)]
        queued = {sending.PUBLISH: self.publishes, sending.UPLOAD: self.uploads, sending.FAILURE: self.failures,
                  sending.DELETE: self.deletes, sending.VISIBILITY: self.extensions or self.releases}
        times += self._pacing.pauses_ending(kind for kind, waiting in queued.items() if waiting)
        return min(times, default=None)

    def backing_off(self) -> bool:
        """Some results, records or deletes wait out a backoff: the bus refuses or throttles us."""
        return self._pacing.backing_off()

    def backlogged(self) -> bool:
        """Two batches per sender waiting: receive nothing more until they are sent."""
        queued = len(self.publishes) + len(self.uploads) + len(self.deletes) + len(self.releases)
        return queued >= 2 * BATCH_MAX * self.senders

    def next_call(self, bus: Bus, s3: S3Target | None, more_coming: bool,
                  stopping: bool = False) -> Callable[[], Sent[T]] | None:
        """The next sender call that is due, or None.

        Visibility changes and uploads never wait. Results wait for a fuller
        batch only while more are sure to come (``more_coming``): light load
        never pays for batching. Deletes keep no one waiting, so they always
        wait for a full batch, up to DELETE_LINGER, unless the daemon is
        ``stopping``.
        """
        now = self._clock()
        self._pacing.turn(now, stopping)
        paused = self._pacing.paused
        if self.failures and not paused(sending.FAILURE):
            # Never held back: each record holds back its message's release.
            records = self._take_posts(self.failures)
            return self._flying(sending.FAILURE, partial(sending.publish, bus, records, sending.FAILURE))
        visibility = [] if paused(sending.VISIBILITY) else self._take_visibility()
        if visibility:
            self._in_sqs.update(e.ticket for e in visibility)
            return self._flying(sending.VISIBILITY, partial(sending.change_visibility, bus, visibility))
        if self.uploads and not paused(sending.UPLOAD):
            entry = self.uploads.popleft()
            assert s3 is not None
            self._in_flight.add(entry.ticket)
            return self._flying(sending.UPLOAD, partial(sending.upload, bus, s3, entry))
        if self.publishes and not paused(sending.PUBLISH) and self._pacing.due(
                sending.PUBLISH, self._publish_since, LINGER, self._full_publish(), now, more_coming):
            batch = self._take_posts(self.publishes)
            self._publish_since = now if self.publishes else None
            self._in_flight.update(e.ticket for e in batch)
            return self._flying(sending.PUBLISH, partial(sending.publish, bus, batch))
        ready = [] if paused(sending.DELETE) else [d for d in self.deletes if d.ticket not in self._in_sqs]
        if ready and self._pacing.due(sending.DELETE, self._delete_since, DELETE_LINGER, len(ready) >= BATCH_MAX,
                               now, not stopping):
            deletes = ready[:BATCH_MAX]
            taken = {d.ticket for d in deletes}
            self.deletes = deque(d for d in self.deletes if d.ticket not in taken)
            self._delete_since = now if self.deletes else None
            self._in_sqs.update(taken)
            return self._flying(sending.DELETE, partial(sending.delete, bus, deletes))
        return None

    def completed(self, sent: Sent[T], stopping: bool = False) -> list[Completion[T]]:
        """A sender call came back: clear what it held, queue what follows, and say what became of it.

        A published result's delete is queued now, and an uploaded result's
        pointer is queued for publishing (first, so it is not held back).
        Entries that failed transiently are queued again, ahead of the rest,
        unless the daemon is ``stopping``; the others failed for good.
        """
        final = sent.failures()
        again: list[Any] = []
        if stopping:
            self._pacing.landed(sent.kind, None)
        else:
            again = [entry for entry, err in final if transient(err)]
            self._pacing.landed(sent.kind, bool(again))
            if sent.kind == sending.VISIBILITY:
                again = []  # the heartbeat queues a failed extension anew; a failed release lapses
            else:
                final = [(entry, err) for entry, err in final if not transient(err)]
        tickets = {e.ticket for e in sent.entries}
        if sent.kind == sending.VISIBILITY:
            self._in_sqs -= tickets
            return [Unchanged(e.ticket, err) for e, err in final]
        if sent.kind == sending.DELETE:
            self._in_sqs -= tickets
            if again:
                # They lingered once already: due as soon as the backoff ends.
                self._delete_since = self._clock() - DELETE_LINGER
                self.deletes.extendleft(reversed(again))
            return [*(Deleted(e.ticket, e.outcome) for e in sent.succeeded()),
                    *(Deleted(e.ticket, e.outcome, err) for e, err in final)]
        if sent.kind == sending.FAILURE:
            self._records -= tickets
            self._records.update(e.ticket for e in again)
            self.failures.extendleft(reversed(again))
            _log_records(sent.succeeded(), final)
            return []
        self._in_flight -= tickets
        if sent.kind == sending.PUBLISH:
            for e in sent.succeeded():
                self.delete(e.ticket, "done")
            for e in reversed(again):
                self._queue_post(e, first=True)
            return [Unsent(e.ticket, f"publish failed: {err}") for e, err in final]
        for e in sent.succeeded():  # uploads
            self._remember(e.key)
            self._queue_post(e.pointer, first=True)
        self.uploads.extendleft(reversed(again))
        return [Unsent(e.ticket, err) for e, err in final]

    # -- helpers -----------------------------------------------------------------

    def _flying(self, kind: str, call: Callable[[], Sent[T]]) -> Callable[[], Sent[T]]:
        self._pacing.flying(kind)
        return call

    def _take_visibility(self) -> list[Change[T]]:
        """Up to ten visibility changes, none for a ticket with an SQS call in flight."""
        taken: list[Change[T]] = []
        for ticket in list(self.extensions):
            if len(taken) == BATCH_MAX:
                return taken
            if ticket not in self._in_sqs:
                taken.append(self.extensions.pop(ticket))
        if self.releases and len(taken) < BATCH_MAX:
            kept: deque[Change[T]] = deque()
            for release in self.releases:
                if len(taken) < BATCH_MAX and release.ticket not in self._in_sqs | self._records:
                    taken.append(release)
                else:
                    kept.append(release)
            self.releases = kept
        return taken

    def _full_publish(self) -> bool:
        """Ten results, or no room left for one more like the last: lingering would gain nothing."""
        if len(self.publishes) >= BATCH_MAX:
            return True
        return self._publish_bytes + self.publishes[-1].size > SNS_MAX_BYTES

    def _take_posts(self, queue: deque[Post[T]]) -> list[Post[T]]:
        batch, size = sending.take_posts(queue)
        if queue is self.publishes:
            self._publish_bytes -= size
        return batch

    def _remember(self, key: str) -> None:
        self.stored[key] = None
        while len(self.stored) > STORED_KEYS:
            del self.stored[next(iter(self.stored))]


def _log_records(sent: Iterable[Post[T]], failed: Iterable[tuple[Post[T], str]]) -> None:
    # Either way the message's release follows (it was held back until now).
    for e in sent:
        log.info("failure record published for message %s", loggable(e.ticket.message.message_id))
    for e, err in failed:
        log.warning("message %s: its failure record was not published (%s); the message still "
                    "goes to the dead-letter queue", loggable(e.ticket.message.message_id), loggable(err))
