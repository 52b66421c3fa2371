"""systemd's notify protocol, and the health the loop reports to it and to ``/readyz``.

A :class:`Notifier` sends datagrams to ``$NOTIFY_SOCKET`` (a path, or an
abstract socket when it starts with ``@``), as ``sd_notify(3)`` does; with the
variable unset it sends nothing. ``WATCHDOG=1`` goes out from the loop
itself, at least every third of ``$WATCHDOG_USEC``, so a loop that stops
turning stops the pings and systemd restarts the daemon.

:class:`Health` is what the loop found on its last turn, published for the
metrics listener's thread: one object replaced whole, never changed in place.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

STATUS_EVERY = 5.0  # seconds between two STATUS= lines, at most
STALL = 10.0  # a loop that has not turned for this long is not healthy (it turns at least once a second)


@dataclass(frozen=True)
class Health:
    turned: float  # monotonic time of the loop's last turn
    ready: bool
    why: str  # what keeps the daemon from being ready, in one line; "" when ready

    def live(self, now: float) -> bool:
        return now - self.turned < STALL


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        path = environ.get("NOTIFY_SOCKET", "")
        self._address = ("\0" + path[1:]) if path.startswith("@") else path
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # The watchdog is ours only when systemd meant this process (WATCHDOG_PID, when set).
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        self.watchdog_every = int(usec) / 3e6 if usec.isdigit() and int(usec) > 0 and ours else None
        self._next_ping = 0.0
        self._next_status = 0.0
        self._status = ""
        self._failed = False

    @property
    def active(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
            self._failed = False
        except OSError as exc:
            if not self._failed:  # once per run of failures: systemd may be restarting
                log.warning("cannot notify systemd at %s: %s", self._address.replace("\0", "@"), exc.strerror)
            self._failed = True

    def ready(self, status: str) -> None:
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading the config")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def turn(self, status: Callable[[], str]) -> None:
        """Each loop turn: the watchdog ping when due, and the status line when it changed (5 s apart at most)."""
        if self._sock is None:
            return
        now = self._clock()
        lines = []
        if self.watchdog_every is not None and now >= self._next_ping:
            self._next_ping = now + self.watchdog_every
            lines.append("WATCHDOG=1")
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY
            text = status()
            if text != self._status:
                self._status = text
                lines.append(f"STATUS={text}")
        if lines:
            self.send(*lines)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
