"""Whether a job may have left a process behind, so that the keeper sweeps after that job and no other.

The keeper's sweep (``sesshu.worker.keeper``) kills every descendant of the
runner; it costs the master and the keeper a round trip per job. The runner
asks for it when any of these says a process may still exist:

- an audit hook saw the job start one through Python (``os.fork``,
  ``subprocess``, ``posix_spawn``, ``os.system``, ``pty``);
- the runner has a child, running or not yet reaped (``waitid`` with
  ``WNOWAIT``, which sees the children of every thread and reaps none);
- the runner reaped a child since the last job (its children's resource
  usage changed), since that child's own children may live on, handed to
  the keeper;
- SIGCHLD is ignored, so children would be reaped unseen.

Those cover a process started any way, ``multiprocessing``'s or native
code's included, except through code that changes its own signal handling
in C or clones with ``CLONE_PARENT``. Code able to do that can also leave
a thread in the runner, which the sweep never reached: a plugin that must
not reach the next job needs ``workers.max_jobs: 1`` (docs/security.md).
"""

from __future__ import annotations

import os
import resource
import signal
import sys


class ProcessStarts:
    """Whether the current job tried to start a process: an audit hook, installed once per runner.

    Audit hooks cannot be removed, by the plugin either, and see every way
    Python starts one (``os.fork``, ``subprocess``, ``posix_spawn``,
    ``os.system``, ``pty``).
    """

    EVENTS = frozenset(("os.fork", "os.forkpty", "os.posix_spawn", "subprocess.Popen", "os.system"))

    def __init__(self) -> None:
        self.seen = False

    def install(self) -> None:
        sys.addaudithook(self._hook)

    def _hook(self, event: str, _args: tuple[object, ...]) -> None:
        if event in self.EVENTS:
            self.seen = True


class Leftovers:
    """Per job: ``begin`` when it starts, ``possible`` when it ended."""

    def __init__(self, starts: ProcessStarts) -> None:
        self.starts = starts
        self._reaped = _children_usage()

    def begin(self) -> None:
        self.starts.seen = False

    def possible(self) -> bool:
        """Whether the job may have left a process behind (see the module docstring)."""
        reaped, self._reaped = self._reaped, _children_usage()
        return (self.starts.seen or reaped != self._reaped or has_children()
                or signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN)


def has_children() -> bool:
    """Whether this process has a child, running, stopped or a zombie; it reaps none."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WSTOPPED | os.WCONTINUED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _children_usage() -> tuple[float, float, int, int, int, int]:
    # Every reaped child adds to these: it ran, faulted in pages and was switched out at least once.
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime, u.ru_stime, u.ru_minflt, u.ru_majflt, u.ru_nvcsw, u.ru_nivcsw
