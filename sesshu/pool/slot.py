"""The master's handle on one worker slot: its processes, its channels, its state.

Slots come from multiprocessing's *forkserver*: a fresh interpreter, started
once with a clean environment, that never imports boto3 and never runs
threads. The master runs threads (the bus lanes), and a plain ``fork`` from
a threaded process that holds boto3's connection pools is unsafe, while
``spawn`` would pay a full interpreter start (and the plugin imports) per
respawn. The fork server forks a keeper per slot (``sesshu.worker.keeper``), which
forks the runner (``sesshu.worker.runner``); the keeper's sentinel and exit status
stand for the slot.

A slot's life is a state machine, as in supervisor's ``process.py``: the
slot's verbs (ready, assign, job_done, swept, stop, kill, terminate, reap)
change its state, each through :meth:`ChildProcess._change`, which looks the
step up in ``sesshu.pool.states.TRANSITIONS`` (where the states and the steps
are declared) and refuses one the table does not allow. No other module
writes a slot's fields. A :class:`Watcher` given at launch (the pool's index
of its slots) hears of every change as it happens, and of every channel
before it closes, so the master never has to scan its slots to find out.
"""

from __future__ import annotations

import multiprocessing.process
import os
import signal
import socket
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Protocol

from sesshu.pool.framing import FrameReader, OutputReader, write_frame
from sesshu.pool.protocol import ChildMessage, Job, decode_child, encode_job
from sesshu.pool.states import LIVE, TRANSITIONS, IllegalTransition, State, describe_exit
from sesshu.worker.keeper import RUNNER, SWEEP, SWEPT, keeper_main
from sesshu.worker.runner import PluginSpec
from sesshu.worker.sandbox import WorkerSetup

KILL_GRACE = 1.0  # seconds from SIGTERM to the master's own SIGKILL; the keeper kills at 0.2 s
SWEEP_TIMEOUT = 5.0  # a keeper that does not answer a sweep this soon is killed with its slot
OUTPUT_CAP = 64 * 1024  # bytes of a worker's stdout and stderr logged per job
FRAME_SLACK = 64 * 1024  # header room on top of the largest result


class Watcher(Protocol):
    """Told of a slot's changes as they happen (``sesshu.pool.slots.SlotIndex``)."""

    def changed(self, child: ChildProcess) -> None:
        """Its state, generation or next wake-up may be different now; once DEAD, it waits on no fd."""

    def closing(self, child: ChildProcess, fd: int) -> None:
        """It no longer waits on ``fd``, which it is about to close."""


@dataclass(frozen=True)
class RunningJob:
    job: Job
    label: str  # how log lines name the job's message: the pool knows nothing more of it
    started: float  # monotonic
    deadline: float  # monotonic


