"""The supervisor: one loop that turns SQS messages into plugin jobs and results."""

from __future__ import annotations

import itertools
import logging
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sesshu.bus.api import Bus, QueueInfo
from sesshu.bus.intake import Intake
from sesshu.bus.lanes import BusHealth, Received
from sesshu.bus.offloaded import Offload
from sesshu.bus.sender import Sender
from sesshu.bus.sending import S3Target
from sesshu.config.model import Config
from sesshu.daemon.metrics import Metrics
from sesshu.daemon.notify import Notifier
from sesshu.daemon.reload import LoadConfig, Reloader
from sesshu.daemon.report import Facts, Reporter
from sesshu.daemon.signals import SignalRecorder
from sesshu.jobs import groups
from sesshu.jobs.accept import Acceptor
from sesshu.jobs.outcomes import Outcomes
from sesshu.jobs.requests import MAX_BODY_BYTES
from sesshu.jobs.settle import Settler
from sesshu.jobs.spans import JobSpans
from sesshu.jobs.ticket import Ticket
from sesshu.pool.events import ChildBootFailed, JobFinished, JobLost, PoolEvent, Reconfigured, ReconfigureFailed
from sesshu.pool.pool import Pool
from sesshu.pool.protocol import Job
from sesshu.text import loggable

log = logging.getLogger(__name__)

MAX_WAIT = 1.0
EXIT_GRACE = 2.0  # how long a stopped daemon waits for an outstanding long poll


@dataclass(frozen=True)
class Hooks:
    """What the supervisor calls out to, declared where it is built (``sesshu.daemon.assemble``)."""

    load_config: LoadConfig | None = None
    on_config_applied: Callable[[Config], None] | None = None
    reopen_logs: Callable[[], None] | None = None
    metrics: Metrics | None = None
    notifier: Notifier | None = None  # systemd's; none: nothing is sent


