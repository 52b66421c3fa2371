"""The receive side of the loop: how many messages to ask for, and the lanes that ask.

The :class:`Intake` owns the poller lanes, what each receive under way asked
for, whether the queue looked deep, the backoff after a failed receive, and
the pollers abandoned as stalled. The supervisor says how many messages it
could take; the intake decides whether a receive is worth its request.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial

from sesshu.bus.api import BATCH_MAX, Bus
from sesshu.bus.lanes import BusHealth, Lane, Lanes, Received, receive
from sesshu.bus.offloaded import Offload

log = logging.getLogger(__name__)

STALL_SLACK = 45.0  # a receive this much past its long poll has stalled (its timeouts failed)
FLOW_SECONDS = 1.0  # the pool's intake rate is an average over about this long
# Seconds of one receive at a time after receives side by side split a batch:
# doubled by each split, halved by each receive side by side that comes back
# full, so a queue kept shallow soon gets one receive at a time for good.
SPLIT_PAUSE = (1.0, 60.0)


class Intake:
    def __init__(self, bus: Bus, count: int, poll_seconds: int, health: BusHealth,
                 wake: Callable[[], None], clock: Callable[[], float], offload: Offload | None = None) -> None:
        self._bus = bus
        self._offload = offload  # where requests stored in S3 may be read from
        self._poll_seconds = poll_seconds
        self._health = health
        self._clock = clock
        self.lanes = Lanes("sesshu-poller", count, wake, clock)
        self._asked: dict[int, int] = {}  # poller lane (by identity) -> messages its receive asked for
        self.deep = False  # the last receive came back full: the queue holds more
        self.abandoned: list[Lane] = []  # stalled pollers: they may still complete
        self._flow = 0.0  # messages handed to workers per second, decayed since _flow_at
        self._flow_at = clock()
        self._round_trip = 0.0  # seconds a receive takes when it does not wait for messages, smoothed
        self._overlapped: set[int] = set()  # poller lanes (by identity) whose receive had another beside it
        self._timed: set[int] = set()  # poller lanes whose receive went to a queue already deep: it cannot wait
        self._alone_until = 0.0  # no receive beside another before this
        self._pause = SPLIT_PAUSE[0]

    @property
    def busy(self) -> bool:
        return self.lanes.busy

    def poll_after(self) -> float | None:
        """When a free poller may receive again after a failure, if that is still ahead."""
        if self.lanes.free() is None or self._health.poll_after <= self._clock():
            return None
        return self._health.poll_after

    def started(self, n: int) -> None:
        """``n`` held messages went to workers: the flow that receives must keep up with."""
        now = self._clock()
        self._flow = self._flow_now(now) + n / FLOW_SECONDS
        self._flow_at = now

    def _flow_now(self, now: float) -> float:
        return self._flow * math.exp(-(now - self._flow_at) / FLOW_SECONDS)

    def lead(self) -> int:
        """Messages the workers will start while a receive sent now is on its way.

        By Little's law that is the flow times the round trip. Asking for
        them ahead keeps quick jobs fed when a round trip is long (tens of
        milliseconds to AWS) whatever the worker count, and costs nothing
        for slow jobs, whose flow is small. It is capped at what the
        pollers can have in flight at once.
        """
        flow = self._flow_now(self._clock())
        return min(int(flow * self._round_trip), len(self.lanes.lanes) * BATCH_MAX)

    def poll(self, room: int, held: int, full: int) -> None:
        """Receive for ``room`` messages (idle slots plus prefetch, minus the ``held`` ones), plus the lead.

        ``full`` is what the pool could ever take at once: while held
        messages keep the workers busy, a receive waits until it can ask for
        a full batch of that, since each receive is a billed request.
        """
        room += self.lead()
        if self._clock() < self._health.poll_after:
            return
        while (lane := self.lanes.free()) is not None:
            in_flight = [other for other in self.lanes.lanes if other.busy]
            want = room - sum(self._asked.get(id(other), 0) for other in in_flight)
            if want <= 0:
                return
            if in_flight:
                # A second receive at once only for a full batch from a queue
                # that the last receive found deep, and not soon after two
                # side by side came back short: otherwise it would only split
                # the same messages over more billed requests.
                if not self.deep or want < BATCH_MAX or self._clock() < self._alone_until:
                    return
                self._overlapped.update(id(other) for other in [lane, *in_flight])
            elif held and want < min(BATCH_MAX, full):
                return
            n = min(want, BATCH_MAX)
            self._asked[id(lane)] = n
            if self.deep:
                self._timed.add(id(lane))
            lane.submit(partial(receive, self._bus, n, self._poll_seconds, self._clock, self._offload))

    def take(self) -> list[Received]:
        """Receives that came back with messages; a failure only sets the backoff (and logs once)."""
        out = []
        done = [(id(lane), r) for lane in self.lanes.lanes for r in lane.take()]
        late = [(id(lane), r) for lane in self.abandoned for r in lane.take()]
        self._timed.difference_update(key for key, _ in late)  # a stalled receive is no round trip
        for key, received in [*done, *late]:
            overlapped = key in self._overlapped
            self._overlapped.discard(key)
            timed = key in self._timed
            self._timed.discard(key)
            if received.error is not None:
                self._health.receive_failed(received.error)
                continue
            self._health.received()
            self.deep = len(received.messages) >= received.asked > 0
            if overlapped and not self.deep:
                now = self._clock()
                if now >= self._alone_until:  # its partner's shortfall, if any, is the same split
                    self._alone_until = now + self._pause
                    self._pause = min(SPLIT_PAUSE[1], 2 * self._pause)
            elif overlapped:
                self._pause = max(SPLIT_PAUSE[0], self._pause / 2)
            if timed and self.deep:
                # Sent to a deep queue and back full, so it waited for no
                # message: a sample of the round trip. A long poll that
                # waited, then filled, is not one (it would swell the lead).
                took = max(0.0, self._clock() - received.started)
                self._round_trip = took if not self._round_trip else 0.8 * self._round_trip + 0.2 * took
            out.append(received)
        return out

    def watchdog(self) -> None:
        now = self._clock()
        for lane in list(self.lanes.lanes):
            stalled = now - lane.since
            if lane.busy and stalled > self._poll_seconds + STALL_SLACK:
                # A thread cannot be killed; abandon it. Whatever it receives
                # later still arrives as a completion and is handled as usual.
                log.error("polling has stalled for %.0f s; starting a new poller", stalled)
                self.abandoned.append(lane)
                self.lanes.replace(lane)

    def stop(self) -> None:
        self.lanes.stop()
        for lane in self.abandoned:
            lane.stop()

    def join(self, timeout: float) -> bool:
        return self.lanes.join(timeout) and all(lane.join(0.1) for lane in self.abandoned)
