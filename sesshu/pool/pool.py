"""The pool of worker slots, driven by the supervisor's loop.

The pool never blocks: the supervisor waits on the pool itself (its
:meth:`Pool.fileno` is readable while any slot has something to say), then
hands whatever became ready to :meth:`Pool.collect`, and calls the other
chores in a fixed order. Each chore returns :class:`PoolEvent` values that
say what happened to which job, so the supervisor can decide each message's
outcome. Every slot has its own pipe: the master always knows which job a
slot holds, and a slot's death loses exactly that job, which is reported.
The pool decides when a slot starts, stops or is killed; the slot carries
that out, and its fields and state are its own (``sesshu.pool.slot``). A turn
costs what changed, not the number of slots: the pool's index
(``sesshu.pool.slots``), its one list of slots, hears of every change from them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from multiprocessing.context import ForkServerContext

from sesshu.config.model import Config
from sesshu.pool.events import ChildBootFailed, JobFinished, JobLost, PoolEvent, Reconfigured, ReconfigureFailed
from sesshu.pool.orphans import Orphans
from sesshu.pool.protocol import BootFailed, Job, ProtocolError, Ready, Result
from sesshu.pool.restarts import Restarts
from sesshu.pool.slot import OUTPUT_CAP, ChildProcess, RunningJob
from sesshu.pool.slots import SlotIndex
from sesshu.pool.states import LIVE, State
from sesshu.text import loggable
from sesshu.worker.runner import LEAVING_REASONS, PluginSpec
from sesshu.worker.sandbox import WorkerSetup

log = logging.getLogger(__name__)
output_log = logging.getLogger("sesshu.worker")


@dataclass(frozen=True)
class PoolSettings:
    """What a pool's slots are made of; a reload swaps all of it at once, or none."""

    specs: list[PluginSpec]
    size: int
    setup: WorkerSetup
    max_result_bytes: int
    max_jobs: int | None = None  # recycle a slot after this many jobs