class Supervisor:
    """The master's loop. Each turn is one bounded wait, then a fixed list of chores::

        wait(signals, lane completions, every slot's fds)  <= min(1 s, nearest deadline)
          |
          +- signals ........ handle_<name>: stop, reload, resize, reopen logs
          +- lanes .......... received messages -> parse -> held;  sent calls -> outcomes
          +- pool ........... frames, output, sweeps, deaths -> outcomes;  deadlines
          +- pool strength .. respawn with backoff (or drain, when stopping)
          +- dispatch ....... held messages -> idle slots
          +- heartbeat ...... visibility extensions, once a second; orphans swept
          +- send ........... the due calls -> free sender lanes
          +- poll ........... receives -> free poller lanes, if slots are idle and no backlog

    All AWS I/O happens in the lanes (``sesshu.bus.lanes``), so no chore blocks.
    The supervisor owns what is held, what is running, and when to stop; the
    intake owns receiving, the sender sending; the settler owns outcomes and
    visibility; the pool owns the slots; the reloader owns the running config.
    """

    def __init__(
        self,
        config: Config,
        bus: Bus,
        pool: Pool,
        *,
        queue_info: QueueInfo | None = None,
        heartbeat: bool = True,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        signals: SignalRecorder | None = None,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.clock = clock
        self.hooks = hooks or Hooks()
        self.signals = signals or SignalRecorder()
        self.notifier = self.hooks.notifier or Notifier({})
        self.reporter = Reporter(self.notifier, self.hooks.metrics)
        self.health = BusHealth(clock)
        s3 = S3Target(config.s3_bucket, config.s3_prefix) if config.s3_bucket else None
        self.sender: Sender[Ticket] = Sender(bus, s3, config.senders, self.health, self.signals.wake, clock)
        metrics = self.hooks.metrics
        self.settler = Settler(lambda: self.config, queue_info, outbox=self.sender, heartbeat=heartbeat,
                               observer=metrics.outcome if metrics is not None else None, clock=clock,
                               spans=JobSpans(config.queue))
        self.acceptor = Acceptor(config.plugin_names, self.settler, clock)
        self.reloader = Reloader(config, pool, self.acceptor, self.notifier, self.reporter,
                                 self.hooks.load_config, self.hooks.on_config_applied)
        self.held: deque[Ticket] = deque()
        # The ticket of each job a slot runs, by job id: the pool knows jobs, not messages.
        self.running: dict[int, Ticket] = {}
        self.stopping = False
        self.received = 0
        self.intake = Intake(bus, config.receivers, config.poll_interval, self.health, self.signals.wake, clock,
                             Offload(frozenset(config.input_s3_buckets), MAX_BODY_BYTES))
        self._next_heartbeat = 0.0
        # The pool is one fd however many slots it has: it keeps its own selector current.
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()
        self._selector.register(self.signals.wake_r, selectors.EVENT_READ)
        self._selector.register(self.pool, selectors.EVENT_READ)
        self._job_ids = itertools.count(1)
        self._drain_deadline: float | None = None
        self._exit_deadline: float | None = None
        self._boot_errors_seen: set[tuple[str, str]] = set()

    # -- the loop -------------------------------------------------------------

    def run(self) -> int:
        self.signals.install()
        try:
            self.pool.maintain()
            while not self.finished():
                self.tick()
        finally:
            self.close()
            self.signals.uninstall()
            # A lane still running may yet write a wake-up: close the pipe only
            # once neither can, or the write could land on a reused fd.
            if self.sender.join(5.0) and self.intake.join(0.1):
                self.signals.close()
        log.info("stopped; outcomes: %s; bus requests: %s", self.settler.summary(), self._requests())
        self.notifier.close()
        return 0

    def tick(self) -> None:
        """One loop turn: the single bounded wait, then the chores."""
        ready = {key.fileobj for key, _ in self._selector.select(self._wait_timeout())}
        self.turn(ready)

    def close(self) -> None:
        self._selector.close()
        self._on_pool_events(self.pool.kill_all())
        self.pool.sweep_orphans(final=True)
        self.pool.close()
        self.intake.stop()
        self.sender.stop()

    def turn(self, ready: set[Any]) -> None:
        for signum in self.signals.drain(self.signals.wake_r in ready):
            self._on_signal(signum)
        for received in self.intake.take():
            self._on_received(received)
        for done in self.sender.take(self.stopping):
            self.settler.guarded(done.ticket, partial(self.settler.on_sent, done, self.stopping))
        self._on_pool_events(self.pool.collect(ready))
        self._on_pool_events(self.pool.enforce_deadlines())
        if self.stopping:
            self._stopping_chores()
        else:
            self.pool.maintain()
        self._dispatch()
        now = self.clock()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + 1.0
            running = [(self.running[r.job.job_id], r.deadline) for r in self.pool.running()]
            self.settler.extend_visibility(now, [*((t, None) for t in self.held), *running])
            self.pool.sweep_orphans()
        self._send()
        self.intake.watchdog()
        self._poll()
        self._report(now)

    def _report(self, now: float) -> None:
        self.reporter.turn(Facts(now, self.stopping, self.pool.size, self.pool.up_count(), self.pool.busy_count(),
                                 self.in_flight(), sum(self.outcomes.counts.values()), self.health.receiving,
                                 self.health.last_error))

    @property
    def config(self) -> Config:
        return self.reloader.config

    @property
    def outcomes(self) -> Outcomes:
        return self.settler.outcomes

    def in_flight(self) -> int:
        """Received messages whose outcome is not decided yet."""
        return self.received - sum(self.outcomes.counts.values())

    def _wait_timeout(self) -> float:
        now = self.clock()
        wakeups = (self.pool.next_wakeup(), None if self.stopping else self.intake.poll_after(),
                   self.sender.wake_at(), self._drain_deadline, self._exit_deadline)
        return max(0.0, min([now + MAX_WAIT, *(t for t in wakeups if t is not None)]) - now)

    def _send(self) -> None:
        # More results are sure to come while jobs run, messages wait for a
        # slot, or a receive is out on a queue that the last one found deep.
        more_coming = not self.stopping and (
            self.pool.busy_count() > 0 or bool(self.held) or (self.intake.deep and self.intake.busy))
        self.sender.send(more_coming, self.stopping)

    # -- signals --------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        # Dispatch by name, as gunicorn's arbiter does: a new signal is a new method.
        handler = getattr(self, f"handle_{signal.Signals(signum).name[3:].lower()}", None)
        if handler is not None:
            handler()

    def handle_term(self) -> None:
        self.begin_stop(graceful=True)

    handle_int = handle_term

    def handle_quit(self) -> None:
        self.begin_stop(graceful=False)

    def handle_ttin(self) -> None:
        self.pool.resize(self.pool.size + 1)
        log.info("SIGTTIN: workers now %d", self.pool.size)

    def handle_ttou(self) -> None:
        self.pool.resize(self.pool.size - 1)
        log.info("SIGTTOU: workers now %d", self.pool.size)

    def handle_hup(self) -> None:
        if not self.stopping:
            self.reloader.reload()

    def handle_usr1(self) -> None:
        if self.hooks.reopen_logs is not None:
            self.hooks.reopen_logs()

    def begin_stop(self, graceful: bool) -> None:
        now = self.clock()
        if not self.stopping:
            log.info("%s stop: no more receiving; %d job(s) running",
                     "graceful" if graceful else "fast", self.pool.busy_count())
            self.notifier.stopping()
            self.stopping = True
            self._drain_deadline = now + self.config.shutdown_timeout
        while self.held:
            self.settler.retry(self.held.popleft(), "shutdown", "daemon stopping before it started", delay=0)
        if not graceful:
            self._drain_deadline = now
        self._stopping_chores()

    def _stopping_chores(self) -> None:
        self.pool.close_idle()
        if self._drain_deadline is not None and self.clock() >= self._drain_deadline:
            self._on_pool_events(self.pool.kill_all())

    def finished(self) -> bool:
        if not self.stopping or self.pool.children or self.sender or self.sender.busy:
            return False
        if not self.intake.busy:
            return True
        if self._exit_deadline is None:
            self._exit_deadline = self.clock() + EXIT_GRACE
        return self.clock() >= self._exit_deadline

    # -- receiving ------------------------------------------------------------

    def _poll(self) -> None:
        if self.stopping or self.sender.backlogged():
            return  # backpressure: results waiting to be sent come first
        # While sends back off (throttling, an outage), hold no messages beyond
        # the idle slots: work that could not be finished would only wait locked.
        prefetch = 0 if self.sender.backing_off() else self.config.prefetch
        self.intake.poll(self.pool.idle_count() + prefetch - len(self.held), len(self.held),
                         self.pool.size + prefetch)

    def _on_received(self, received: Received) -> None:
        self.received += len(received.messages)
        self.held.extend(self.acceptor.accept(received.messages, received.started, self.stopping))

    # -- jobs -----------------------------------------------------------------

    def _dispatch(self) -> None:
        if self.stopping:
            return
        idle = self.pool.idle()
        started = 0
        busy = self._busy_groups()
        while idle and (ticket := groups.take_startable(self.held, busy)) is not None:
            started += 1
            self.settler.guarded(ticket, partial(self._start, ticket, idle))
            if ticket.message.group_id is not None:
                busy.add(ticket.message.group_id)  # running now, or held again first in line
        if started:
            self.intake.started(started)

    def _busy_groups(self) -> set[str]:
        """FIFO message groups with a message running or a result on its way out: none of theirs may start."""
        return groups.busy([*self.running.values(), *self.sender.publishing()]) if self.held else set()

    def _release_group(self, ticket: Ticket) -> None:
        if ticket.message.group_id is not None and self.sender.releasing(ticket):
            groups.release_behind(ticket, self.held, self.settler)

    def _start(self, ticket: Ticket, idle: list[Any]) -> None:
        request = ticket.request
        assert request is not None
        plugin = self.config.plugin(request.plugin)
        if plugin is None:
            self.settler.retry(ticket, "disabled", f"plugin {request.plugin} was disabled by a reload", delay=0)
            return
        job = Job(next(self._job_ids), request.plugin, request.target)
        if self.pool.assign(idle.pop(), job, ticket.message_id, plugin.timeout):
            self.running[job.job_id] = ticket
        else:
            self.held.appendleft(ticket)  # that slot died meanwhile; the job goes to another

    def _on_pool_events(self, events: list[PoolEvent]) -> None:
        for event in events:
            if isinstance(event, JobFinished | JobLost):
                ticket = self.running.pop(event.running.job.job_id)
                self.settler.guarded(ticket, partial(self._on_job_ended, ticket, event))
            elif isinstance(event, Reconfigured | ReconfigureFailed):
                self.reloader.answered(event)
            elif isinstance(event, ChildBootFailed):
                key = (event.plugin, event.error)
                if key not in self._boot_errors_seen:
                    self._boot_errors_seen.add(key)
                    log.error("worker %d cannot load plugin %s: %s", event.pid, event.plugin,
                              loggable(event.error, 500))

    def _on_job_ended(self, ticket: Ticket, event: JobFinished | JobLost) -> None:
        if isinstance(event, JobFinished):
            self.settler.on_job_finished(ticket, event)
        else:
            job = event.running.job
            detail = event.detail
            if event.reason == "timeout":
                detail = f"plugin {job.plugin} {event.detail} on {loggable(job.target)}"
            self.settler.retry(ticket, event.reason, detail, pid=event.pid,
                               delay=0 if event.reason == "killed" else None)
        self._release_group(ticket)

    def _requests(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.bus.requests.items())) or "none"
