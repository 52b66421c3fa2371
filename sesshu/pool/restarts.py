"""Why the pool replaced its slots, and when it may start the next one.

Every slot the pool replaces is counted by reason (``timeout``, ``crashed``,
``boot_failed``, ``protocol``, ``max_jobs``, or the reason a runner gave for
leaving) and told to the hook the pool was built with (the metrics'
restart counter). Slots that die before they prove the plugins work are a
crash loop: each such death, and each start that fails, holds the next start
back, 0.1 s doubling to 30 s (``sesshu.backoff``), until a slot finishes a
job or an idle one outlives :data:`MIN_UPTIME`. The pool decides which of
these happened; this is the one place that keeps the score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sesshu.backoff import Backoff

log = logging.getLogger(__name__)

MIN_UPTIME = 5.0  # an idle slot dying sooner than this counts towards the crash-loop backoff


class Restarts:
    """The pool's count of replaced slots, by reason, and its crash-loop backoff."""

    def __init__(self, on_restart: Callable[[str], None] | None = None) -> None:
        self._on_restart = on_restart
        self._crash_loop = Backoff(first=0.1, cap=30.0)
        self._respawn_at = 0.0
        self._counts: dict[str, int] = {}

    @property
    def counts(self) -> dict[str, int]:
        """Slots replaced so far, by reason."""
        return dict(self._counts)

    @property
    def respawn_at(self) -> float:
        """The earliest time (on the pool's clock) a slot may start."""
        return self._respawn_at

    def count(self, reason: str) -> None:
        """One slot replaced, for ``reason``."""
        self._counts[reason] = self._counts.get(reason, 0) + 1
        if self._on_restart is not None:
            self._on_restart(reason)

    def proven(self) -> None:
        """A slot finished a job: the plugins work, and any crash loop is over."""
        self._crash_loop.reset()

    def start_failed(self, now: float) -> None:
        """A slot could not be started, or died starting: hold the next start back."""
        delay = self._crash_loop.next()
        self._respawn_at = now + delay
        if self._crash_loop.failures > 1:
            log.warning("workers keep dying at start-up; next start in %.1f s", delay)

    def died_starting(self, now: float) -> None:
        """A slot died by itself before it said Ready."""
        self.start_failed(now)
        self.count("boot_failed")

    def died_idle(self, now: float, spawned: float) -> None:
        """An idle slot died by itself: a crash, and part of a crash loop if it died young."""
        # Saying Ready proves little (a plugin's import may doom the
        # process later): only a slot that lasted counts as healthy.
        if now - spawned < MIN_UPTIME:
            self.start_failed(now)
        else:
            self.proven()
        self.count("crashed")
