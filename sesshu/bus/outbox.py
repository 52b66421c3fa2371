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
wait out a jittered backoff that grows while they keep failing: the job is
not done again, and its message stays locked by the heartbeat meanwhile (it
is :meth:`Outbox.waiting`). Only a permanent refusal, or a failure while the
daemon stops, is final: :meth:`Outbox.completed` returns those. A stop
sends everything still queued once more, without waiting out a backoff.

Results linger briefly (:data:`LINGER`) for a fuller PublishBatch while jobs
still run; deletes linger longer (:data:`DELETE_LINGER`), across sender
turns, so that large results, one publish each, still share deletes in tens.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from functools import partial
from typing import Any

from sesshu.backoff import Backoff
from sesshu.bus import sending
from sesshu.bus.api import BATCH_MAX, SNS_MAX_BYTES, Bus, message_size, string_attributes, transient
from sesshu.bus.sending import Attributes, S3Target, Sent

__all__ = ["DELETE_LINGER", "LINGER", "STORED_KEYS", "Outbox", "S3Target", "Sent"]

STORED_KEYS = 1024  # S3 keys remembered as stored, so a retried result is not uploaded again
LINGER = 0.05  # seconds a partial batch of results may wait for more while jobs still run
# Seconds a partial batch of deletes may wait for more. The result is out by
# then, so no one waits on it, and the heartbeat keeps the message locked.
# Large results come at a dozen a second or so, and a second fills their
# DeleteMessageBatch. The price: a master killed by SIGKILL leaves up to a
# second of published results undeleted, and they are processed again
# (duplicates, never losses; a graceful stop sends every delete first).
DELETE_LINGER = 1.0
# Backoff of a kind of call that keeps failing transiently: 0.5 s, doubling
# to 20 s, each delay shortened by up to half at random so that a fleet's
# hosts do not retry in step. Throttling passes in seconds; an outage of
# minutes costs at most 20 s of extra wait once it ends.
RETRY_FIRST, RETRY_CAP, RETRY_JITTER = 0.5, 20.0, 0.5
VISIBILITY_RETRY_CAP = 2.0
RETRIED_KINDS = (sending.PUBLISH, sending.UPLOAD, sending.FAILURE, sending.DELETE)


