"""Exponential backoff: the one rule for every delay that grows with failures.

Used for crash-looping workers (``sesshu.pool.restarts``), for receives during a bus
outage (``sesshu.bus.lanes``, with jitter so that a fleet does not retry in
step), and for the delay of a retried message (``sesshu.jobs.settle``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

_MAX_DOUBLINGS = 64  # past this any cap has long been reached; keeps 2**n finite


def exponential(attempt: int, first: float, cap: float) -> float:
    """``first`` doubled for each attempt after the first, at most ``cap``."""
    return min(first * 2.0 ** min(max(attempt - 1, 0), _MAX_DOUBLINGS), cap)


class Backoff:
    """Consecutive failures and the delay they have earned."""

    def __init__(self, first: float, cap: float, jitter: float = 0.0,
                 rng: Callable[[], float] = random.random) -> None:
        self._first, self._cap, self._jitter, self._rng = first, cap, jitter, rng
        self.failures = 0

    def next(self) -> float:
        """Count one more failure; the delay before the next attempt."""
        self.failures += 1
        delay = exponential(self.failures, self._first, self._cap)
        return delay * (1.0 - self._jitter * self._rng()) if self._jitter else delay

    def reset(self) -> None:
        self.failures = 0
