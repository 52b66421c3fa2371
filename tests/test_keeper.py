"""sesshu.worker.keeper: a real keeper with a fake runner sweeps what a job left and leaves as its runner did."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from sesshu.worker import keeper, sandbox
from sesshu.worker.keeper import RUNNER, SWEEP, SWEPT
from sesshu.worker.sandbox import WorkerSetup
from tests.harness.aws import poll

DEADLINE = 20.0  # generous: only a broken keeper ever waits this long


def dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def wait_exit(pid: int, timeout: float = DEADLINE) -> int:
    """Reap a child of ours; its exit code as multiprocessing gives it (-N: killed by signal N)."""
    def reaped() -> tuple[int] | None:
        got, status = os.waitpid(pid, os.WNOHANG)
        return (os.waitstatus_to_exitcode(status),) if got else None
    code: int = poll(reaped, timeout, what=f"process {pid} to exit")[0]
    return code


def leave_orphan() -> int:
    """A sleeper in its own session whose parent has exited, as a daemonised helper is."""
    r, w = os.pipe()
    if (middle := os.fork()) == 0:
        os.setsid()
        if (sleeper := os.fork()) == 0:
            time.sleep(60)  # not a wait for anything: a bound on its life, should the test break
            os._exit(0)
        os.write(w, str(sleeper).encode())
        os._exit(0)
    os.waitpid(middle, 0)  # once middle is gone, its child belongs to the keeper, the subreaper
    return int(os.read(r, 32))


def fake_runner(job_conn: Connection, output: socket.socket, *_: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a plugin that does not catch SIGTERM
    while (order := job_conn.recv_bytes()) == b"orphan":
        output.sendall(f"{leave_orphan()}\n".encode())
    os._exit(int(order))


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(64 * 1024)
        assert chunk, f"hung up after {data[-64:]!r}"
        data += chunk
    return data


class Slot:
    """A keeper forked from the test as the fork server would, with the master's ends in hand."""

    def __init__(self, stall: bool = False) -> None:
        (conn, conn_child), (self.control, control_child), (self.output, output_child) = [
            socket.socketpair() for _ in range(3)]
        if stall:  # a full control socket holds the keeper in its first send, short of _watch
            control_child.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    control_child.send(b"\0" * 4096)
            control_child.setblocking(True)
        job_end = Connection(conn_child.detach())
        if (pid := os.fork()) == 0:
            try:
                keeper.keeper_main(job_end, control_child, output_child, [], WorkerSetup(), 1024)
            finally:
                os._exit(99)
        self.pid, self.jobs = pid, Connection(conn.detach())
        self.orphans: list[int] = []
        for end in (job_end, control_child, output_child):
            end.close()
        self.control.settimeout(DEADLINE)
        self.output.settimeout(DEADLINE)

    def hello(self) -> int:
        """The runner's pid, as the keeper names it first."""
        line = read_until(self.control, b"\n").lstrip(b"\0")
        assert line.startswith(RUNNER)
        self.runner = int(line[len(RUNNER):])
        return self.runner

    def orphan(self) -> int:
        self.jobs.send_bytes(b"orphan")
        self.orphans.append(int(read_until(self.output, b"\n")))
        return self.orphans[-1]

    def close(self) -> None:
        """Whatever a failed test left alive goes; the orphans left the keeper's group."""
        with contextlib.suppress(OSError):  # the test reaped it already
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        for pid in self.orphans:
            if not dead(pid):
                os.kill(pid, signal.SIGKILL)
        for end in (self.jobs, self.control, self.output):
            end.close()


@pytest.fixture
def slots(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Slot]]:
    monkeypatch.setattr(keeper, "runner_main", fake_runner)  # the fork copies it into the keeper
    made: list[Slot] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def slot(slots: list[Slot]) -> Slot:
    slots.append(Slot())
    slots[0].hello()
    return slots[0]


def test_a_sweep_kills_what_the_job_left_and_spares_the_runner(slot: Slot) -> None:
    # One group for keeper and runner, so the master's killpg reaches both.
    assert os.getpgid(slot.pid) == os.getpgid(slot.runner) == slot.pid
    orphan = slot.orphan()
    assert orphan in sandbox.children_of(slot.pid)
    slot.control.sendall(SWEEP * 2)  # two asks in one read get two answers
    assert read_until(slot.control, SWEPT * 2) == SWEPT * 2
    poll(lambda: dead(orphan), DEADLINE, what="the orphan to die")
    assert sandbox.children_of(slot.pid) == [slot.runner]
    slot.jobs.send_bytes(b"6")
    assert wait_exit(slot.pid) == 6  # the runner's own exit status


@pytest.mark.parametrize(("end", "fates"), [
    ("sigterm", {-signal.SIGTERM}),  # the runner obeyed it, so the keeper dies of it too
    ("master hangs up", {-signal.SIGKILL}),  # the keeper SIGKILLs the runner, and dies as it did
])
def test_a_slot_ended_from_outside_leaves_nothing_behind(slot: Slot, end: str, fates: set[int]) -> None:
    slot.control.sendall(SWEEP)
    read_until(slot.control, SWEPT)  # answered from _watch: its SIGTERM handler is in place
    orphan = slot.orphan()
    if end == "sigterm":
        os.kill(slot.pid, signal.SIGTERM)
    else:
        slot.control.close()
    assert wait_exit(slot.pid) in fates
    poll(lambda: dead(orphan) and dead(slot.runner), DEADLINE, what="the runner and orphan to die")


def test_a_runner_that_dies_before_the_keeper_watches_is_still_noticed(slots: list[Slot]) -> None:
    slots.append(slot := Slot(stall=True))
    runner = poll(lambda: sandbox.children_of(slot.pid), DEADLINE, what="the runner")[0]
    slot.jobs.send_bytes(b"4")
    poll(lambda: dead(runner), DEADLINE, what="the runner to die")
    assert slot.hello() == runner
    # A keeper that noticed exits within milliseconds; one that missed the SIGCHLD never does.
    assert wait_exit(slot.pid, timeout=30.0) == 4


@pytest.mark.parametrize("fate", [
    0, 5, -signal.SIGTERM, -signal.SIGUSR1, -signal.SIGKILL,
])
def test_leave_as_gives_the_runners_fate(fate: int) -> None:
    if (runner := os.fork()) == 0:
        if fate < 0 and fate != -signal.SIGKILL:
            signal.signal(-fate, signal.SIG_DFL)
        if fate < 0:
            os.kill(os.getpid(), -fate)
        os._exit(max(fate, 0))
    _, status = os.waitpid(runner, 0)  # it is already on its way out
    assert os.waitstatus_to_exitcode(status) == fate
    if (leaver := os.fork()) == 0:
        try:
            keeper._leave_as(status)
        finally:
            os._exit(99)
    assert wait_exit(leaver) == fate
