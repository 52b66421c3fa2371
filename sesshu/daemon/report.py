"""The daemon's health, told once a loop turn to systemd and to the metrics listener.

The :class:`Reporter` owns what is only reporting: whether READY=1 went out,
the outcome counts of the last minute for the status line, and the health
snapshot the listener's ``/readyz`` reads. The supervisor hands it a
:class:`Facts` each turn; it decides nothing about the work.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from sesshu.daemon.metrics import Metrics
from sesshu.daemon.notify import Health, Notifier


@dataclass(frozen=True)
class Facts:
    """What the loop knows this turn, as the reporter needs it."""

    now: float
    stopping: bool
    size: int  # configured slots
    up: int  # slots with their plugins loaded
    busy: int
    in_flight: int  # received messages without an outcome yet
    finished: int  # outcomes recorded so far
    receiving: bool | None  # the last receive came back; None before the first
    last_error: str  # the last bus error, one short line, "" if none


class Reporter:
    def __init__(self, notifier: Notifier, metrics: Metrics | None) -> None:
        self.notifier = notifier
        self._metrics = metrics
        self._ready_sent = False
        self._finished: deque[tuple[float, int]] = deque()  # (when, outcomes so far): the last minute's
        self._facts: Facts | None = None

    def turn(self, facts: Facts) -> None:
        self._facts = facts
        health = health_of(facts)
        if health.ready and not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self.status())
        self.notifier.turn(self.status)
        if self._metrics is not None:
            self._metrics.health = health
            self._metrics.gauges(facts.size, facts.up, facts.busy, facts.in_flight)

    def reloaded(self) -> None:
        """A reload was applied or refused: systemd hears READY=1 again after its RELOADING=1."""
        self.notifier.ready(self.status())

    def status(self) -> str:
        """A line for ``systemctl status``: workers busy, jobs in the last minute, the last bus error."""
        facts = self._facts
        if facts is None:
            return "starting"
        counts = self._finished
        counts.append((facts.now, facts.finished))
        while len(counts) > 1 and counts[1][0] <= facts.now - 60:
            counts.popleft()
        text = (f"{facts.busy}/{facts.size} workers busy, {facts.finished - counts[0][1]} jobs in the last minute")
        if facts.last_error:
            text += f"; last bus error: {facts.last_error}"
        return text


def health_of(facts: Facts) -> Health:
    """Ready while every slot is up and the last receive came back; else why not."""
    if facts.stopping:
        why = "stopping"
    elif facts.up < facts.size:
        why = f"{facts.size - facts.up} of {facts.size} workers not up"
    elif facts.receiving is None:
        why = "no receive has come back yet"
    elif not facts.receiving:
        why = f"the last receive failed: {facts.last_error}"
    else:
        why = ""
    return Health(facts.now, not why, why)
