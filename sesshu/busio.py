"""Bus calls off the main loop: one poller thread, one sender thread.

The supervisor's loop must keep enforcing deadlines and reaping children
while a 20-second long poll is outstanding, so every bus call runs in a
thread and its completion wakes the loop. Two single-thread lanes keep
ordering simple: the *poller* only receives; the *sender* publishes, deletes
and changes visibility. The :class:`Outbox` batches whatever piles up while
the sender is busy, so light load pays no batching delay and heavy load gets
batches of ten.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from sesshu.backoff import Backoff
from sesshu.bus import (
    BATCH_MAX,
    SNS_MAX_BYTES,
    Bus,
    BusError,
    Delete,
    Message,
    Publish,
    Visibility,
    is_permanent,
    message_size,
)

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger("sesshu.busio")
STORED_KEYS = 1024  # S3 keys remembered as stored, so a retried result is not uploaded again


class Fault(str):
    """Why a bus call failed: the text to log, carrying the AWS error code.

    A str, so whatever only logs or compares it needs to know nothing more;
    :class:`BusHealth` tells a permanent refusal from an outage by its code.
    """

    code: str

    def __new__(cls, text: str, code: str = "") -> Self:
        fault = super().__new__(cls, text)
        fault.code = code
        return fault

    @property
    def permanent(self) -> bool:
        return is_permanent(self.code)


@dataclass
class Received:
    messages: list[Message]
    error: str | None = None
    started: float = 0.0  # monotonic time the receive was sent: visibility runs from then


@dataclass
class Sent:
    """What became of one sender batch, per ticket."""

    published: list[Any] = field(default_factory=list)  # published and deleted
    publish_failed: list[tuple[Any, str]] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)  # "empty" tickets deleted
    delete_failed: list[tuple[Any, str]] = field(default_factory=list)
    visibility_failed: list[tuple[Any, str]] = field(default_factory=list)
    error: str | None = None  # set when any call of the batch failed as a whole (a Fault)


class Lane:
    """One daemon thread running one bus call at a time; it alone sets and clears its busy flag."""

    def __init__(self, name: str, wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = wake
        self._clock = clock
        self._busy = False
        self.since = 0.0  # when the call under way was submitted
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A call is under way, or its result has not been taken yet."""
        return self._busy

    def submit(self, call: Callable[[], Any]) -> None:
        assert not self._busy
        self._busy = True
        self.since = self._clock()
        self._jobs.put(call)

    def take(self) -> list[Any]:
        """Results of finished calls (in the loop's thread); the lane is free again after one."""
        out = []
        while not self._results.empty():
            out.append(self._results.get_nowait())
        if out:
            self._busy = False
        return out

    def stop(self) -> None:
        self._jobs.put(None)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        # In the lane's thread: hand over and wake the loop, nothing more.
        while (call := self._jobs.get()) is not None:
            self._results.put(call())
            self._wake()


LINGER = 0.05  # seconds a partial batch of results may wait for more while jobs still run


class Outbox:
    """Pending bus work, by kind, each item carrying the supervisor's ticket."""

    def __init__(self) -> None:
        self.publishes: deque[tuple[Any, str]] = deque()  # (ticket, document)
        self.uploads: deque[tuple[Any, str, str, str]] = deque()  # (ticket, document, key, pointer)
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
                + len(self.extensions))

    def urgent(self) -> bool:
        """Visibility changes and uploads never wait for a fuller batch."""
        return bool(self.releases or self.extensions or self.uploads)

    # Queuing a ticket's outcome drops its pending extension, here and only
    # here, so no caller can forget it and let an extension follow a release.

    def publish(self, ticket: Any, document: str) -> None:
        self.extensions.pop(id(ticket), None)
        self.publishes.append((ticket, document))

    def upload(self, ticket: Any, document: str, key: str, pointer: str) -> None:
        self.extensions.pop(id(ticket), None)
        self.uploads.append((ticket, document, key, pointer))

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
        return [t for t, _ in self.publishes] + [u[0] for u in self.uploads] + list(self.deletes)

    def next_batch(self, bus: Bus, s3: S3Target | None = None) -> Callable[[], Sent] | None:
        """The sender call for the next batch, or None when there is nothing to send."""
        visibility = [self.extensions.pop(k) for k in list(self.extensions)[:BATCH_MAX]]
        visibility += _take(self.releases, BATCH_MAX - len(visibility))
        # One PublishBatch carries at most ten messages and 256 KiB of them
        # all together (message_size: what SNS counts), an upload's pointer
        # included. The upload goes first, so a steady stream of publishes
        # cannot hold it back; a lone message always goes (settle made sure
        # that it fits on its own).
        uploads = _take(self.uploads, 1)
        size = sum(message_size(pointer) for _, _, _, pointer in uploads)
        publishes: list[tuple[Any, str]] = []
        while self.publishes and len(uploads) + len(publishes) < BATCH_MAX:
            n = message_size(self.publishes[0][1])
            if size and size + n > SNS_MAX_BYTES:
                break
            size += n
            publishes.append(self.publishes.popleft())
        deletes = _take(self.deletes, BATCH_MAX)
        if not (visibility or publishes or uploads or deletes):
            return None
        stored = self.stored
        return lambda: send_batch(bus, visibility, publishes, deletes, uploads, s3, stored)


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str