class ChildProcess:
    """One worker slot, seen from the master."""

    def __init__(self, process: BaseProcess, conn: socket.socket, control: socket.socket,
                 output: socket.socket, spawned: float, generation: int, max_frame: int,
                 watcher: Watcher | None = None) -> None:
        self.process = process
        self._watcher = watcher
        self.spawned = spawned
        self.generation = generation  # which configuration's plugins it loads; -1 for a probe
        self._conn: socket.socket | None = conn
        self._control: socket.socket | None = control
        self._output: socket.socket | None = output
        self._frames = FrameReader(max_frame)
        self._out = OutputReader(OUTPUT_CAP)
        self._state = State.STARTING
        self._stopped_from: State | None = None
        self._exit_expected = False  # we asked it to go: its exit is no crash
        self.running: RunningJob | None = None
        self.jobs_done = 0
        self.kill_at: float | None = None
        self.sweep_by: float | None = None
        self._runner_pid = 0

    @classmethod
    def launch(cls, ctx: ForkServerContext, specs: list[PluginSpec], setup: WorkerSetup,
               max_result_bytes: int, now: float, generation: int = 0,
               watcher: Watcher | None = None) -> ChildProcess:
        pairs = [socket.socketpair() for _ in range(3)]
        (conn, conn_child), (control, control_child), (output, output_child) = pairs
        from multiprocessing.connection import Connection

        job_end = Connection(conn_child.detach())
        process = ctx.Process(target=keeper_main, name="sesshud-worker",
                              args=(job_end, control_child, output_child, specs, setup, max_result_bytes))
        try:
            process.start()
        except BaseException:
            for sock in (conn, control, output):
                sock.close()
            raise
        finally:
            # Our copies of the child's ends must go, or we never see EOF on death.
            job_end.close()
            control_child.close()
            output_child.close()
        # Process.start() polls every process in this set, with a new selector
        # each, to reap the ones nobody joined: with hundreds of slots that is
        # milliseconds per launch. We reap each slot ourselves (reap()).
        _started_processes().discard(process)
        for sock in (conn, control, output):
            sock.setblocking(False)
        return cls(process, conn, control, output, now, generation, max_result_bytes + FRAME_SLACK, watcher)

    # -- what the master watches ---------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def pid(self) -> int:
        """The runner's pid once the keeper has told it (what logs name), else the keeper's."""
        return self._runner_pid or self.slot_pid

    @property
    def slot_pid(self) -> int:
        """The keeper's pid: it leads the slot's process group."""
        return self.process.pid or 0

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    @property
    def exit_expected(self) -> bool:
        return self._exit_expected

    @property
    def stopped_from(self) -> State | None:
        """The state it was in when it was stopped or found dead."""
        return self._stopped_from

    def fds(self) -> list[int]:
        """Everything to wait on: the channels still open, and the sentinel."""
        socks = (self._conn, self._control, self._output)
        return [*(s.fileno() for s in socks if s is not None), self.sentinel]

    def is_frame_fd(self, fd: int) -> bool:
        return self._conn is not None and self._conn.fileno() == fd

    def is_control_fd(self, fd: int) -> bool:
        return self._control is not None and self._control.fileno() == fd

    def is_output_fd(self, fd: int) -> bool:
        return self._output is not None and self._output.fileno() == fd

    def next_wakeup(self) -> float | None:
        """The earliest time something is due: a job's deadline, a sweep's, a frame's, our SIGKILL."""
        times = [t for t in (self.kill_at, self.sweep_by) if t is not None]
        if self._conn is not None and self._frames.deadline is not None:
            times.append(self._frames.deadline)  # a closed pipe has no frame to wait for
        if self.running is not None and self._state is State.BUSY:
            times.append(self.running.deadline)
        return min(times) if times else None

    # -- reading --------------------------------------------------------------

    def read_frames(self, now: float) -> tuple[list[ChildMessage], bool]:
        """Decoded frames that arrived, and whether the runner hung up. Raises ProtocolError."""
        if self._conn is None:
            return [], False
        before = self._frames.deadline
        frames, eof = self._frames.read(self._conn.fileno(), now)
        if self._frames.deadline != before:
            self._notify()
        return [decode_child(frame) for frame in frames], eof

    def frame_stalled(self, now: float) -> bool:
        return self._conn is not None and self._frames.stalled(now)

    def read_output(self) -> list[str]:
        if self._output is None:
            return []
        lines, eof = self._out.read(self._output.fileno())
        if eof:
            self._close(self._output)
            self._output = None
        return lines

    def end_of_job_output(self) -> tuple[list[str], int]:
        """The job's unfinished output line, and the bytes past the cap; counting starts afresh."""
        return self._out.flush(), self._out.next_job()

    def read_control(self) -> bool:
        """Take the keeper's answers; False when the keeper hung up (the slot is dying)."""
        if self._control is None:
            return True
        try:
            data = self._control.recv(64)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self._close(self._control)
            self._control = None
            return False
        if data.startswith(RUNNER) and b"\n" in data:
            line, _, data = data.partition(b"\n")
            digits = line[len(RUNNER):]
            # Only the keeper holds this socket, but the master parses nothing on trust.
            self._runner_pid = int(digits) if digits.isdigit() and len(digits) < 10 else 0
        if SWEPT in data and self._state is State.SWEEPING:  # a stray answer at another time changes nothing
            self.sweep_by = None
            self._change("swept")
        return True

    # -- transitions ------------------------------------------------------------

    def _change(self, step: str) -> None:
        """The one place a slot's state changes."""
        self._state = self._next(step)
        self._notify()

    def _next(self, step: str) -> State:
        if (new := TRANSITIONS[step].get(self._state)) is None:
            raise IllegalTransition(f"a slot cannot {step} while {self._state.value}")
        return new

    def _notify(self) -> None:
        if self._watcher is not None:
            self._watcher.changed(self)

    def _close(self, sock: socket.socket) -> None:
        if self._watcher is not None:
            self._watcher.closing(self, sock.fileno())
        sock.close()

    def ready(self) -> None:
        self._change("ready")

    def adopt(self, generation: int) -> None:
        """A probe slot whose plugin set was committed joins that configuration's slots."""
        self.generation = generation
        self._notify()

    def assign(self, running: RunningJob) -> bool:
        """Send the runner a job; False if its pipe is broken (it died since it went idle)."""
        self._next("assign")  # checked before anything is written
        assert self._conn is not None  # an idle slot's pipe is open: only stop() closes it
        try:
            write_frame(self._conn.fileno(), encode_job(running.job))
        except OSError:
            self.kill(expected=False)
            return False
        self.running = running  # first, so that the watcher sees its deadline
        self._change("assign")
        return True

    def job_done(self, now: float, sweep: bool = True) -> RunningJob | None:
        """The job ended (result or loss): ask the keeper to sweep what it left behind, unless it left no process."""
        running, self.running = self.running, None
        if self._state is not State.BUSY:
            return running
        self.jobs_done += 1
        if not sweep:
            self._change("job_done_clean")
        else:
            self.sweep_by = now + SWEEP_TIMEOUT
            self._change("job_done")
            try:
                assert self._control is not None
                self._control.send(SWEEP)
            except (OSError, AssertionError):
                self.kill(expected=False)
        return running

    def stop(self, expected: bool = True) -> None:
        """Close our end of its job pipe: an idle runner reads EOF and the slot exits by itself."""
        self._stopped_from = self._stopped_from or self._state
        if self._conn is not None:
            self._close(self._conn)
            self._conn = None
        self.sweep_by = None
        self._exit_expected = self._exit_expected or expected
        self._change("stop")

    def kill(self, expected: bool = True, sig: int = signal.SIGKILL) -> None:
        """Stop it, and signal the slot at once."""
        self.stop(expected)
        self.signal_group(sig)

    def hung_up(self) -> None:
        """The runner closed its pipe (most likely it died): stop a live slot; its sentinel tells how."""
        if self._state in LIVE:
            self.kill(expected=False, sig=signal.SIGTERM)

    def terminate(self, now: float, grace: float = KILL_GRACE) -> None:
        """SIGTERM the slot (the keeper kills all below it), with a SIGKILL of our own after ``grace``."""
        self.stop()
        self.signal_group(signal.SIGTERM)
        if self.kill_at is None:
            self.kill_at = now + grace
            self._notify()

    def kill_if_due(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at:
            self.signal_group(signal.SIGKILL)
            self.kill_at = None

    def signal_group(self, sig: int) -> None:
        pid = self.slot_pid
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
        """Collect the exit status of a dead slot, described for a log line; the watcher forgets it."""
        self.process.join(0)
        self.signal_group(signal.SIGKILL)  # a runner that outlived its keeper goes too
        self.stop(expected=False)
        for sock in (self._control, self._output):
            if sock is not None:
                self._close(sock)
        self._control = self._output = None
        self._change("reap")
        code = self.process.exitcode
        if code is not None:
            self.process.close()
        return describe_exit(code)


def _started_processes() -> set[BaseProcess]:
    children: set[BaseProcess] = getattr(multiprocessing.process, "_children", set())
    return children

