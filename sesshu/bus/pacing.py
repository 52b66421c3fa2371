"""When each kind of sender call may go: its backoff while it keeps failing, its linger, its calls in flight.

A kind of call (``sesshu.bus.sending``: publish, upload, failure record,
delete, visibility change) whose entries fail for a transient reason waits
out a jittered backoff that grows while it keeps failing, and goes on at
once after a call that passed. A partial batch waits for a fuller one only
while a call of its kind is in flight or, while more is sure to come, up to
its linger. The outbox (``sesshu.bus.outbox``) asks; this module keeps the
counts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from sesshu.backoff import Backoff
from sesshu.bus import sending

# Backoff of a kind of call that keeps failing transiently: 0.5 s, doubling
# to 20 s, each delay shortened by up to half at random so that a fleet's
# hosts do not retry in step. Throttling passes in seconds; an outage of
# minutes costs at most 20 s of extra wait once it ends.
RETRY_FIRST, RETRY_CAP, RETRY_JITTER = 0.5, 20.0, 0.5
# Visibility changes back off too, but 2 s at most: an extension is urgent (its
# message lapses when it is late), and the heartbeat queues a failed one anew.
VISIBILITY_RETRY_CAP = 2.0
RETRIED_KINDS = (sending.PUBLISH, sending.UPLOAD, sending.FAILURE, sending.DELETE)


class Pacing:
    """Per kind of call: calls in flight, transient failures in a row, and until when it is paused."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._backoff = {kind: Backoff(RETRY_FIRST, RETRY_CAP, RETRY_JITTER) for kind in RETRIED_KINDS}
        self._backoff[sending.VISIBILITY] = Backoff(RETRY_FIRST, VISIBILITY_RETRY_CAP, RETRY_JITTER)
        self._paused_until: dict[str, float] = {}
        self._in_flight: Counter[str] = Counter()

    @property
    def calls_in_flight(self) -> int:
        return self._in_flight.total()

    def flying(self, kind: str) -> None:
        self._in_flight[kind] += 1

    def landed(self, kind: str, failed_transiently: bool | None) -> None:
        """A call came back; ``failed_transiently`` None: its kind is not paced (the daemon stops)."""
        self._in_flight[kind] -= 1
        if failed_transiently is None:
            return
        if failed_transiently:
            self._paused_until[kind] = self._clock() + self._backoff[kind].next()
        else:
            self._backoff[kind].reset()
            self._paused_until.pop(kind, None)

    def turn(self, now: float, stopping: bool) -> None:
        """Lift the pauses that ended; all of them when stopping, since the last try goes at once."""
        if stopping:
            self._paused_until.clear()
            return
        for kind, until in list(self._paused_until.items()):
            if now >= until:
                del self._paused_until[kind]

    def paused(self, kind: str) -> bool:
        return kind in self._paused_until

    def backing_off(self) -> bool:
        """Some results, records or deletes wait out a backoff: the bus refuses or throttles us."""
        return any(kind in self._paused_until for kind in RETRIED_KINDS)

    def pauses_ending(self, queued: Iterable[str]) -> list[float]:
        """When the pauses of these kinds (those with something queued) end."""
        return [until for kind in queued if (until := self._paused_until.get(kind)) is not None]

    def due(self, kind: str, since: float | None, wait: float, full: bool, now: float, more_coming: bool) -> bool:
        """A full batch goes at once, however many are in flight: that is what several senders are for.

        A partial one waits while a call of its kind is in flight (it will
        fill meanwhile), and then only while more is sure to come, up to ``wait``.
        """
        if full:
            return True
        if self._in_flight[kind]:
            return False
        return not more_coming or since is None or now >= since + wait
