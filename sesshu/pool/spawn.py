"""Where worker slots come from: the fork server, started clean, and the probe slot.

The fork server forks every slot, so it is started on purpose, once, with
the workers' environment rather than the master's (``start_fork_server``).
The probe loads a plugin set in a throw-away slot exactly as a worker would,
as the worker account, and says whether it loads. ``--check`` and start-up
(:func:`probe`) run a reload's probe (``Pool.propose``) in a pool of its own,
so all three take this one path.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.connection import wait
from multiprocessing.context import ForkServerContext

from sesshu.config.model import Config
from sesshu.pool.events import PoolEvent, Reconfigured, ReconfigureFailed
from sesshu.pool.pool import Pool, PoolSettings
from sesshu.worker import sandbox


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


def probe(ctx: ForkServerContext, settings: PoolSettings, config: Config, timeout: float) -> None:
    """Load every plugin in a throw-away slot, as a worker would; raise ProbeFailed if it cannot."""
    pool = Pool(ctx, settings, time.monotonic)
    try:
        pool.propose(settings, config)
        for event in _events(pool, timeout):
            if isinstance(event, ReconfigureFailed):
                raise ProbeFailed(event.plugin, event.error)
            if isinstance(event, Reconfigured):
                return
        raise ProbeFailed("-", f"loading the plugins took over {timeout:g} s")
    finally:
        pool.kill_all()  # it reports nothing: no job ran
        for _ in _events(pool, 10.0):
            pass
        pool.close()


def _events(pool: Pool, seconds: float) -> Iterator[PoolEvent]:
    """What the pool reports while it has slots, for ``seconds`` at most."""
    deadline = time.monotonic() + seconds
    while pool.children and (left := deadline - time.monotonic()) > 0:
        wait([pool.fileno()], min(left, 1.0))
        yield from pool.collect({pool})  # the pool finds out which of its fds are ready
        yield from pool.enforce_deadlines()
