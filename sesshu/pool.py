"""The pool of long-lived worker children, driven by the supervisor's loop.

The pool never blocks: the supervisor waits on :meth:`Pool.waitables`, then
hands whatever became ready to :meth:`Pool.collect`, and calls the other
chores in a fixed order. Each chore returns :class:`PoolEvent` values that
say what happened to which job, so the supervisor can decide each message's
outcome. Every child has its own pipe: the parent always knows which job a
child holds, and a child's death loses exactly that job, which is reported.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from typing import Any

from sesshu.child import PluginSpec
from sesshu.handle import ChildProcess, RunningJob, State
from sesshu.protocol import BootFailed, Job, ProtocolError, Ready, Result, decode_child

log = logging.getLogger("sesshu.pool")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 30.0
MIN_UPTIME = 5.0  # an idle child dying sooner than this counts towards the crash-loop backoff
FRAME_SLACK = 64 * 1024  # header room on top of the largest result


@dataclass(frozen=True)
class JobFinished:
    running: RunningJob
    result: Result
    pid: int
    finished: float  # monotonic


@dataclass(frozen=True)
class JobLost:
    """The child holding the job died, was killed, or timed out."""

    running: RunningJob
    reason: str  # "timeout", "crashed", "protocol"
    detail: str
    pid: int


@dataclass(frozen=True)
class ChildBootFailed:
    plugin: str
    error: str
    pid: int


@dataclass(frozen=True)
class Reconfigured:
    """A proposed plugin set loaded in a probe child and is now the pool's."""


@dataclass(frozen=True)
class ReconfigureFailed:
    plugin: str
    error: str


PoolEvent = JobFinished | JobLost | ChildBootFailed | Reconfigured | ReconfigureFailed


def forkserver_context(preload: list[str] | None = None) -> ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, ForkServerContext)
    # Import the child's code (and what shipped plugins use) once, in the fork
    # server, so each fork starts warm. Missing optional modules are skipped.
    ctx.set_forkserver_preload(["sesshu.child", *(preload or [])])
    return ctx


