"""Bus calls off the main loop: the lanes that run them, and how the bus is faring.

The supervisor's loop must keep enforcing deadlines and reaping children
while a 20-second long poll is outstanding, so every bus call runs in a
thread and its completion wakes the loop. A :class:`Lane` is one thread
running one call at a time; :class:`Lanes` is a few of them, so that
several receives (``bus.receivers``) and several sender calls
(``bus.senders``) can be in flight at once. The outbox (``sesshu.bus.outbox``)
decides which sender calls may overlap. :class:`BusHealth` tells outages
from refusals and logs each once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from sesshu.backoff import Backoff
from sesshu.bus.api import Bus, BusError, Fault, Message, error_name
from sesshu.bus.offloaded import Offload, resolve
from sesshu.text import loggable

log = logging.getLogger(__name__)


@dataclass
class Received:
    messages: list[Message]
    error: str | None = None
    started: float = 0.0  # monotonic time the receive was sent: visibility runs from then
    asked: int = 0  # messages asked for


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


def receive(bus: Bus, n: int, wait: int, clock: Callable[[], float] = time.monotonic,
            offload: Offload | None = None) -> Received:
    """One receive; with ``offload``, requests stored in S3 are read too, here in the lane."""
    started = clock()
    try:
        messages = bus.receive(n, wait)
        if offload is not None:
            messages = [resolve(bus, m, offload) for m in messages]
        return Received(messages, None, started, n)
    except BusError as exc:
        return Received([], Fault(str(exc), exc.code), started, n)
    except Exception as exc:  # noqa: BLE001
        return Received([], f"unexpected {type(exc).__name__}: {exc}", started, n)


class Lanes:
    """A few lanes of one kind; the loop hands a call to whichever is free."""

    def __init__(self, name: str, count: int, wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name, self._wake, self._clock = name, wake, clock
        self._made = 0
        self.lanes = [self._new() for _ in range(count)]

    def _new(self) -> Lane:
        self._made += 1
        return Lane(f"{self._name}-{self._made}", self._wake, self._clock)

    def free(self) -> Lane | None:
        return next((lane for lane in self.lanes if not lane.busy), None)

    def busy_count(self) -> int:
        return sum(lane.busy for lane in self.lanes)

    @property
    def busy(self) -> bool:
        return any(lane.busy for lane in self.lanes)

    def take(self) -> list[Any]:
        return [result for lane in self.lanes for result in lane.take()]

    def replace(self, lane: Lane) -> None:
        """Put a fresh lane in a stalled one's place (a thread cannot be killed; the caller keeps the old one)."""
        self.lanes[self.lanes.index(lane)] = self._new()

    def stop(self) -> None:
        for lane in self.lanes:
            lane.stop()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(lane.join(max(0.0, deadline - time.monotonic())) for lane in self.lanes)


class BusHealth:
    """Outages, seen from the loop: log once when one starts and once when it ends.

    A failing receive also sets ``poll_after``: exponential backoff with
    jitter, so a fleet of hosts does not hammer a recovering endpoint in step.
    Throttling is no outage (the service answered, asking for fewer
    requests): it is logged at most once a minute per kind of call, with the
    count of refusals since the last line.
    """

    REFUSAL_LOG_EVERY = 60.0  # seconds between two log lines for the same refusal
    THROTTLING_LOG_EVERY = 60.0  # seconds between two log lines for throttling of one kind of call

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.poll_after = 0.0
        self._receive_down: float | None = None
        self._backoff = Backoff(first=1.0, cap=30.0, jitter=0.5)
        # By kind of call: since when it has failed. One kind may be down while
        # another works (SNS out, SQS up): each says once when it stops and starts.
        self._send_down: dict[str, float] = {}
        self._refusals: dict[tuple[str, str], float] = {}  # (what, error code): when last logged
        self._throttled: dict[str, tuple[float, int]] = {}  # kind of call: (when last logged, refusals since)
        self.receiving: bool | None = None  # whether the last receive came back; None before the first
        self.last_error = ""  # the last bus error, in one short line, for a person to read

    def receive_failed(self, error: str) -> None:
        now = self._clock()
        self.receiving = False
        self.last_error = loggable(error, 200)
        if _permanent(error):
            # The bus answered: it is up, and refuses. Back off all the same.
            self._refused("receiving", error)
        elif _throttling(error):
            self._throttling("receive", error)  # up, and asking for fewer receives: back off
        elif self._receive_down is None:
            self._receive_down = now
            log.error("bus outage: %s; retrying with backoff", loggable(error, 500))
        self.poll_after = now + self._backoff.next()

    def received(self) -> None:
        self.receiving = True
        if self._receive_down is not None:
            log.warning("bus recovered after %.1f s", self._clock() - self._receive_down)
        self._receive_down = None
        self._backoff.reset()

    def sent(self, error: str | None, kind: str = "send") -> None:
        """A sender call of this kind came back, failed as a whole with ``error`` or not."""
        if error is not None:
            self.last_error = loggable(error, 200)
        if error is not None and _permanent(error):
            self._refused("sending", error)
            error = None  # the bus answered, so it is up
        elif error is not None and _throttling(error):
            self._throttling(kind, error)
            error = None
        if error is not None and kind not in self._send_down:
            self._send_down[kind] = self._clock()
            log.error("bus outage while sending: %s; results and deletes wait, and are sent again "
                      "with backoff", loggable(error, 500))
        elif error is None and kind in self._send_down:
            log.warning("sending recovered after %.1f s (%s calls)", self._clock() - self._send_down.pop(kind),
                        kind)

    def _refused(self, doing: str, error: Fault) -> None:
        """Log a permanent refusal; the same one again only once a minute (it recurs with every batch)."""
        now = self._clock()
        key = (doing, error.code)
        last = self._refusals.get(key)
        if last is None or now - last >= self.REFUSAL_LOG_EVERY:
            self._refusals[key] = now
            log.error("the bus refused a request while %s (a client error, not an outage): %s", doing,
                      loggable(error, 500))


    def _throttling(self, kind: str, error: Fault) -> None:
        now = self._clock()
        last, count = self._throttled.get(kind, (None, 0))
        count += 1
        if last is None or now - last >= self.THROTTLING_LOG_EVERY:
            since = "" if last is None else f" in the last {now - last:.0f} s"
            log.warning("bus throttling: %d %s call(s) refused for the request rate%s (%s); "
                        "backing off, then trying again", count, kind, since, error_name(error.code))
            self._throttled[kind] = (now, 0)
        else:
            self._throttled[kind] = (last, count)


def _throttling(error: str) -> TypeGuard[Fault]:
    return isinstance(error, Fault) and error.throttling


def _permanent(error: str) -> TypeGuard[Fault]:
    return isinstance(error, Fault) and error.permanent
