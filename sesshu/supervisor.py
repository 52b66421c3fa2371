"""The supervisor: one loop that turns SQS messages into plugin jobs and results.

Each turn is one bounded wait (signals, bus completions, every child's pipe
and sentinel; at most until the nearest job deadline, capped at 1 s),
followed by a fixed list of chores: signals, bus completions, child results
and deaths, deadlines, pool strength, dispatch, sending, polling. All AWS
I/O happens in the bus lanes (``sesshu.busio``), so no chore blocks.
"""

from __future__ import annotations

import itertools
import logging
import queue
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sesshu.bus import BATCH_MAX, Bus, QueueInfo
from sesshu.busio import BusHealth, Lane, Received, receive
from sesshu.config import Config
from sesshu.messages import Rejected, RequestParser
from sesshu.metrics import Metrics
from sesshu.outcomes import Outcomes
from sesshu.pool import (
    ChildBootFailed,
    JobFinished,
    JobLost,
    Pool,
    PoolEvent,
    Reconfigured,
    ReconfigureFailed,
)
from sesshu.protocol import Job
from sesshu.settle import Settler, Ticket
from sesshu.signals import SignalRecorder
from sesshu.text import loggable

log = logging.getLogger("sesshu.supervisor")

MAX_WAIT = 1.0
EXIT_GRACE = 2.0  # how long a stopped daemon waits for an outstanding long poll
STALL_SLACK = 45.0  # a receive this much past its long poll has stalled (its timeouts failed)
LINGER = 0.05  # seconds a partial batch of results may wait for more while jobs still run


