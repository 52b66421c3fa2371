"""A bench plugin that does next to nothing, or waits to be killed.

``n:SIZE[:TAG]`` returns a small dict carrying TAG, SIZE bytes of filler and
how long the call took (``took``, seconds), so end-to-end latency can
subtract plugin time. ``io:MS[:TAG]`` sleeps MS milliseconds first, as a
plugin waiting on a remote answer would (no CPU meanwhile). ``stamp:PATH`` writes "PID MONOTONIC" to PATH when it
starts (CLOCK_MONOTONIC is system-wide on Linux, so the bench can compare
it). ``hold:PATH`` writes the same, then sleeps for an hour; ``stubborn:PATH``
also ignores SIGTERM. Both return at once if PATH already exists, so a
retried delivery of a killed job does not block a worker again.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def validate(target: str) -> None:
    if target.partition(":")[0] not in ("n", "io", "stamp", "hold", "stubborn"):
        raise ValueError(f"not a noop target: {target[:40]}")


def fetch(target: str) -> Any:
    start = time.perf_counter()
    action, _, arg = target.partition(":")
    if action == "n":
        size, _, tag = arg.partition(":")
        return {"tag": tag, "data": "x" * int(size or 0), "took": time.perf_counter() - start}
    if action == "io":
        ms, _, tag = arg.partition(":")
        time.sleep(float(ms or 0) / 1000)
        return {"tag": tag, "took": time.perf_counter() - start}
    if os.path.exists(arg):
        return {"again": arg}
    _stamp(arg)
    if action == "stamp":
        return {"stamped": arg}
    if action == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(3600)
    return None


def _stamp(path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {time.monotonic()!r}")
    os.replace(tmp, path)


def read_stamp(path: str) -> tuple[int, float] | None:
    """(pid, monotonic time) a job wrote, or None if it has not yet."""
    try:
        with open(path) as f:
            pid, when = f.read().split()
    except (OSError, ValueError):
        return None
    return int(pid), float(when)
