"""Where worker slots come from: the fork server, started clean, and the probe slot.

The fork server forks every slot, so it is started on purpose, once, with
the workers' environment rather than the master's (``start_fork_server``).
The probe loads a plugin set in a throw-away slot exactly as a worker would,
as the worker account, and says whether it loads: ``--check``, start-up and a
reload (through ``Pool.propose``) all take this one path.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.context import ForkServerContext
from typing import TYPE_CHECKING

from sesshu.pool.protocol import BootFailed, ProtocolError, Ready
from sesshu.pool.slot import ChildProcess, State
from sesshu.text import loggable
from sesshu.worker import sandbox

if TYPE_CHECKING:
    from sesshu.pool.pool import PoolSettings

output_log = logging.getLogger("sesshu.worker")


class ProbeFailed(Exception):
    def __init__(self, plugin: str, error: str) -> None:
        super().__init__(f"{plugin}: {error}")
        self.plugin, self.error = plugin, error


def forkserver_context(preload: list[str] | None = None) -> ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, ForkServerContext)
    # sesshu.worker.zygote hardens the fork server itself; the rest is imported once
    # there, so each fork starts warm. Missing optional modules are skipped.
    ctx.set_forkserver_preload(["sesshu.worker.zygote", "sesshu.worker.keeper", *(preload or []),
                                "sesshu.worker.frozen"])
    return ctx


def start_fork_server(environment: dict[str, str]) -> None:
    """Start the fork server now, exec'd with exactly the workers' environment.

    Its initial environment block, which every slot inherits and anyone
    allowed can read in ``/proc/PID/environ``, then never holds the master's
    credentials.
    """
    from multiprocessing import forkserver

    with sandbox.environment(environment):
        forkserver.ensure_running()


def probe(ctx: ForkServerContext, settings: PoolSettings, timeout: float) -> None:
    """Load every plugin in a throw-away slot, as a worker would; raise ProbeFailed if it cannot."""
    child = ChildProcess.launch(ctx, settings.specs, settings.setup, settings.max_result_bytes,
                                time.monotonic(), generation=-1)
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready = {fd for fd in wait(child.fds(), min(left, 1.0)) if isinstance(fd, int)}
            for line in child.read_output() if any(child.is_output_fd(fd) for fd in ready) else []:
                output_log.warning("probe worker %d: %s", child.pid, loggable(line, 2048))
            try:
                messages, eof = child.read_frames(time.monotonic())
            except ProtocolError as exc:
                raise ProbeFailed("-", f"the probe worker broke the protocol: {exc}") from None
            for message in messages:
                if isinstance(message, Ready):
                    return
                if isinstance(message, BootFailed):
                    raise ProbeFailed(message.plugin, message.error)
            if eof or child.sentinel in ready:
                child.process.join(1.0)
                raise ProbeFailed("-", f"loading the plugins killed the probe worker ({child.reap()})")
        raise ProbeFailed("-", f"loading the plugins took over {timeout:g} s")
    finally:
        if child.state is not State.DEAD:
            child.stop()
            child.process.join(5.0)
            if child.process.exitcode is None:
                child.signal_group(signal.SIGKILL)
                child.process.join(5.0)
