"""The keeper: the process that outlives a worker's plugin code and cleans up after it.

Each worker slot is two processes. The fork server forks the *keeper*, which
runs no plugin code: it makes itself a subreaper, forks the *runner*
(``sesshu.worker.runner``), which drops its privileges and runs the plugins, and then
only watches. Whatever the runner starts, even a grandchild that left its
process group and session, stays below the keeper, which can kill it:

- after a job, when the master asks on the control socket (``s``), it
  kills every descendant but the runner, then answers ``k``; the master
  gives the runner no new job before that answer. It asks after every job
  that may have started a process (``sesshu.worker.leftovers``), and after
  every job that ended any other way than with a result;
- when the runner dies, or SIGTERM arrives (a timeout, a stop, the fork
  server's death), it kills everything below it, removes the runner's
  scratch directory if the runner could not, and leaves with the runner's
  own exit status, so the master reads the runner's fate from the keeper's
  sentinel.

A plugin that kills its keeper only hands the orphans up to the master,
itself a subreaper that kills whatever child it does not know.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
import traceback
from multiprocessing.connection import Connection

from setproctitle import setproctitle

from sesshu.worker import sandbox, scratch
from sesshu.worker.runner import PluginSpec, runner_main
from sesshu.worker.sandbox import WorkerSetup

SWEEP = b"s"
SWEPT = b"k"
RUNNER = b"r"  # then the runner's pid and a newline, once, first
TERM_GRACE = 0.2  # how long a runner may take to obey SIGTERM before everything is SIGKILLed


def keeper_main(job_conn: Connection, control: socket.socket, output: socket.socket,
                specs: list[PluginSpec], setup: WorkerSetup, max_result_bytes: int) -> None:
    """Entry point of a worker slot in the fork server's child; never returns."""
    try:
        os.setpgid(0, 0)  # one group for keeper and runner: the master's killpg reaches both
        for name in _RESET_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        sandbox.set_dumpable(False)
        sandbox.set_subreaper()
        sandbox.die_with_parent(signal.SIGTERM)  # the fork server went: clean up, then go
        if os.getppid() == 1:
            os._exit(0)
        sandbox.Limits(None, None, None, None).apply()  # no core dumps, of the keeper either
        sandbox.close_fds({0, 1, 2, job_conn.fileno(), control.fileno(), output.fileno()})
        runner = os.fork()
        if runner == 0:
            control.close()
            runner_main(job_conn, output, specs, setup, max_result_bytes)
        job_conn.close()
        output.close()
        control.send(RUNNER + str(runner).encode() + b"\n")  # the master names the worker by it
        setproctitle("sesshud: keeper")
        status = _watch(runner, control)
        if setup.scratch_root is not None:  # a runner that was killed could not remove its own
            scratch.remove_slots(setup.scratch_root, os.getpid(), setup.identity)
        _leave_as(status)
    except BaseException:  # noqa: BLE001 - report anything, then leave
        traceback.print_exc()
        os._exit(1)


_RESET_SIGNALS = ("SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTTIN", "SIGTTOU", "SIGPIPE")


def _watch(runner: int, control: socket.socket) -> int:
    """Serve sweeps until the runner is gone; return its wait status."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)  # the wake-up fd carries the signal number
    control.setblocking(False)
    me = os.getpid()
    kill_at: float | None = None
    # A runner that died before SIGCHLD had its handler sent no wake-up: look once without waiting.
    look_now = True
    while True:
        timeout = 0.0 if look_now else None if kill_at is None else max(0.0, kill_at - time.monotonic())
        look_now = False
        readable = select.select([wake_r, control.fileno()], [], [], timeout)[0]
        signals = _drain(wake_r) if wake_r in readable else b""
        for pid, status in sandbox.reap_all():
            if pid == runner:
                sandbox.kill_tree(me)
                return status
        if signal.SIGTERM in signals and kill_at is None:
            _signal(runner, signal.SIGTERM)
            kill_at = time.monotonic() + TERM_GRACE
        if kill_at is not None and time.monotonic() >= kill_at:
            for pid, status in sandbox.kill_tree(me):
                if pid == runner:
                    return status
            kill_at = time.monotonic() + 0.05  # a process in uninterruptible sleep dies late
        if control.fileno() in readable:
            try:
                asked = control.recv(64)
            except BlockingIOError:
                continue
            if not asked:  # the master is gone: so is our purpose
                _signal(runner, signal.SIGKILL)
                kill_at = kill_at or time.monotonic()
                continue
            for _ in range(asked.count(SWEEP)):
                for pid, status in sandbox.kill_tree(me, exclude=runner):
                    if pid == runner:
                        return status
                try:
                    control.send(SWEPT)
                except OSError:
                    pass


def _drain(fd: int) -> bytes:
    out = b""
    try:
        while chunk := os.read(fd, 256):
            out += chunk
    except BlockingIOError:
        pass
    return out


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _leave_as(status: int) -> None:
    """Exit the way the runner did, so the master's view of the slot is the runner's fate."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP cannot be handled: they are at their default already
        try:
            os.kill(os.getpid(), sig)
        except OSError:
            pass
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
