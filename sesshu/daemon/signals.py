"""Signal handling that only records: the supervisor's loop does the work.

Handlers append the signal number to a deque and the interpreter's wake-up
fd makes the loop's single wait return, so no logging, locking or I/O ever
happens inside a handler.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from types import FrameType

HANDLED = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1")


class SignalRecorder:
    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._previous_fd: int | None = None

    def install(self) -> None:
        self._previous_fd = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for name in HANDLED:
            signal.signal(getattr(signal, name), self._record)

    def uninstall(self) -> None:
        for name in HANDLED:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def wake(self) -> None:
        """Wake the loop from another thread (a bus completion)."""
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full, so a wake-up is already pending
        except OSError:
            pass  # the loop has ended and closed the pipe: nobody is left to wake

    def drain(self, readable: bool = True) -> list[int]:
        """Signals recorded since the last call; empties the wake-up pipe if it is readable."""
        if readable:
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        out = []
        while self.pending:
            out.append(self.pending.popleft())
        return out

    def close(self) -> None:
        os.close(self.wake_r)
        os.close(self.wake_w)
