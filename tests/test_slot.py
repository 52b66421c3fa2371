"""A slot's life as a state machine: every change checks the state it leaves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sesshu.pool.framing import FrameReader
from sesshu.pool.protocol import Job, decode_job
from sesshu.pool.slot import ChildProcess, RunningJob
from sesshu.pool.states import TRANSITIONS, IllegalTransition, State
from sesshu.worker.keeper import RUNNER, SWEEP, SWEPT


@dataclass
class FakeProcess:
    pid: int = 4242
    sentinel: int = -1
    exitcode: int | None = None

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def pairs_flat(pairs: list[tuple[socket.socket, socket.socket]]) -> list[socket.socket]:
    return [s for pair in pairs for s in pair]


class Slot:
    """A ChildProcess on socket pairs, with the far ends in the test's hands."""

    def __init__(self) -> None:
        pairs = [socket.socketpair() for _ in range(3)]
        (self.conn, self.runner), (self.control, self.keeper), (self.output, self.out_far) = pairs
        for s in pairs_flat(pairs):
            s.setblocking(False)
        self.child = ChildProcess(FakeProcess(), self.conn, self.control, self.output, 0.0, 0, 1024)  # type: ignore[arg-type]

    def close(self) -> None:
        for s in (self.conn, self.runner, self.control, self.keeper, self.output, self.out_far):
            s.close()


@pytest.fixture
def slot() -> Iterator[Slot]:
    s = Slot()
    yield s
    s.close()


def running(job_id: int = 1) -> RunningJob:
    return RunningJob(Job(job_id, "chaos", "chaos:echo:x"), "m", 0.0, 5.0)


def test_a_full_cycle(slot: Slot) -> None:
    child = slot.child
    assert child.state is State.STARTING
    child.ready()
    assert child.assign(running())
    assert child.state is State.BUSY
    frames, _ = FrameReader(1024).read(slot.runner.fileno(), 0.0)
    assert decode_job(frames[0]) == Job(1, "chaos", "chaos:echo:x")
    assert child.job_done(1.0) is not None
    assert child.state is State.SWEEPING and child.sweep_by is not None
    assert slot.keeper.recv(16) == SWEEP
    slot.keeper.send(RUNNER + b"4343\n" + SWEPT)
    assert child.read_control()
    assert child.state is State.IDLE and child.pid == 4343 and child.slot_pid == 4242
    assert child.jobs_done == 1


def move_to(slot: Slot, state: State) -> ChildProcess:
    """The slot's child, taken to ``state`` by allowed steps."""
    child = slot.child
    if state is not State.STARTING:
        child.ready()
    if state in (State.BUSY, State.SWEEPING):
        child.assign(running())
    if state is State.SWEEPING:
        child.job_done(1.0)
    if state in (State.STOPPING, State.DEAD):
        child.stop()
    if state is State.DEAD:
        child.reap()
    assert child.state is state
    return child


# reap() stops a live slot first (its sentinel fired: it died), so only a dead one cannot be reaped.
FORBIDDEN = [(step, state) for step in ("ready", "assign", "stop") for state in State
             if state not in TRANSITIONS[step]] + [("reap", State.DEAD)]


@pytest.mark.parametrize(("step", "state"), FORBIDDEN, ids=[f"{s}-{st.value}" for s, st in FORBIDDEN])
def test_a_step_the_table_forbids_raises_and_changes_nothing(slot: Slot, step: str, state: State) -> None:
    child = move_to(slot, state)
    steps = {"ready": child.ready, "assign": lambda: child.assign(running()), "stop": child.stop, "reap": child.reap}
    with pytest.raises(IllegalTransition):
        steps[step]()
    assert child.state is state


def test_a_stray_swept_while_busy_changes_nothing(slot: Slot) -> None:
    child = move_to(slot, State.BUSY)
    slot.keeper.send(SWEPT)
    child.read_control()
    assert child.state is State.BUSY


def test_a_broken_pipe_gives_the_job_back(slot: Slot) -> None:
    child = slot.child
    child.ready()
    slot.runner.close()
    # The peer is gone: the write fails, the job never left, the slot is stopping.
    ok = child.assign(running())
    if ok:  # a socket may take one write after its peer closed; the next read sees EOF
        assert child.read_frames(0.0)[1]
    else:
        assert child.state is State.STOPPING and child.running is None


def test_stop_remembers_where_it_was_and_whether_it_was_asked(slot: Slot) -> None:
    child = slot.child
    child.ready()
    child.stop(expected=False)
    assert child.state is State.STOPPING and child.stopped_from is State.IDLE and not child.exit_expected
    child.stop()
    assert child.exit_expected
    assert child.fds() == [slot.control.fileno(), slot.output.fileno(), -1]  # the job pipe is closed


def test_the_keeper_hanging_up_is_reported(slot: Slot) -> None:
    slot.keeper.close()
    assert slot.child.read_control() is False