class Supervisor:
    def __init__(
        self,
        config: Config,
        bus: Bus,
        pool: Pool,
        *,
        clock: Callable[[], float] = time.monotonic,
        signals: SignalRecorder | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.pool = pool
        self.clock = clock
        self.signals = signals or SignalRecorder()
        self.settle = Settler(config)
        self.parser = RequestParser(config.plugin_names)
        self.held: deque[Ticket] = deque()
        self.stopping = False
        self.load_config: Callable[[], tuple[Config, list[Any]]] | None = None
        self.on_config_applied: Callable[[Config], None] | None = None
        self._proposed: Config | None = None
        self.metrics: Metrics | None = None
        self.received = 0
        self.on_reopen_logs: Callable[[], None] | None = None
        self._completions: queue.SimpleQueue[tuple[Lane, Any]] = queue.SimpleQueue()
        self.poller = Lane("sesshu-poller", self._complete, clock)
        self.sender = Lane("sesshu-sender", self._complete, clock)
        self._next_heartbeat = 0.0
        self._pending_since: float | None = None  # when results began waiting for the sender
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()
        self._watched: tuple[Any, ...] = ()
        self._abandoned: list[Lane] = []  # stalled pollers: they may still complete
        self._job_ids = itertools.count(1)
        self._drain_deadline: float | None = None
        self._exit_deadline: float | None = None
        self.health = BusHealth(clock)
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
            lanes = [self.poller, *self._abandoned]
            if self.sender.join(5.0) and all(lane.join(0.1) for lane in lanes):
                self.signals.close()
        log.info("stopped; outcomes: %s; bus requests: %s", self.settle.summary(), self._requests())
        return 0

    def tick(self) -> None:
        """One loop turn: the single bounded wait, then the chores."""
        watched = (self.signals.wake_r, *self.pool.waitables())
        if watched != self._watched:
            # Children come and go rarely; most turns reuse the selector as it is.
            self._selector.close()
            self._selector = selectors.DefaultSelector()
            for obj in watched:
                self._selector.register(obj, selectors.EVENT_READ)
            self._watched = watched
        ready = {key.fileobj for key, _ in self._selector.select(self._wait_timeout())}
        self.turn(ready)

    def close(self) -> None:
        self._selector.close()
        self._on_pool_events(self.pool.kill_all())
        for lane in (self.poller, self.sender, *self._abandoned):
            lane.stop()

    def turn(self, ready: set[Any]) -> None:
        for signum in self.signals.drain(self.signals.wake_r in ready):
            self._on_signal(signum)
        while not self._completions.empty():
            lane, result = self._completions.get_nowait()
            lane.busy = False
            if isinstance(result, Received):
                self._on_received(result)
            else:
                self.health.sent(result.error)
                self.settle.sent(result)
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
            running = [(r.ticket, r.deadline) for r in self.pool.running()]
            self.settle.extend_visibility(now, [*((t, None) for t in self.held), *running])
        self._send()
        self._watchdog()
        self._poll()
        if self.metrics is not None:
            self.metrics.gauges(self.pool.size, self.pool.busy_count(), self.in_flight())

    # The settler owns these; they are the supervisor's public face too.
    @property
    def outcomes(self) -> Outcomes:
        return self.settle.outcomes

    @property
    def queue_info(self) -> QueueInfo:
        return self.settle.queue_info

    @queue_info.setter
    def queue_info(self, info: QueueInfo) -> None:
        self.settle.queue_info = info

    def in_flight(self) -> int:
        """Received messages whose outcome is not decided yet."""
        return self.received - sum(self.outcomes.counts.values())

    def _wait_timeout(self) -> float:
        now = self.clock()
        until = [now + MAX_WAIT]
        if (t := self.pool.next_wakeup()) is not None:
            until.append(t)
        if not self.poller.busy and not self.stopping and self.health.poll_after > now:
            until.append(self.health.poll_after)
        if self._pending_since is not None and not self.sender.busy:
            until.append(self._pending_since + LINGER)
        for t2 in (self._drain_deadline, self._exit_deadline):
            if t2 is not None:
                until.append(t2)
        return max(0.0, min(until) - now)

    def _send(self) -> None:
        """Hand the sender its next batch, lingering briefly while a fuller batch is sure to come.

        Results and deletes wait up to LINGER only while jobs are still
        running (so more results are on their way) and the batch is not full.
        When nothing else is in flight, they go at once: light load never
        pays for batching.
        """
        outbox = self.settle.outbox
        waiting = len(outbox.publishes) + len(outbox.deletes)
        if waiting and self._pending_since is None:
            self._pending_since = self.clock()
        if self.sender.busy:
            return
        if (waiting and waiting < BATCH_MAX and not outbox.urgent() and not self.stopping
                and self.pool.busy_count() > 0 and self._pending_since is not None
                and self.clock() - self._pending_since < LINGER):
            return
        if (call := self.settle.next_send(self.bus)) is not None:
            self.sender.submit(call)
            self._pending_since = None

    def _watchdog(self) -> None:
        stalled = self.clock() - self.poller.since
        if self.poller.busy and stalled > self.config.poll_interval + STALL_SLACK:
            # A thread cannot be killed; abandon it. Whatever it receives
            # later still arrives as a completion and is handled as usual.
            log.error("polling has stalled for %.0f s; starting a new poller", stalled)
            self._abandoned.append(self.poller)
            self.poller = Lane("sesshu-poller", self._complete, self.clock)

    def _complete(self, lane: Lane, result: Any) -> None:
        # Runs in a lane's thread: hand over and wake the loop, nothing more.
        self._completions.put((lane, result))
        self.signals.wake()

    # -- signals --------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.begin_stop(graceful=True)
        elif signum == signal.SIGQUIT:
            self.begin_stop(graceful=False)
        elif signum == signal.SIGTTIN:
            self.pool.size += 1
            log.info("SIGTTIN: workers now %d", self.pool.size)
        elif signum == signal.SIGTTOU:
            self.pool.size = max(1, self.pool.size - 1)
            log.info("SIGTTOU: workers now %d", self.pool.size)
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGUSR1 and self.on_reopen_logs is not None:
            self.on_reopen_logs()

    def reload(self) -> None:
        """Re-read the config file; apply it once its plugins load in a probe child."""
        if self.load_config is None or self.stopping:
            return
        from sesshu.config import ConfigError

        try:
            new, specs = self.load_config()
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        if (new.queue, new.topic, new.region, new.endpoint_url) != (
                self.config.queue, self.config.topic, self.config.region, self.config.endpoint_url):
            log.warning("reload: bus.* changes take effect only after a restart")
        log.info("SIGHUP: loading the plugins of %s in a probe worker", new.path)
        self._proposed = new
        self.pool.propose(specs, new.worker_count)

    def _apply(self, new: Config) -> None:
        old = self.config
        self.config = replace(new, queue=old.queue, topic=old.topic, region=old.region,
                              endpoint_url=old.endpoint_url)
        self.parser = RequestParser(self.config.plugin_names)
        self.settle.config = self.config
        if self.on_config_applied is not None:
            self.on_config_applied(self.config)
        log.info("reloaded: %d workers, plugins %s", self.config.worker_count,
                 ", ".join(self.config.plugin_names))

    def begin_stop(self, graceful: bool) -> None:
        now = self.clock()
        if not self.stopping:
            log.info("%s stop: no more receiving; %d job(s) running",
                     "graceful" if graceful else "fast", self.pool.busy_count())
            self.stopping = True
            self._drain_deadline = now + self.config.shutdown_timeout
        while self.held:
            self.settle.retry(self.held.popleft(), "shutdown", "daemon stopping before it started", delay=0)
        if not graceful:
            self._drain_deadline = now
        self._stopping_chores()

    def _stopping_chores(self) -> None:
        self.pool.close_idle()
        if self._drain_deadline is not None and self.clock() >= self._drain_deadline:
            self._on_pool_events(self.pool.kill_all())

    def finished(self) -> bool:
        if not self.stopping or self.pool.children or self.settle.outbox or self.sender.busy:
            return False
        if not self.poller.busy:
            return True
        if self._exit_deadline is None:
            self._exit_deadline = self.clock() + EXIT_GRACE
        return self.clock() >= self._exit_deadline

    # -- receiving ------------------------------------------------------------

    def _poll(self) -> None:
        if self.stopping or self.poller.busy or self.clock() < self.health.poll_after:
            return
        want = len(self.pool.idle()) + self.config.prefetch - len(self.held)
        if want <= 0 or len(self.settle.outbox) >= 2 * BATCH_MAX:
            return  # backpressure: results waiting to be sent come first
        # While held messages keep the workers busy, wait until a full batch
        # can be asked for: each receive is a billed request.
        if self.held and want < min(BATCH_MAX, self.pool.size + self.config.prefetch):
            return
        n, wait_s = min(want, BATCH_MAX), self.config.poll_interval
        self.poller.submit(lambda: receive(self.bus, n, wait_s))

    def _on_received(self, received: Received) -> None:
        if received.error is not None:
            self.health.receive_failed(received.error)
            return
        self.health.received()
        self.received += len(received.messages)
        visible_until = received.started + self.settle.visibility()
        for message in received.messages:
            ticket = Ticket(message, visible_until=visible_until)
            try:
                ticket.request = self.parser.parse(message.body)
            except Rejected as exc:
                log.debug("rejected body of %s: %r", message.message_id, message.body[:2048])
                self.settle.reject(ticket, str(exc))
                continue
            except Exception:  # a bug of ours costs this message a retry, not the daemon
                log.exception("parsing message %s failed", message.message_id)
                self.settle.retry(ticket, "internal_error", "parsing the message failed (a bug; see the traceback)")
                continue
            if self.stopping:
                self.settle.retry(ticket, "shutdown", "received while stopping", delay=0)
            else:
                self.held.append(ticket)

    # -- jobs -----------------------------------------------------------------

    def _dispatch(self) -> None:
        if self.stopping:
            return
        idle = self.pool.idle()
        while idle and self.held:
            ticket = self.held.popleft()
            request = ticket.request
            assert request is not None
            plugin = self.config.plugin(request.plugin)
            if plugin is None:
                self.settle.retry(ticket, "disabled", f"plugin {request.plugin} was disabled by a reload", delay=0)
                continue
            timeout = plugin.timeout
            job = Job(next(self._job_ids), request.plugin, request.target)
            if not self.pool.assign(idle.pop(), job, ticket, timeout):
                self.held.appendleft(ticket)  # that child died meanwhile; the job goes to another

    def _on_pool_events(self, events: list[PoolEvent]) -> None:
        for event in events:
            if isinstance(event, JobFinished):
                self.settle.finished(event)
            elif isinstance(event, JobLost):
                ticket: Ticket = event.running.ticket
                job = event.running.job
                if event.reason == "timeout":
                    detail = f"plugin {job.plugin} {event.detail} on {loggable(job.target)}"
                else:
                    detail = event.detail
                self.settle.retry(ticket, event.reason, detail, pid=event.pid,
                            delay=0 if event.reason == "killed" else None)
            elif isinstance(event, Reconfigured) and self._proposed is not None:
                self._apply(self._proposed)
                self._proposed = None
            elif isinstance(event, ReconfigureFailed):
                self._proposed = None
                log.error("reload refused, keeping the running config: plugin %s failed to load: %s",
                          event.plugin, event.error)
            elif isinstance(event, ChildBootFailed):
                key = (event.plugin, event.error)
                if key not in self._boot_errors_seen:
                    self._boot_errors_seen.add(key)
                    log.error("worker %d cannot load plugin %s: %s", event.pid, event.plugin, event.error)

    def _requests(self) -> str:
        counts = getattr(self.bus, "requests", {})
        return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