def _take(items: deque[Any], n: int) -> list[Any]:
    return [items.popleft() for _ in range(min(len(items), n))]


def send_batch(
    bus: Bus,
    releases: list[tuple[Any, int]],
    publishes: list[tuple[Any, str]],
    deletes: list[Any],
    uploads: list[tuple[Any, str, str, str]] | None = None,
    s3: S3Target | None = None,
    stored: dict[str, None] | None = None,
) -> Sent:
    """Run one sender turn: visibility changes, then publish-then-delete, then deletes.

    A message is deleted only if its own publish entry succeeded, in this
    same turn, so a delete can never overtake its publish. An oversized
    result is stored in S3 first, and only then is its pointer published; a
    key in ``stored`` is not uploaded again. A batch refused as a whole for
    what one of its entries is (too long, an invalid parameter) is sent again
    entry by entry, so only the entry at fault fails.
    """
    sent = Sent()
    publishes = list(publishes)
    for ticket, document, key, pointer in uploads or []:
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
        publishes.append((ticket, pointer))
    if releases:
        entries = [Visibility(str(i), t.message.receipt_handle, s) for i, (t, s) in enumerate(releases)]
        failed = _guard(sent, bus.change_visibility, entries)
        sent.visibility_failed = [(releases[int(k)][0], v) for k, v in failed.items()]
    to_delete: list[Any] = []
    if publishes:
        pub = [Publish(str(i), doc) for i, (_, doc) in enumerate(publishes)]
        failed = _guard(sent, bus.publish, pub)
        for i, (ticket, _) in enumerate(publishes):
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


def receive(bus: Bus, n: int, wait: int) -> Received:
    started = time.monotonic()
    try:
        return Received(bus.receive(n, wait), None, started)
    except BusError as exc:
        return Received([], Fault(str(exc), exc.code), started)
    except Exception as exc:  # noqa: BLE001
        return Received([], f"unexpected {type(exc).__name__}: {exc}", started)


class BusHealth:
    """Outages, seen from the loop: log once when one starts and once when it ends.

    A failing receive also sets ``poll_after``: exponential backoff with
    jitter, so a fleet of hosts does not hammer a recovering endpoint in step.
    """

    REFUSAL_LOG_EVERY = 60.0  # seconds between two log lines for the same refusal

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.poll_after = 0.0
        self._receive_down: float | None = None
        self._backoff = Backoff(first=1.0, cap=30.0, jitter=0.5)
        self._send_down: float | None = None
        self._refusals: dict[tuple[str, str], float] = {}  # (what, error code): when last logged

    def receive_failed(self, error: str) -> None:
        now = self._clock()
        if _permanent(error):
            # The bus answered: it is up, and refuses. Back off all the same.
            self._refused("receiving", error)
        elif self._receive_down is None:
            self._receive_down = now
            log.error("bus outage: %s; retrying with backoff", error)
        self.poll_after = now + self._backoff.next()

    def received(self) -> None:
        if self._receive_down is not None:
            log.warning("bus recovered after %.1f s", self._clock() - self._receive_down)
        self._receive_down = None
        self._backoff.reset()

    def sent(self, error: str | None) -> None:
        if error is not None and _permanent(error):
            self._refused("sending", error)
            error = None  # the bus answered, so it is up
        if error is not None and self._send_down is None:
            self._send_down = self._clock()
            log.error("bus outage while sending: %s; results stay undeleted and are retried", error)
        elif error is None and self._send_down is not None:
            log.warning("sending recovered after %.1f s", self._clock() - self._send_down)
            self._send_down = None

    def _refused(self, doing: str, error: Fault) -> None:
        """Log a permanent refusal; the same one again only once a minute (it recurs with every batch)."""
        now = self._clock()
        key = (doing, error.code)
        last = self._refusals.get(key)
        if last is None or now - last >= self.REFUSAL_LOG_EVERY:
            self._refusals[key] = now
            log.error("the bus refused a request while %s (a client error, not an outage): %s", doing, error)


def _permanent(error: str) -> TypeGuard[Fault]:
    return isinstance(error, Fault) and error.permanent
