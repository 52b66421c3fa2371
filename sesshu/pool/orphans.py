"""Killing what a plugin left behind after its keeper died.

A keeper sweeps whatever its job started; but a plugin that kills its keeper
hands its processes up to the master, a subreaper (``sesshu.worker.sandbox``).
The master's own children (the fork server, multiprocessing's resource
tracker) are all started before the pool is built, so any later child is
such an orphan: :class:`Orphans`, built with the pool, notes the children
there are then, and each sweep kills and reaps any other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from sesshu.worker import sandbox

log = logging.getLogger(__name__)


class Orphans:
    """The master's own children, seen once; every other child is an orphan to kill."""

    def __init__(self) -> None:
        self._known = frozenset(sandbox.children_of(os.getpid()))
        # Killed but not reaped yet: still our child, so its pid cannot be
        # reused meanwhile, and the next sweep must not count it again.
        self._dying: set[int] = set()

    def sweep(self, final: bool = False) -> int:
        """Kill the orphans there are now, and say how many (each counted once).

        ``final``: wait for each to die, and look again until none is left (50 rounds at most).
        """
        killed = 0
        for _ in range(50 if final else 1):
            strays = [pid for pid in sandbox.children_of(os.getpid()) if pid not in self._known]
            self._dying &= set(strays)  # a pid no longer our child may be reused: forget it
            if not strays:
                break
            for pid in strays:
                if pid in self._dying and not final:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    if pid not in self._dying:
                        killed += 1
                    self._dying.add(pid)
            for pid in strays:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, 0 if final else os.WNOHANG)[0] == 0:
                        continue  # not dead yet: reaped by a later sweep
                self._dying.discard(pid)
        if killed:
            log.warning("killed %d process(es) a plugin left behind", killed)
        return killed
