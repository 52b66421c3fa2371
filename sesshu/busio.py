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

import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from sesshu.bus import BATCH_MAX, Bus, BusError, Delete, Message, Publish, Visibility


@dataclass
class Received:
    messages: list[Message]
    error: str | None = None


@dataclass
class Sent:
    """What became of one sender batch, per ticket."""

    published: list[Any] = field(default_factory=list)  # published and deleted
    publish_failed: list[tuple[Any, str]] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)  # "empty" tickets deleted
    delete_failed: list[tuple[Any, str]] = field(default_factory=list)
    visibility_failed: list[tuple[Any, str]] = field(default_factory=list)
    error: str | None = None  # set when any call of the batch failed as a whole


class Lane:
    """One daemon thread running one bus call at a time."""

    def __init__(self, name: str, done: Callable[[Any], None]) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._done = done
        self.busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], Any]) -> None:
        assert not self.busy
        self.busy = True
        self._jobs.put(call)

    def stop(self) -> None:
        self._jobs.put(None)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (call := self._jobs.get()) is not None:
            self._done(call())


class Outbox:
    """Pending bus work, by kind, each item carrying the supervisor's ticket."""

    def __init__(self) -> None:
        self.publishes: deque[tuple[Any, str]] = deque()  # (ticket, document)
        self.deletes: deque[Any] = deque()  # tickets whose result was empty
        self.releases: deque[tuple[Any, int]] = deque()  # (ticket, visibility seconds)

    def __len__(self) -> int:
        return len(self.publishes) + len(self.deletes) + len(self.releases)

    def next_batch(self, bus: Bus) -> Callable[[], Sent] | None:
        """The sender call for the next batch, or None when there is nothing to send."""
        releases = _take(self.releases)
        publishes = _take(self.publishes)
        deletes = _take(self.deletes)
        if not (releases or publishes or deletes):
            return None
        return lambda: send_batch(bus, releases, publishes, deletes)


def _take(items: deque[Any]) -> list[Any]:
    return [items.popleft() for _ in range(min(len(items), BATCH_MAX))]


def send_batch(
    bus: Bus,
    releases: list[tuple[Any, int]],
    publishes: list[tuple[Any, str]],
    deletes: list[Any],
) -> Sent:
    """Run one sender turn: releases, then publish-then-delete, then deletes.

    A message is deleted only if its own publish entry succeeded, in this
    same turn, so a delete can never overtake its publish.
    """
    sent = Sent()
    if releases:
        entries = [Visibility(str(i), t.message.receipt_handle, s) for i, (t, s) in enumerate(releases)]
        failed = _guard(sent, lambda: bus.change_visibility(entries), entries)
        sent.visibility_failed = [(releases[int(k)][0], v) for k, v in failed.items()]
    to_delete: list[Any] = []
    if publishes:
        pub = [Publish(str(i), doc) for i, (_, doc) in enumerate(publishes)]
        failed = _guard(sent, lambda: bus.publish(pub), pub)
        for i, (ticket, _) in enumerate(publishes):
            if str(i) in failed:
                sent.publish_failed.append((ticket, failed[str(i)]))
            else:
                sent.published.append(ticket)
                to_delete.append(ticket)
    first_empty = len(to_delete)
    to_delete.extend(deletes)
    if to_delete:
        dels = [Delete(str(i), t.message.receipt_handle) for i, t in enumerate(to_delete)]
        failed = _guard(sent, lambda: bus.delete(dels), dels)
        sent.delete_failed = [(to_delete[int(k)], v) for k, v in failed.items()]
        sent.deleted = [t for i, t in enumerate(to_delete[first_empty:], first_empty) if str(i) not in failed]
    return sent


def _guard(sent: Sent, call: Callable[[], dict[str, str]], entries: list[Any]) -> dict[str, str]:
    try:
        return call()
    except BusError as exc:
        sent.error = str(exc)
        return {e.entry_id: str(exc) for e in entries}
    except Exception as exc:  # noqa: BLE001 - a bug in a bus must not kill the lane
        sent.error = f"unexpected {type(exc).__name__}: {exc}"
        return {e.entry_id: sent.error for e in entries}


def receive(bus: Bus, n: int, wait: int) -> Received:
    try:
        return Received(bus.receive(n, wait))
    except BusError as exc:
        return Received([], str(exc))
    except Exception as exc:  # noqa: BLE001
        return Received([], f"unexpected {type(exc).__name__}: {exc}")
