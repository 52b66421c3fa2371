"""The parent's handle on one worker child: its process, pipe, state and job.

Children are started through multiprocessing's *forkserver*: a fresh
interpreter, started once, that never imports boto3 and never runs threads,
forks every child. The supervisor does run threads (the bus I/O), and a
plain ``fork`` from a threaded process that holds boto3's connection pools is
unsafe, while ``spawn`` would pay a full interpreter start (and plugin
imports) per respawn. The fork server also reaps the children and reports
their exit status through each process' sentinel.
"""

from __future__ import annotations

import enum
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from sesshu.child import PluginSpec, child_main
from sesshu.protocol import Job, encode_job

KILL_GRACE = 0.2  # seconds between SIGTERM and SIGKILL for a late child


class State(enum.Enum):
    STARTING = "starting"  # spawned, plugins loading
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"  # signalled or closed; waiting for its death


@dataclass
class RunningJob:
    job: Job
    ticket: Any  # the supervisor's own record of the message
    started: float  # monotonic
    deadline: float  # monotonic


class ChildProcess:
    """One worker child, seen from the parent."""

    def __init__(self, process: BaseProcess, conn: Connection, spawned: float) -> None:
        self.process = process
        self.conn: Connection | None = conn
        self.state = State.STARTING
        self.running: RunningJob | None = None
        self.spawned = spawned
        self.kill_at: float | None = None
        self.jobs_done = 0
        self.retired = False  # we asked it to go: its exit is no crash
        self.ready = False  # it loaded its plugins and said Ready
        self.generation = 0  # which configuration's plugins it loaded

    @classmethod
    def launch(
        cls, ctx: ForkServerContext, specs: list[PluginSpec], max_result_bytes: int, now: float,
        memory_limit_mib: int | None = None,
    ) -> ChildProcess:
        parent_end, child_end = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=child_main, args=(child_end, specs, max_result_bytes, memory_limit_mib),
            name="sesshud-worker",
        )
        try:
            process.start()
        finally:
            # Our copy of the child's end must go, or we never see EOF on death.
            child_end.close()
        return cls(process, parent_end, now)

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    def assign(self, running: RunningJob) -> bool:
        """Send the child a job; False if its pipe is broken (it died since it went idle)."""
        assert self.conn is not None and self.state is State.IDLE
        try:
            self.conn.send_bytes(encode_job(running.job))
        except OSError:
            self.close(retire=False)
            self.signal_group(signal.SIGKILL)
            return False
        self.running = running
        self.state = State.BUSY
        return True

    def finish_job(self) -> RunningJob | None:
        running, self.running = self.running, None
        if self.state is State.BUSY:
            self.state = State.IDLE
            self.jobs_done += 1
        return running

    def close(self, retire: bool = True) -> None:
        """Close our pipe end: an idle child reads EOF and exits by itself."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.state = State.STOPPING
        self.retired = self.retired or retire

    def terminate(self, now: float, grace: float = KILL_GRACE) -> None:
        """SIGTERM the child's process group, and schedule a SIGKILL after ``grace``."""
        self.close()
        self.signal_group(signal.SIGTERM)
        if self.kill_at is None:
            self.kill_at = now + grace

    def signal_group(self, sig: int) -> None:
        pid = self.pid
        if not pid:
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            # Not yet (or no longer) a group leader: signal the process itself.
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        except PermissionError:
            pass

    def reap(self) -> str:
        """Collect the exit status of a dead child, described for a log line."""
        self.process.join(0)
        # Grandchildren a plugin left behind share the group: take them too.
        self.signal_group(signal.SIGKILL)
        self.close(retire=False)
        code = self.process.exitcode
        if code is not None:
            self.process.close()
        return describe_exit(code)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
