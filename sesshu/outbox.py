"""What waits for the sender, and one sender turn.

The :class:`Outbox` owns every pending bus change of the outcomes: results
to publish or upload, deletes, releases and heartbeat extensions. It alone
decides when a batch is due (lingering briefly while a fuller batch is sure
to come), when receiving must wait (backpressure), and what goes into the
next batch within SNS's and SQS's limits. :func:`send_batch` runs one batch
in the sender lane, publish before delete.

Failure records (``sesshu.failures``) are published before their message's
last release, never after: see :meth:`Outbox.next_batch`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sesshu.bus import (
    BATCH_MAX,
    SNS_MAX_BYTES,
    Bus,
    BusError,
    Delete,
    Publish,
    Visibility,
    message_size,
    string_attributes,
)
from sesshu.busio import Fault

STORED_KEYS = 1024  # S3 keys remembered as stored, so a retried result is not uploaded again

Attributes = Mapping[str, str]  # a message's SNS attributes (sesshu.failures.attributes)


@dataclass
class Sent:
    """What became of one sender batch, per ticket."""

    published: list[Any] = field(default_factory=list)  # published and deleted
    publish_failed: list[tuple[Any, str]] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)  # "empty" tickets deleted
    delete_failed: list[tuple[Any, str]] = field(default_factory=list)
    visibility_failed: list[tuple[Any, str]] = field(default_factory=list)
    failures_published: list[Any] = field(default_factory=list)  # tickets whose failure record went out
    failures_failed: list[tuple[Any, str]] = field(default_factory=list)  # ... and whose record was lost
    error: str | None = None  # set when any call of the batch failed as a whole (a Fault)


LINGER = 0.05  # seconds a partial batch of results may wait for more while jobs still run


class Outbox:
    """Pending bus work, by kind, each item carrying the supervisor's ticket."""

    def __init__(self) -> None:
        self.publishes: deque[tuple[Any, str, Attributes]] = deque()  # (ticket, document, attributes)
        # (ticket, document, key, pointer, the pointer's attributes)
        self.uploads: deque[tuple[Any, str, str, str, Attributes]] = deque()
        self.failures: deque[tuple[Any, str, Attributes]] = deque()  # (ticket, failure record, attributes)
        self.deletes: deque[Any] = deque()  # tickets whose result was empty
        self.releases: deque[tuple[Any, int]] = deque()  # (ticket, visibility seconds)
        # Heartbeat extensions, by ticket identity: one per ticket at most, and
        # dropped as soon as the ticket's outcome is queued, so an extension
        # can never land after (or in the same batch as) its release or delete.
        self.extensions: dict[int, tuple[Any, int]] = {}
        self._waiting_since: float | None = None  # when results began waiting for the sender
        # S3 keys stored by earlier batches (oldest first, bounded). The key is
        # the message's own, so when a result whose pointer failed to publish
        # comes back, only the pointer goes out again. Only the sender thread
        # touches it, one batch at a time.
        self.stored: dict[str, None] = {}

    def __len__(self) -> int:
        return (len(self.publishes) + len(self.uploads) + len(self.deletes) + len(self.releases)
                + len(self.extensions) + len(self.failures))

    def urgent(self) -> bool:
        """Visibility changes, uploads and failure records (which hold a release) never wait."""
        return bool(self.releases or self.extensions or self.uploads or self.failures)

    # Queuing a ticket's outcome drops its pending extension, here and only
    # here, so no caller can forget it and let an extension follow a release.

    def publish(self, ticket: Any, document: str, attributes: Attributes | None = None) -> None:
        self.extensions.pop(id(ticket), None)
        self.publishes.append((ticket, document, attributes or {}))

    def upload(self, ticket: Any, document: str, key: str, pointer: str,
               attributes: Attributes | None = None) -> None:
        self.extensions.pop(id(ticket), None)
        self.uploads.append((ticket, document, key, pointer, attributes or {}))

    def publish_failure(self, ticket: Any, document: str, attributes: Attributes) -> None:
        """Queue a failure record; the ticket's release, queued next, waits until it is sent."""
        self.extensions.pop(id(ticket), None)
        self.failures.append((ticket, document, attributes))

    def delete(self, ticket: Any) -> None:
        self.extensions.pop(id(ticket), None)
        self.deletes.append(ticket)

    def release(self, ticket: Any, seconds: int) -> None:
        self.extensions.pop(id(ticket), None)
        self.releases.append((ticket, seconds))

    def extend(self, ticket: Any, seconds: int) -> None:
        """Queue a heartbeat extension; at most one per ticket."""
        self.extensions[id(ticket)] = (ticket, seconds)

    def extending(self, ticket: Any) -> bool:
        return id(ticket) in self.extensions

    def pending_results(self) -> int:
        """Results and deletes waiting for the sender: what lingering is about."""
        return len(self.publishes) + len(self.deletes)

    def note_waiting(self, now: float) -> None:
        """Start the linger clock when results or deletes begin to wait."""
        if self.pending_results() and self._waiting_since is None:
            self._waiting_since = now

    def linger_until(self) -> float | None:
        return None if self._waiting_since is None else self._waiting_since + LINGER

    def due(self, now: float, more_coming: bool) -> bool:
        """Whether to send now, or linger briefly while a fuller batch is sure to come.

        Results and deletes wait up to LINGER only while jobs are still
        running (``more_coming``: more results are on their way) and the
        batch is not full. When nothing else is in flight they go at once:
        light load never pays for batching. Visibility changes and uploads
        never wait.
        """
        waiting = self.pending_results()
        lingering = (waiting and waiting < BATCH_MAX and not self.urgent() and more_coming
                     and self._waiting_since is not None and now < self._waiting_since + LINGER)
        if lingering:
            return False
        self._waiting_since = None
        return True

    def backlogged(self) -> bool:
        """Two batches' worth waiting: receive nothing more until they are sent."""
        return len(self) >= 2 * BATCH_MAX

    def waiting(self) -> list[Any]:
        """Tickets whose result is queued for publishing or deleting: still to keep locked."""
        return [t for t, *_ in self.publishes] + [u[0] for u in self.uploads] + list(self.deletes)

    def next_batch(self, bus: Bus, s3: S3Target | None = None) -> Callable[[], Sent] | None:
        """The sender call for the next batch, or None when there is nothing to send.

        The ordering rule of failure records: a ticket's release never goes
        out while its failure record is still queued. Records are taken
        first (up to ten and 256 KiB, as results), and :func:`send_batch`
        publishes them before any visibility change of the same turn; a
        release whose record did not fit this turn stays queued for the
        next. Whether the record's publish succeeds or fails, the release
        follows: a failed record loses only the record.
        """
        failures = _cut(self.failures, BATCH_MAX, 0)
        unsent = {id(t) for t, *_ in self.failures}
        visibility = [self.extensions.pop(k) for k in list(self.extensions)[:BATCH_MAX]]
        visibility += _take_unless(self.releases, BATCH_MAX - len(visibility), unsent)
        # One PublishBatch carries at most ten messages and 256 KiB of them
        # all together (message_size: what SNS counts, attributes included),
        # an upload's pointer included. The upload goes first, so a steady
        # stream of publishes cannot hold it back; a lone message always goes
        # (settle made sure that it fits on its own).
        uploads = _take(self.uploads, 1)
        size = sum(message_size(pointer, string_attributes(attrs)) for _, _, _, pointer, attrs in uploads)
        publishes = _cut(self.publishes, BATCH_MAX - len(uploads), size)
        deletes = _take(self.deletes, BATCH_MAX)
        if not (visibility or publishes or uploads or deletes or failures):
            return None
        stored = self.stored
        return lambda: send_batch(bus, visibility, publishes, deletes, uploads, s3, stored, failures)


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str