class Pool:
    def __init__(
        self,
        ctx: ForkServerContext,
        specs: list[PluginSpec],
        size: int,
        max_result_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self._ctx = ctx
        self.specs = specs
        self.size = size
        self.max_result_bytes = max_result_bytes
        self._clock = clock
        self.children: list[ChildProcess] = []
        self._boot_failures = 0
        self._respawn_at = 0.0
        self.restarts: dict[str, int] = {}
        self.generation = 0
        self.on_restart: Callable[[str], None] | None = None
        self.max_jobs: int | None = None  # recycle a child after this many jobs
        self.memory_limit_mib: int | None = None
        self._proposal: tuple[ChildProcess, list[PluginSpec], int] | None = None

    # -- what the supervisor waits on ---------------------------------------

    def waitables(self) -> list[Any]:
        out: list[Any] = []
        for child in self.children:
            if child.conn is not None:
                out.append(child.conn)
            out.append(child.sentinel)
        return out

    def next_wakeup(self) -> float | None:
        times = [c.running.deadline for c in self.children if c.running and c.state is State.BUSY]
        times += [c.kill_at for c in self.children if c.kill_at is not None]
        # Only a respawn still ahead is worth waking for: maintain() runs
        # every turn anyway, and a past time would make the loop spin.
        if self.live_count() < self.size and self._respawn_at > self._clock():
            times.append(self._respawn_at)
        return min(times) if times else None

    # -- chores ---------------------------------------------------------------

    def collect(self, ready: set[Any]) -> list[PoolEvent]:
        """Read results from readable pipes and reap children whose sentinel fired."""
        events: list[PoolEvent] = []
        for child in list(self.children):
            if child.conn is not None and child.conn in ready:
                self._read(child, events)
            if child.sentinel in ready:
                self._reap(child, events)
        return events

    def enforce_deadlines(self) -> list[PoolEvent]:
        """Give up on late jobs at once; TERM, then KILL, their children."""
        now = self._clock()
        events: list[PoolEvent] = []
        for child in self.children:
            running = child.running
            if running is not None and child.state is State.BUSY and now >= running.deadline:
                child.finish_job()
                timeout = running.deadline - running.started
                events.append(JobLost(running, "timeout", f"timed out after {timeout:g} s", child.pid))
                child.terminate(now)
                self._count_restart("timeout")
            if child.kill_at is not None and now >= child.kill_at:
                child.signal_group(signal.SIGKILL)
                child.kill_at = None
        return events

    def maintain(self) -> None:
        """Start children until the pool is at full strength, with crash-loop backoff."""
        now = self._clock()
        while self.live_count() < self.size and now >= self._respawn_at:
            try:
                child = ChildProcess.launch(self._ctx, self.specs, self.max_result_bytes, now,
                                            self.memory_limit_mib)
            except OSError as exc:
                log.error("cannot start a worker child: %s; retrying", exc)
                self._note_boot_failure(now)
                return
            child.generation = self.generation
            self.children.append(child)
        # Surplus children (after the size went down) leave once idle.
        surplus = self.live_count() - self.size
        for child in self.children:
            if surplus <= 0:
                break
            if child.state in (State.IDLE, State.STARTING):
                child.close()
                surplus -= 1

    # -- jobs -----------------------------------------------------------------

    def idle(self) -> list[ChildProcess]:
        return [c for c in self.children if c.state is State.IDLE]

    def running(self) -> list[RunningJob]:
        return [c.running for c in self.children if c.running is not None and c.state is State.BUSY]

    def busy_count(self) -> int:
        return sum(1 for c in self.children if c.state is State.BUSY)

    def live_count(self) -> int:
        return sum(1 for c in self.children if c.state is not State.STOPPING)

    def assign(self, child: ChildProcess, job: Job, ticket: Any, timeout: float) -> bool:
        """Hand a job to an idle child; False if the child turned out dead (the job never left)."""
        now = self._clock()
        return child.assign(RunningJob(job, ticket, now, now + timeout))

    # -- reconfiguring ----------------------------------------------------------

    def propose(self, specs: list[PluginSpec], size: int) -> None:
        """Try a new plugin set: it replaces the current one only once a probe child loads it.

        Until then nothing changes. Once it has, idle children of the old set
        leave at once and busy ones after their job: a reload kills no job.
        """
        if self._proposal is not None:
            self._proposal[0].terminate(self._clock())
        probe = ChildProcess.launch(self._ctx, specs, self.max_result_bytes, self._clock(),
                                    self.memory_limit_mib)
        probe.generation = -1  # neither old nor new until it proves itself
        self.children.append(probe)
        self._proposal = (probe, specs, size)

    def _commit(self, events: list[PoolEvent]) -> None:
        assert self._proposal is not None
        probe, self.specs, self.size = self._proposal
        self._proposal = None
        self.generation += 1
        probe.generation = self.generation
        for child in self.children:
            if child.generation != self.generation and child.state in (State.IDLE, State.STARTING):
                child.close()
        events.append(Reconfigured())

    # -- stopping -------------------------------------------------------------

    def close_idle(self) -> None:
        """Close every idle or starting child's pipe; busy ones keep their job."""
        for child in self.children:
            if child.state in (State.IDLE, State.STARTING):
                child.close()

    def kill_all(self) -> list[PoolEvent]:
        """SIGKILL every child group; running jobs are reported lost."""
        events: list[PoolEvent] = []
        for child in self.children:
            running = child.finish_job()
            if running is not None:
                events.append(JobLost(running, "killed", "killed at shutdown", child.pid))
            child.close()
            child.signal_group(signal.SIGKILL)
        return events

    # -- internals ------------------------------------------------------------

    def _read(self, child: ChildProcess, events: list[PoolEvent]) -> None:
        assert child.conn is not None
        try:
            frame = child.conn.recv_bytes(self.max_result_bytes + FRAME_SLACK)
            message = decode_child(frame)
        except (EOFError, OSError):
            # The child closed its pipe (most likely died); its sentinel tells how.
            child.close(retire=False)
            child.signal_group(signal.SIGKILL)
            return
        except ProtocolError as exc:
            self._fail_child(child, "protocol", str(exc), events)
            return
        if isinstance(message, Ready):
            child.ready = True
            if child.state is State.STARTING:
                child.state = State.IDLE
            if self._proposal is not None and child is self._proposal[0]:
                self._commit(events)
            elif child.generation != self.generation:
                child.close()  # it loaded a plugin set that was replaced meanwhile
        elif isinstance(message, BootFailed):
            if self._proposal is not None and child is self._proposal[0]:
                self._proposal = None
                child.retired = True  # a failed probe is no crash loop
                events.append(ReconfigureFailed(message.plugin, message.error))
            else:
                events.append(ChildBootFailed(message.plugin, message.error, child.pid))
        elif isinstance(message, Result):
            running = child.running
            if running is None or running.job.job_id != message.job_id:
                # A result for a job we gave up on (or never gave): drop it.
                if child.state is not State.STOPPING:
                    self._fail_child(child, "protocol", "result for a job it does not hold", events)
                return
            child.finish_job()
            self._boot_failures = 0  # a child that finishes a job is proof the plugins work
            events.append(JobFinished(running, message, child.pid, self._clock()))
            if message.reason == "memory":
                child.close()  # it leaves after a MemoryError; give it no further job
                self._count_restart("memory")
            elif child.generation != self.generation:
                child.close()  # a reload happened while it ran: it leaves now
            elif self.max_jobs is not None and child.jobs_done >= self.max_jobs:
                child.close()
                self._count_restart("max_jobs")

    def _fail_child(self, child: ChildProcess, reason: str, detail: str, events: list[PoolEvent]) -> None:
        running = child.finish_job()
        if running is not None:
            events.append(JobLost(running, reason, detail, child.pid))
        child.close(retire=False)
        child.signal_group(signal.SIGKILL)
        self._count_restart(reason)

    def _reap(self, child: ChildProcess, events: list[PoolEvent]) -> None:
        pid = child.pid
        was_starting = not child.ready
        if self._proposal is not None and child is self._proposal[0]:
            self._proposal = None
            child.retired = True
            events.append(ReconfigureFailed("-", "the probe worker died while loading plugins"))
        retired = child.retired
        running = child.finish_job()
        how = child.reap()
        self.children.remove(child)
        if running is not None:
            events.append(JobLost(running, "crashed", f"worker {pid} {how}", pid))
            self._count_restart("crashed")
        elif retired:
            pass  # we closed or killed it on purpose, and counted that then
        elif was_starting:
            log.error("worker %d %s while starting", pid, how)
            self._note_boot_failure(self._clock())
            self._count_restart("boot_failed")
        else:
            log.error("idle worker %d %s", pid, how)
            now = self._clock()
            # Saying Ready proves little (a plugin's import may doom the
            # process later): only a child that lasted counts as healthy.
            if now - child.spawned < MIN_UPTIME:
                self._note_boot_failure(now)
            else:
                self._boot_failures = 0
            self._count_restart("crashed")

    def _note_boot_failure(self, now: float) -> None:
        self._boot_failures += 1
        delay = min(BACKOFF_FIRST * 2 ** (self._boot_failures - 1), BACKOFF_MAX)
        self._respawn_at = now + delay
        if self._boot_failures > 1:
            log.warning("workers keep dying at start-up; next start in %.1f s", delay)

    def _count_restart(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1
        if self.on_restart is not None:
            self.on_restart(reason)