class Pool:
    def __init__(self, ctx: ForkServerContext, settings: PoolSettings, clock: Callable[[], float],
                 on_restart: Callable[[str], None] | None = None, *, orphans: bool = False) -> None:
        """``orphans``: we are a subreaper (the daemon), and every later child is an orphan to kill."""
        self._ctx = ctx
        self._orphans = Orphans() if orphans else None
        self._settings = settings
        self._clock = clock
        self._index = SlotIndex()
        self.restarts = Restarts(on_restart)  # public for its counts; only the pool calls its verbs
        self._generation = 0
        self._proposal: tuple[ChildProcess, PoolSettings, Config] | None = None

    # -- what the supervisor sees ---------------------------------------------

    @property
    def children(self) -> list[ChildProcess]:
        """Every slot not yet reaped, probe included."""
        return list(self._index)

    @property
    def size(self) -> int:
        return self._settings.size

    def resize(self, size: int) -> None:
        """Aim for ``size`` slots (at least one); maintain() gets there."""
        self._settings = replace(self._settings, size=max(1, size))

    def fileno(self) -> int:
        """Readable while any slot has output, frames, an answer or a death to collect."""
        return self._index.fileno()

    def next_wakeup(self) -> float | None:
        times = [t for t in (self._index.next_wakeup(),) if t is not None]
        # Only a respawn still ahead is worth waking for: maintain() runs
        # every turn anyway, and a past time would make the loop spin.
        if self.live_count() < self.size and self.restarts.respawn_at > self._clock():
            times.append(self.restarts.respawn_at)
        return min(times) if times else None

    def idle(self) -> list[ChildProcess]:
        return self._index.in_state(State.IDLE)

    def running(self) -> list[RunningJob]:
        return [c.running for c in self._index.in_state(State.BUSY) if c.running is not None]

    def busy_count(self) -> int:
        return self._index.count(State.BUSY)

    def idle_count(self) -> int:
        return self._index.count(State.IDLE)

    def live_count(self) -> int:
        return self._index.counted()

    def up_count(self) -> int:
        """Slots that have loaded their plugins: idle, busy or sweeping."""
        return sum(self._index.count(state) for state in (State.IDLE, State.BUSY, State.SWEEPING))

    # -- chores ---------------------------------------------------------------

    def collect(self, ready: Collection[object]) -> list[PoolEvent]:
        """Read frames, output and sweep answers from ready fds; reap slots whose sentinel fired.

        ``ready`` holds what the caller's wait found ready: the pool itself
        (then the pool asks its selector which fds), or fds of its slots.
        """
        events: list[PoolEvent] = []
        now = self._clock()
        fds = self._index.ready() if self in ready else {fd for fd in ready if isinstance(fd, int)}
        touched = dict.fromkeys(child for fd in fds if (child := self._index.owner(fd)) is not None)
        for child in touched:
            # Asked afresh: handling one slot may close another's fds (a reload stops idle slots).
            mine = [fd for fd in child.fds() if fd in fds] if child.state is not State.DEAD else []
            if not mine:
                continue
            # Output before frames, so a job's last lines are logged with its
            # MessageId; frames before the keeper's hang-up, so a runner that
            # sends its result and exits at once does not lose the result.
            if any(child.is_output_fd(fd) for fd in mine):
                self._log_output(child, child.read_output())
            if any(child.is_frame_fd(fd) for fd in mine):
                self._read(child, now, events)
            if any(child.is_control_fd(fd) for fd in mine):
                child.read_control()  # a keeper that hung up is dying: its sentinel tells how
            if child.sentinel in mine:
                self._reap(child, events)
        return events

    def enforce_deadlines(self) -> list[PoolEvent]:
        """Give up on late jobs at once; TERM, then KILL, their slots. Stalled frames and sweeps too."""
        now = self._clock()
        events: list[PoolEvent] = []
        for child in self._index.due(now):
            running = child.running
            if running is not None and child.state is State.BUSY and now >= running.deadline:
                child.job_done(now)
                detail = f"timed out after {running.deadline - running.started:g} s"
                events.append(JobLost(running, "timeout", detail, child.pid))
                self._end_output(child, running)
                child.terminate(now)
                self.restarts.count("timeout")
            elif child.frame_stalled(now):
                self._fail(child, "protocol", "sent part of a frame and stalled", events)
            elif child.sweep_by is not None and now >= child.sweep_by:
                log.error("worker %d: its keeper did not finish cleaning up after a job; killing it", child.pid)
                child.terminate(now, grace=0.0)
            child.kill_if_due(now)
            self._index.changed(child)  # what is due next goes back on the heap
        return events

    def maintain(self) -> None:
        """Start slots until the pool is at full strength, with crash-loop backoff."""
        now = self._clock()
        while self.live_count() < self.size and now >= self.restarts.respawn_at:
            try:
                self._launch(self._settings, self._generation)
            except OSError as exc:
                log.error("cannot start a worker: %s; retrying", exc)
                self.restarts.start_failed(now)
                return
        # Surplus slots (after the size went down) leave once idle.
        surplus = self.live_count() - self.size
        for child in self._index.in_state(State.IDLE, State.STARTING) if surplus > 0 else ():
            if surplus > 0 and child.generation >= 0:
                child.stop()
                surplus -= 1

    def close(self) -> None:
        """Let go of the selector, once every slot is gone."""
        self._index.close()

    def assign(self, child: ChildProcess, job: Job, label: str, timeout: float) -> bool:
        """Hand a job to an idle slot; False if the slot turned out dead (the job never left)."""
        now = self._clock()
        return child.assign(RunningJob(job, label, now, now + timeout))

    # -- reconfiguring ----------------------------------------------------------

    def propose(self, settings: PoolSettings, config: Config) -> None:
        """Try new settings: they replace the current ones only once a probe slot loads them.

        Until then nothing changes. Once it has, idle slots of the old
        settings leave at once and busy ones after their job: a reload kills no job.
        """
        if self._proposal is not None:
            self._proposal[0].terminate(self._clock())
        self._proposal = (self._launch(settings, -1), settings, config)

    def _commit(self, events: list[PoolEvent]) -> None:
        assert self._proposal is not None
        probe_child, self._settings, config = self._proposal
        self._proposal = None
        self._generation += 1
        probe_child.adopt(self._generation)
        for child in self._index.in_state(State.IDLE, State.STARTING):
            if child.generation != self._generation:
                child.stop()
        events.append(Reconfigured(config))

    # -- stopping -------------------------------------------------------------

    def close_idle(self) -> None:
        """Close every idle or starting slot's pipe; busy ones keep their job."""
        for child in self._index.in_state(State.IDLE, State.STARTING, State.SWEEPING):
            child.stop()

    def kill_all(self) -> list[PoolEvent]:
        """SIGTERM every slot (its keeper kills all below it); running jobs are reported lost."""
        events: list[PoolEvent] = []
        now = self._clock()
        for child in self._index:
            if (running := child.job_done(now)) is not None:
                events.append(JobLost(running, "killed", "killed at shutdown", child.pid))
            child.terminate(now, grace=0.5)
        return events

    def sweep_orphans(self, final: bool = False) -> int:
        """Kill what a plugin left behind after its keeper died (``Orphans.sweep``); how many."""
        return self._orphans.sweep(final) if self._orphans is not None else 0

    # -- internals ------------------------------------------------------------

    def _launch(self, settings: PoolSettings, generation: int) -> ChildProcess:
        child = ChildProcess.launch(self._ctx, settings.specs, settings.setup, settings.max_result_bytes,
                                    self._clock(), generation, self._index)
        self._index.add(child)
        return child

    def _is_probe(self, child: ChildProcess) -> bool:
        return self._proposal is not None and child is self._proposal[0]

    def _read(self, child: ChildProcess, now: float, events: list[PoolEvent]) -> None:
        try:
            messages, eof = child.read_frames(now)
        except ProtocolError as exc:
            self._fail(child, "protocol", str(exc), events)
            return
        for message in messages:
            if child.state not in LIVE:
                break
            if isinstance(message, Ready):
                self._on_ready(child, events)
            elif isinstance(message, BootFailed):
                self._on_boot_failed(child, message, events)
            else:
                self._on_result(child, message, now, events)
        if eof:
            child.hung_up()

    def _on_ready(self, child: ChildProcess, events: list[PoolEvent]) -> None:
        if child.state is not State.STARTING:
            self._fail(child, "protocol", "said Ready twice", events)
            return
        child.ready()
        if self._is_probe(child):
            self._commit(events)
        elif child.generation != self._generation:
            child.stop()  # it loaded settings that were replaced meanwhile

    def _on_boot_failed(self, child: ChildProcess, message: BootFailed, events: list[PoolEvent]) -> None:
        if self._refused(child, message.plugin, message.error, events):
            child.stop()  # a failed probe is no crash loop
        else:
            events.append(ChildBootFailed(message.plugin, message.error, child.pid))

    def _on_result(self, child: ChildProcess, result: Result, now: float, events: list[PoolEvent]) -> None:
        running = child.running
        if child.state is not State.BUSY or running is None or running.job.job_id != result.job_id:
            self._fail(child, "protocol", "result for a job it does not hold", events)
            return
        child.job_done(now, sweep=result.sweep)
        self._end_output(child, running)
        self.restarts.proven()
        events.append(JobFinished(running, result, child.pid, now))
        if result.reason in LEAVING_REASONS:
            child.stop()  # it leaves by itself; give it no further job
            self.restarts.count(result.reason)
        elif child.generation != self._generation:
            child.stop()  # a reload happened while it ran: it leaves now
        elif self._settings.max_jobs is not None and child.jobs_done >= self._settings.max_jobs:
            child.stop()
            self.restarts.count("max_jobs")

    def _fail(self, child: ChildProcess, reason: str, detail: str, events: list[PoolEvent]) -> None:
        if (running := child.job_done(self._clock())) is not None:
            events.append(JobLost(running, reason, detail, child.pid))
            self._end_output(child, running)
        log.error("worker %d broke the protocol (%s); killing it", child.pid, loggable(detail))
        self._refused(child, "-", f"the probe worker broke the protocol: {detail}", events)
        child.kill()
        self.restarts.count(reason)

    def _reap(self, child: ChildProcess, events: list[PoolEvent]) -> None:
        if child.state is State.BUSY:
            self._read(child, self._clock(), events)  # a result written just before the end still counts
        pid = child.pid
        self._log_output(child, child.read_output())
        running = child.job_done(self._clock())
        if running is not None:
            self._end_output(child, running)
        how = child.reap()
        refused = self._refused(child, "-", f"loading the plugins killed the probe worker ({how})", events)
        if running is not None:  # never a probe's
            events.append(JobLost(running, "crashed", f"worker {pid} {how}", pid))
            self.restarts.count("crashed")
        elif refused or child.exit_expected:
            pass  # a failed probe is no crash loop; the others we closed or killed on purpose, and counted then
        elif child.stopped_from is State.STARTING:
            log.error("worker %d %s while starting", pid, how)
            self.restarts.died_starting(self._clock())
        else:
            log.error("idle worker %d %s", pid, how)
            self.restarts.died_idle(self._clock(), child.spawned)

    def _refused(self, child: ChildProcess, plugin: str, error: str, events: list[PoolEvent]) -> bool:
        """If ``child`` is the probe of a proposal, the proposal fails; False if it is not."""
        if not self._is_probe(child):
            return False
        self._proposal = None
        events.append(ReconfigureFailed(plugin, error))
        return True

    def _log_output(self, child: ChildProcess, lines: list[str], label: str | None = None) -> None:
        if label is None:
            label = child.running.label if child.running is not None else "-"
        for line in lines:
            if self._is_probe(child):  # loading plugins should print nothing: worth a warning
                output_log.warning("probe worker %d: %s", child.pid, loggable(line, 2048))
            else:
                output_log.info("worker %d (message %s): %s", child.pid, label, loggable(line, 2048))

    def _end_output(self, child: ChildProcess, running: RunningJob) -> None:
        rest, dropped = child.end_of_job_output()
        self._log_output(child, rest, running.label)
        if dropped:
            output_log.warning("worker %d (message %s): %d more bytes of output not logged (cap %d)",
                               child.pid, running.label, dropped, OUTPUT_CAP)