def _take(items: deque[Any], n: int) -> list[Any]:
    return [items.popleft() for _ in range(min(len(items), n))]


def _take_unless(releases: deque[tuple[Any, int]], n: int, held: set[int]) -> list[tuple[Any, int]]:
    """Up to ``n`` releases, in order, but none whose ticket is in ``held``: those stay queued."""
    taken: list[tuple[Any, int]] = []
    kept: list[tuple[Any, int]] = []
    while releases and len(taken) < n:
        item = releases.popleft()
        (kept if id(item[0]) in held else taken).append(item)
    releases.extendleft(reversed(kept))
    return taken


def _cut(items: deque[tuple[Any, str, Attributes]], room: int, size: int) -> list[tuple[Any, str, Attributes]]:
    """Take documents for one PublishBatch: up to ``room`` of them, and 256 KiB with ``size`` already in it."""
    out: list[tuple[Any, str, Attributes]] = []
    while items and len(out) < room:
        _, document, attrs = items[0]
        n = message_size(document, string_attributes(attrs))
        if size and size + n > SNS_MAX_BYTES:
            break
        size += n
        out.append(items.popleft())
    return out


def send_batch(
    bus: Bus,
    releases: list[tuple[Any, int]],
    publishes: list[tuple[Any, str, Attributes]],
    deletes: list[Any],
    uploads: list[tuple[Any, str, str, str, Attributes]] | None = None,
    s3: S3Target | None = None,
    stored: dict[str, None] | None = None,
    failures: list[tuple[Any, str, Attributes]] | None = None,
) -> Sent:
    """Run one sender turn: failure records, visibility changes, then publish-then-delete, then deletes.

    Failure records go first: a release in this turn may be its message's
    last, and its record must be out (or have failed) before it.

    A message is deleted only if its own publish entry succeeded, in this
    same turn, so a delete can never overtake its publish. An oversized
    result is stored in S3 first, and only then is its pointer published; a
    key in ``stored`` is not uploaded again. A batch refused as a whole for
    what one of its entries is (too long, an invalid parameter) is sent again
    entry by entry, so only the entry at fault fails.
    """
    sent = Sent()
    if failures:
        records = [Publish(str(i), doc, attrs) for i, (_, doc, attrs) in enumerate(failures)]
        failed = _guard(sent, bus.publish_failures, records)
        for i, (ticket, _, _) in enumerate(failures):
            if str(i) in failed:
                sent.failures_failed.append((ticket, failed[str(i)]))
            else:
                sent.failures_published.append(ticket)
    publishes = list(publishes)
    for ticket, document, key, pointer, attrs in uploads or []:
        assert s3 is not None
        if stored is None or key not in stored:
            try:
                bus.put_object(s3.bucket, key, document)
            except BusError as exc:
                sent.publish_failed.append((ticket, f"S3 upload failed: {exc}"))
                continue
            if stored is not None:
                stored[key] = None
                while len(stored) > STORED_KEYS:
                    del stored[next(iter(stored))]
        publishes.append((ticket, pointer, attrs))
    if releases:
        entries = [Visibility(str(i), t.message.receipt_handle, s) for i, (t, s) in enumerate(releases)]
        failed = _guard(sent, bus.change_visibility, entries)
        sent.visibility_failed = [(releases[int(k)][0], v) for k, v in failed.items()]
    to_delete: list[Any] = []
    if publishes:
        pub = [Publish(str(i), doc, attrs) for i, (_, doc, attrs) in enumerate(publishes)]
        failed = _guard(sent, bus.publish, pub)
        for i, (ticket, _, _) in enumerate(publishes):
            if str(i) in failed:
                sent.publish_failed.append((ticket, failed[str(i)]))
            else:
                sent.published.append(ticket)
                to_delete.append(ticket)
    first_empty = len(to_delete)
    to_delete.extend(deletes)
    # Published and empty results share the delete batch: in tens, as SQS takes them.
    for start in range(0, len(to_delete), BATCH_MAX):
        dels = [Delete(str(i), t.message.receipt_handle)
                for i, t in enumerate(to_delete[start:start + BATCH_MAX], start)]
        failed = _guard(sent, bus.delete, dels)
        sent.delete_failed += [(to_delete[int(k)], v) for k, v in failed.items()]
        sent.deleted += [t for i, t in enumerate(to_delete[start:start + BATCH_MAX], start)
                         if i >= first_empty and str(i) not in failed]
    return sent


def _guard(sent: Sent, call: Callable[[list[Any]], dict[str, str]], entries: list[Any]) -> dict[str, str]:
    """``call(entries)``; a failure of the call as a whole fails every entry (and is kept in ``sent.error``)."""
    try:
        return call(entries)
    except BusError as exc:
        if exc.splittable and len(entries) > 1:
            # Refused for what the batch holds, not for where it goes: each
            # entry alone may pass, and the one at fault fails by itself.
            sent.error = Fault(f"{exc}; sent its {len(entries)} entries one by one", exc.code)
            failed: dict[str, str] = {}
            for entry in entries:
                failed.update(_guard(sent, call, [entry]))
            return failed
        sent.error = Fault(str(exc), exc.code)
        return {e.entry_id: str(exc) for e in entries}
    except Exception as exc:  # noqa: BLE001 - a bug in a bus must not kill the lane
        sent.error = Fault(f"unexpected {type(exc).__name__}: {exc}")
        return {e.entry_id: str(sent.error) for e in entries}