class Outbox:
    """Pending bus work by kind, each item carrying the supervisor's ticket; and what is in flight."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, senders: int = 1) -> None:
        self._clock = clock
        self.senders = senders
        self.publishes: deque[tuple[Any, str, Attributes]] = deque()  # (ticket, document, attributes)
        # (ticket, document, key, pointer, the pointer's attributes)
        self.uploads: deque[tuple[Any, str, str, str, Attributes]] = deque()
        self.failures: deque[tuple[Any, str, Attributes]] = deque()  # (ticket, failure record, attributes)
        self._records: set[int] = set()  # tickets whose failure record is queued or in flight
        self.deletes: deque[tuple[Any, str]] = deque()  # (ticket, outcome it confirms: done or empty)
        self.releases: deque[tuple[Any, int]] = deque()  # (ticket, visibility seconds)
        # Heartbeat extensions, by ticket identity: one per ticket at most.
        self.extensions: dict[int, tuple[Any, int]] = {}
        self._publish_since: float | None = None  # when the oldest waiting result was queued
        self._delete_since: float | None = None
        self._in_sqs: set[int] = set()  # tickets with a visibility change or delete in flight
        self._in_flight: dict[int, Any] = {}  # tickets with an upload or publish in flight
        self._kinds_in_flight: Counter[str] = Counter()
        # What SNS counts of each queued result or record, by ticket: computed
        # once when queued, since a 200 KiB document costs its encoding each time.
        self._sizes: dict[int, int] = {}
        self._publish_bytes = 0  # of everything in ``publishes``
        # S3 keys stored by earlier uploads (oldest first, bounded). The key is
        # the message's own, so when a result whose pointer failed to publish
        # comes back, only the pointer goes out again.
        self.stored: dict[str, None] = {}
        # Per kind of call: its transient failures in a row, and when it may go again.
        self._backoff = {kind: Backoff(RETRY_FIRST, RETRY_CAP, RETRY_JITTER) for kind in RETRIED_KINDS}
        # Visibility changes back off too, but 2 s at most: an extension is urgent (its
        # message lapses when it is late), and the heartbeat queues a failed one anew.
        self._backoff[sending.VISIBILITY] = Backoff(RETRY_FIRST, VISIBILITY_RETRY_CAP, RETRY_JITTER)
        self._paused_until: dict[str, float] = {}

    def __len__(self) -> int:
        """Items queued, and calls in flight: zero once everything has been sent."""
        return (len(self.publishes) + len(self.uploads) + len(self.deletes) + len(self.releases)
                + len(self.failures) + len(self.extensions) + self.calls_in_flight)

    @property
    def calls_in_flight(self) -> int:
        return self._kinds_in_flight.total()

    # -- queuing: each outcome drops its ticket's pending extension, here and
    # only here, so no caller can forget it and let an extension follow a release.

    def publish(self, ticket: Any, document: str, attributes: Attributes | None = None, *,
                size: int | None = None, first: bool = False) -> None:
        """Queue a result (``first``: ahead of the others); ``size`` is what SNS counts, if known."""
        self.extensions.pop(id(ticket), None)
        if not self.publishes:
            self._publish_since = self._clock()
        entry = (ticket, document, attributes or {})
        self._publish_bytes += self._measure(entry, size)
        if first:
            self.publishes.appendleft(entry)
        else:
            self.publishes.append(entry)

    def upload(self, ticket: Any, document: str, key: str, pointer: str,
               attributes: Attributes | None = None) -> None:
        self.extensions.pop(id(ticket), None)
        if key in self.stored:
            self.publish(ticket, pointer, attributes)  # stored by an earlier receive: only the pointer again
        else:
            self.uploads.append((ticket, document, key, pointer, attributes or {}))

    def publish_failure(self, ticket: Any, record: str, attributes: Attributes) -> None:
        """Queue a failure record; the ticket's release, queued next, waits until it has been sent."""
        self.extensions.pop(id(ticket), None)
        self._records.add(id(ticket))
        entry = (ticket, record, attributes)
        self._measure(entry, None)
        self.failures.append(entry)

    def delete(self, ticket: Any, outcome: str = "empty") -> None:
        self.extensions.pop(id(ticket), None)
        if not self.deletes:
            self._delete_since = self._clock()
        self.deletes.append((ticket, outcome))

    def release(self, ticket: Any, seconds: int) -> None:
        self.extensions.pop(id(ticket), None)
        self.releases.append((ticket, seconds))

    def extend(self, ticket: Any, seconds: int) -> None:
        """Queue a heartbeat extension; at most one per ticket, none while its delete or release is under way."""
        if id(ticket) not in self._in_sqs:
            self.extensions[id(ticket)] = (ticket, seconds)

    def extending(self, ticket: Any) -> bool:
        """An extension is queued or a visibility change or delete is in flight: queue none now."""
        return id(ticket) in self.extensions or id(ticket) in self._in_sqs

    def waiting(self) -> list[Any]:
        """Tickets whose result is on its way out: still to keep locked."""
        return [*(t for t, *_ in self.publishes), *(u[0] for u in self.uploads),
                *(t for t, _ in self.deletes), *self._in_flight.values()]

    # -- when, and what ---------------------------------------------------------

    def linger_until(self) -> float | None:
        """When a lingering batch, or a kind of call waiting out its backoff, falls due."""
        paused = self._paused_until
        # A kind backing off is due when its pause ends, though its linger may have passed long ago.
        times = [since + wait for kind, since, wait, queued in (
            (sending.PUBLISH, self._publish_since, LINGER, self.publishes),
            (sending.DELETE, self._delete_since, DELETE_LINGER, self.deletes))
            if queued and since is not None and kind not in paused]
        queued = {sending.PUBLISH: self.publishes, sending.UPLOAD: self.uploads, sending.FAILURE: self.failures,
                  sending.DELETE: self.deletes, sending.VISIBILITY: self.extensions or self.releases}
        times += [until for kind, until in paused.items() if queued[kind]]
        return min(times, default=None)

    def backing_off(self) -> bool:
        """Some results, records or deletes wait out a backoff: the bus refuses or throttles us."""
        return any(kind in self._paused_until for kind in RETRIED_KINDS)

    def backlogged(self) -> bool:
        """Two batches per sender waiting: receive nothing more until they are sent."""
        queued = len(self.publishes) + len(self.uploads) + len(self.deletes) + len(self.releases)
        return queued >= 2 * BATCH_MAX * self.senders

    def next_call(self, bus: Bus, s3: S3Target | None, more_coming: bool,
                  stopping: bool = False) -> Callable[[], Sent] | None:
        """The next sender call that is due, or None.

        Visibility changes and uploads never wait. Results wait for a fuller
        batch only while more are sure to come (``more_coming``): light load
        never pays for batching. Deletes keep no one waiting, so they always
        wait for a full batch, up to DELETE_LINGER, unless the daemon is
        ``stopping``.
        """
        now = self._clock()
        if stopping:
            self._paused_until.clear()  # the last try of everything held goes at once
        else:
            for kind, until in list(self._paused_until.items()):
                if now >= until:
                    del self._paused_until[kind]
        paused = self._paused_until
        if self.failures and sending.FAILURE not in paused:
            # Never held back: each record holds back its message's release.
            records = self._take_publishes(self.failures)
            return self._flying(sending.FAILURE, partial(sending.publish_failures, bus, records))
        visibility = [] if sending.VISIBILITY in paused else self._take_visibility()
        if visibility:
            self._in_sqs.update(id(t) for t, _ in visibility)
            return self._flying(sending.VISIBILITY, partial(sending.change_visibility, bus, visibility))
        if self.uploads and sending.UPLOAD not in paused:
            entry = self.uploads.popleft()
            assert s3 is not None
            self._in_flight[id(entry[0])] = entry[0]
            return self._flying(sending.UPLOAD, partial(sending.upload, bus, s3, entry))
        if self.publishes and sending.PUBLISH not in paused and self._due(
                sending.PUBLISH, self._publish_since, LINGER, self._full_publish(), now, more_coming):
            batch = self._take_publishes(self.publishes)
            self._publish_since = now if self.publishes else None
            self._in_flight.update((id(t), t) for t, *_ in batch)
            return self._flying(sending.PUBLISH, partial(sending.publish, bus, batch))
        ready = [] if sending.DELETE in paused else [d for d in self.deletes if id(d[0]) not in self._in_sqs]
        if ready and self._due(sending.DELETE, self._delete_since, DELETE_LINGER, len(ready) >= BATCH_MAX,
                               now, not stopping):
            deletes = ready[:BATCH_MAX]
            taken = {id(t) for t, _ in deletes}
            self.deletes = deque(d for d in self.deletes if id(d[0]) not in taken)
            self._delete_since = now if self.deletes else None
            self._in_sqs.update(taken)
            return self._flying(sending.DELETE, partial(sending.delete, bus, deletes))
        return None

    def completed(self, sent: Sent, stopping: bool = False) -> list[tuple[Any, str]]:
        """A sender call came back: clear what it held, queue what follows, and return its final failures.

        A published result's delete is queued now, and an uploaded result's
        pointer is queued for publishing (first, so it is not held back).
        Entries that failed transiently are queued again, ahead of the rest,
        unless the daemon is ``stopping``; the failures returned are the
        others, which the caller must settle.
        """
        self._kinds_in_flight[sent.kind] -= 1
        final = sent.failures()
        again: list[Any] = []
        if sent.kind in RETRIED_KINDS and not stopping:
            again = [entry for entry, err in final if transient(err)]
            final = [(entry, err) for entry, err in final if not transient(err)]
            self._pace(sent.kind, bool(again))
        elif sent.kind == sending.VISIBILITY and not stopping:
            self._pace(sent.kind, any(transient(err) for _, err in final))
        if sent.kind in (sending.VISIBILITY, sending.DELETE):
            self._in_sqs.difference_update(id(e[0]) for e in sent.entries)
            if again:
                self._delete_since = self._delete_since or self._clock()
                self.deletes.extendleft(reversed(again))
            return final
        if sent.kind == sending.FAILURE:
            self._records.difference_update(id(e[0]) for e in sent.entries)
            for entry in reversed(again):
                self._records.add(id(entry[0]))
                self._measure(entry, None)
                self.failures.appendleft(entry)
            return final
        for entry in sent.entries:
            self._in_flight.pop(id(entry[0]), None)
        if sent.kind == sending.PUBLISH:
            for ticket, *_ in sent.succeeded():
                self.delete(ticket, "done")
            for ticket, document, attributes in reversed(again):
                self.publish(ticket, document, attributes, first=True)
        elif sent.kind == sending.UPLOAD:
            for ticket, _, key, pointer, attributes in sent.succeeded():
                self._remember(key)
                self.publish(ticket, pointer, attributes, first=True)
            self.uploads.extendleft(reversed(again))
        return final

    # -- helpers -----------------------------------------------------------------

    def _pace(self, kind: str, failed: bool) -> None:
        """After a call of this kind: back off while its entries keep failing transiently, else go on at once."""
        if failed:
            self._paused_until[kind] = self._clock() + self._backoff[kind].next()
        else:
            self._backoff[kind].reset()
            self._paused_until.pop(kind, None)

    def _flying(self, kind: str, call: Callable[[], Sent]) -> Callable[[], Sent]:
        self._kinds_in_flight[kind] += 1
        return call

    def _due(self, kind: str, since: float | None, wait: float, full: bool, now: float, more_coming: bool) -> bool:
        """A full batch goes at once, however many are in flight: that is what several senders are for.

        A partial one waits while a call of its kind is in flight (it will
        fill meanwhile), and then only while more is sure to come, up to ``wait``.
        """
        if full:
            return True
        if self._kinds_in_flight[kind]:
            return False
        return not more_coming or since is None or now >= since + wait

    def _take_visibility(self) -> list[tuple[Any, int]]:
        """Up to ten visibility changes, none for a ticket with an SQS call in flight."""
        taken: list[tuple[Any, int]] = []
        for key in list(self.extensions):
            if len(taken) == BATCH_MAX:
                return taken
            if key not in self._in_sqs:
                taken.append(self.extensions.pop(key))
        if self.releases and len(taken) < BATCH_MAX:
            kept: deque[tuple[Any, int]] = deque()
            for release in self.releases:
                if len(taken) < BATCH_MAX and id(release[0]) not in self._in_sqs | self._records:
                    taken.append(release)
                else:
                    kept.append(release)
            self.releases = kept
        return taken

    def _full_publish(self) -> bool:
        """Ten results, or no room left for one more like the last: lingering would gain nothing."""
        if len(self.publishes) >= BATCH_MAX:
            return True
        return self._publish_bytes + self._sizes[id(self.publishes[-1][0])] > SNS_MAX_BYTES

    def _take_publishes(self, queue: deque[tuple[Any, str, Attributes]]) -> list[tuple[Any, str, Attributes]]:
        # One PublishBatch carries at most ten messages and 256 KiB of them
        # all together (what SNS counts: bodies and attributes). A lone
        # message always goes (the settler made sure that it fits on its own).
        size = 0
        batch: list[tuple[Any, str, Attributes]] = []
        while queue and len(batch) < BATCH_MAX:
            n = self._sizes[id(queue[0][0])]
            if batch and size + n > SNS_MAX_BYTES:
                break
            size += n
            batch.append(queue.popleft())
            del self._sizes[id(batch[-1][0])]
        if queue is self.publishes:
            self._publish_bytes -= size
        return batch

    def _measure(self, entry: tuple[Any, str, Attributes], size: int | None) -> int:
        _, document, attributes = entry
        if size is None:
            size = message_size(document, string_attributes(attributes))
        self._sizes[id(entry[0])] = size
        return size

    def _remember(self, key: str) -> None:
        self.stored[key] = None
        while len(self.stored) > STORED_KEYS:
            del self.stored[next(iter(self.stored))]

