"""A fake monotonic clock for unit tests: time passes only when the test moves ``now``."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
