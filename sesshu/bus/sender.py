"""The send side of the loop: the outbox's queues, and the lanes that carry them out.

The :class:`Sender` is to sending what ``sesshu.bus.intake.Intake`` is to
receiving: one owner. It holds what waits to be sent and what is in flight
(as an :class:`~sesshu.bus.outbox.Outbox`, whose verbs queue the work), the
sender lanes, and the health log of sending; the supervisor hands it free
turns and gets back typed completions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sesshu.bus.api import Bus
from sesshu.bus.lanes import BusHealth, Lanes
from sesshu.bus.outbox import Outbox
from sesshu.bus.sending import Completion, S3Target, T


class Sender(Outbox[T]):
    def __init__(self, bus: Bus, s3: S3Target | None, count: int, health: BusHealth,
                 wake: Callable[[], None], clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock, senders=count)
        self._bus = bus
        self._s3 = s3
        self._health = health
        self.lanes = Lanes("sesshu-sender", count, wake, clock)

    @property
    def busy(self) -> bool:
        return self.lanes.busy

    def send(self, more_coming: bool, stopping: bool = False) -> None:
        """Hand free lanes the calls that are due (``more_coming``: results are sure to follow)."""
        while (lane := self.lanes.free()) is not None:
            call = self.next_call(self._bus, self._s3, more_coming, stopping)
            if call is None:
                return
            lane.submit(call)

    def take(self, stopping: bool = False) -> list[Completion[T]]:
        """What the calls that came back did, for the settler to record."""
        done: list[Completion[T]] = []
        for sent in self.lanes.take():
            self._health.sent(sent.error, sent.kind)
            done += self.completed(sent, stopping)
        return done

    def wake_at(self) -> float | None:
        """When a lingering batch or a backoff falls due, if a lane is free to send it."""
        return self.linger_until() if self.lanes.free() is not None else None

    def stop(self) -> None:
        self.lanes.stop()

    def join(self, timeout: float) -> bool:
        return self.lanes.join(timeout)
