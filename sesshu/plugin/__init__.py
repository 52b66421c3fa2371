"""The plugin API: what a plugin module offers, and how it says "later" or "never".

A plugin is a module with two functions, and optionally a third::

    def configure(options: dict) -> None    # once, when a worker loads it: the config's options
    def validate(target: str) -> None       # raise if the target is not one this plugin takes
    def fetch(target: str) -> object        # JSON-serialisable data, or None for nothing to publish

Both run in a contained worker process, never in the daemon. Anything
``validate`` raises rejects the request (it goes the dead-letter way);
anything ``fetch`` raises retries it, with the daemon's backoff. Two
exceptions say more than that:

- :class:`RetryLater`: retry, but not before ``seconds`` (a site's
  ``Retry-After``); the outcome is *retried* with reason ``retry_later``.
- :class:`Reject`: never retry; the outcome is *rejected*, as for an
  invalid target, and the reason travels into the failure record.

``sesshu run PLUGIN TARGET`` runs one job in a real worker; the
:mod:`sesshu.testing` helper does the same from a test suite.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

__all__ = ["MAX_RETRY_SECONDS", "Configurable", "Plugin", "Reject", "RetryLater"]

MAX_RETRY_SECONDS = 43200  # SQS's longest visibility timeout: 12 hours


class Plugin(Protocol):
    """The two functions every plugin module has."""

    def validate(self, target: str) -> None: ...

    def fetch(self, target: str) -> Any: ...


class Configurable(Protocol):
    """The optional third: called once per worker with the plugin's ``options`` from the config."""

    def configure(self, options: dict[str, Any]) -> None: ...


class RetryLater(Exception):
    """Retry this job, not sooner than ``seconds`` from now (0 to 12 hours; a fraction rounds up)."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(seconds, reason)
        self.seconds = retry_seconds(seconds)
        self.reason = str(reason)

    def __str__(self) -> str:
        return f"retry in {self.seconds} s" + (f": {self.reason}" if self.reason else "")


class Reject(Exception):
    """Never retry this job: the target is bad for good (a 404 that will stay, a name that does not resolve)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = str(reason)

    def __str__(self) -> str:
        return self.reason


def retry_seconds(seconds: Any) -> int:
    """Whole seconds within SQS's bounds; anything that is not a finite number counts as 0."""
    try:
        value = float(seconds)
    except (TypeError, ValueError, OverflowError):
        return 0
    if not math.isfinite(value):
        return MAX_RETRY_SECONDS if value > 0 else 0
    return min(MAX_RETRY_SECONDS, max(0, math.ceil(value)))
