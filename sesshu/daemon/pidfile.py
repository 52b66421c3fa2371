"""The pidfile: written after start-up, removed at exit, never stolen from a live daemon."""

from __future__ import annotations

import os
from pathlib import Path


class PidfileError(Exception):
    pass


PID_MAX = 1 << 22  # the kernel's limit on pids (pid_max can be set no higher)


def _read_pid(path: Path) -> int | None:
    """The pid in the file, or None for anything that cannot be one process's pid.

    0 and negative numbers would make kill() signal a process group, so a
    file holding "-1" would look held by a live process.
    """
    try:
        pid = int(path.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    return pid if 0 < pid <= PID_MAX else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._written = False

    def check(self) -> None:
        """Refuse to start while a live process holds the pidfile; a stale one is taken over."""
        pid = _read_pid(self.path)
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise PidfileError(f"--pidfile: {self.path} is held by running process {pid}")

    def write(self) -> None:
        self.check()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.path)  # atomic: a reader never sees a half-written pid
        self._written = True

    def remove(self) -> None:
        if self._written and _read_pid(self.path) == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self._written = False
