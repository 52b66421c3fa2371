"""The pool's index of its slots: kept current by the slots themselves, and never scanning them.

Slots here are real ChildProcess objects on socket pairs, with a pipe for
the sentinel and no process behind them, so each transition is driven by
hand and the index is checked against what the slots say of themselves.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from sesshu.pool.protocol import Job
from sesshu.pool.slot import ChildProcess, RunningJob
from sesshu.pool.slots import SlotIndex
from sesshu.pool.states import State
from sesshu.worker.keeper import SWEEP, SWEPT


@dataclass
class FakeProcess:
    sentinel: int
    pid: int = 4242
    exitcode: int | None = 0
    closed: list[int] = field(default_factory=list)

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        os.close(self.sentinel)
        self.closed.append(self.sentinel)


class Slot:
    """A ChildProcess watched by an index, with the far ends of its channels in the test's hands."""

    def __init__(self, index: SlotIndex, generation: int = 0) -> None:
        pairs = [socket.socketpair() for _ in range(3)]
        (self.conn, self.runner), (self.control, self.keeper), (self.output, self.out_far) = pairs
        for pair in pairs:
            for s in pair:
                s.setblocking(False)
        self.death_r, self.death_w = os.pipe()
        self.process = FakeProcess(self.death_r)
        self.child = ChildProcess(self.process, self.conn, self.control, self.output, 0.0,  # type: ignore[arg-type]
                                  generation, 1024, index)
        index.add(self.child)

    def die(self) -> None:
        os.close(self.death_w)  # the sentinel becomes readable, as a dead process's does

    def close(self) -> None:
        for s in (self.conn, self.runner, self.control, self.keeper, self.output, self.out_far):
            s.close()
        for fd in (self.death_r, self.death_w):
            if fd not in self.process.closed:
                try:
                    os.close(fd)
                except OSError:
                    pass


@pytest.fixture
def index() -> Iterator[SlotIndex]:
    idx = SlotIndex()
    yield idx
    idx.close()


@pytest.fixture
def slots(index: SlotIndex) -> Iterator[list[Slot]]:
    made = [Slot(index) for _ in range(3)]
    yield made
    for s in made:
        s.close()


def running(deadline: float) -> RunningJob:
    return RunningJob(Job(1, "chaos", "chaos:echo:x"), "m", 0.0, deadline)


def consistent(index: SlotIndex, slots: list[Slot]) -> None:
    """The index says what a scan of the slots would say."""
    children = [s.child for s in slots if s.child.state is not State.DEAD]
    for state in State:
        assert set(index.in_state(state)) == {c for c in children if c.state is state}, state
        assert index.count(state) == sum(1 for c in children if c.state is state)
    assert index.counted() == sum(1 for c in children if c.state not in (State.STOPPING, State.DEAD)
                                  and c.generation >= 0)
    assert sorted(index.fds()) == sorted(fd for c in children for fd in c.fds())
    times = [t for c in children if (t := c.next_wakeup()) is not None]
    assert index.next_wakeup() == (min(times) if times else None)


def test_states_fds_and_wakeups_follow_each_transition(index: SlotIndex, slots: list[Slot]) -> None:
    a, b, c = slots
    consistent(index, slots)
    for s in slots:
        s.child.ready()
    consistent(index, slots)
    assert index.count(State.IDLE) == 3
    assert a.child.assign(running(deadline=30.0))
    assert b.child.assign(running(deadline=20.0))
    consistent(index, slots)
    assert index.next_wakeup() == 20.0
    b.child.job_done(now=1.0)  # b sweeps; its deadline entry is stale now
    consistent(index, slots)
    assert index.next_wakeup() == 1.0 + 5.0  # SWEEP_TIMEOUT
    assert b.keeper.recv(8) == SWEEP
    b.keeper.send(SWEPT)
    b.child.read_control()
    consistent(index, slots)
    assert index.next_wakeup() == 30.0  # b's stale entries were dropped on the way
    a.child.terminate(now=2.0)  # a timed out, say
    consistent(index, slots)
    assert index.next_wakeup() == 3.0  # the master's own SIGKILL
    c.out_far.close()  # c's output hangs up: its fd leaves the selector before it closes
    c.child.read_output()
    consistent(index, slots)
    c.keeper.close()
    c.child.read_control()
    consistent(index, slots)
    a.die()
    assert index.ready() == {a.death_r}
    assert index.owner(a.death_r) is a.child
    a.child.reap()  # a dead slot leaves the index, with every fd
    assert index.count(State.DEAD) == 0 and a.child not in set(index)
    assert a.death_r not in index.fds() and index.owner(a.death_r) is None
    consistent(index, [b, c])


def test_a_probe_counts_only_once_adopted(index: SlotIndex) -> None:
    probe = Slot(index, generation=-1)
    try:
        probe.child.ready()
        assert index.count(State.IDLE) == 1 and index.counted() == 0
        probe.child.adopt(3)
        assert index.counted() == 1
        probe.child.stop()
        assert index.counted() == 0 and index.count(State.STOPPING) == 1
    finally:
        probe.close()


def test_due_returns_only_slots_with_something_due(index: SlotIndex, slots: list[Slot]) -> None:
    a, b, _ = slots
    for s in slots:
        s.child.ready()
    a.child.assign(running(deadline=10.0))
    b.child.assign(running(deadline=50.0))
    assert index.due(9.9) == []
    assert index.due(10.0) == [a.child]
    assert index.due(10.0) == []  # taken: it comes back only through changed()
    index.changed(a.child)
    assert index.due(10.0) == [a.child]
    a.child.job_done(now=10.0)  # the deadline passed: the pool gives up on the job
    assert index.due(14.9) == []
    assert index.due(100.0) == [a.child, b.child]  # a's unanswered sweep, then b's deadline, in time order
    for s in slots:
        index.changed(s.child)
    consistent(index, slots)


def test_a_quiet_index_touches_no_slot(index: SlotIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Among 200 slots, one busy: the wake-up, what is due and what is ready cost that slot alone."""
    many = [Slot(index) for _ in range(200)]
    try:
        for s in many:
            s.child.ready()
        busy = many[117]
        busy.child.assign(running(deadline=30.0))
        asked: list[ChildProcess] = []
        real_next_wakeup, real_fds = ChildProcess.next_wakeup, ChildProcess.fds

        def next_wakeup(self: ChildProcess) -> float | None:
            asked.append(self)
            return real_next_wakeup(self)

        def fds(self: ChildProcess) -> list[int]:
            asked.append(self)
            return real_fds(self)

        monkeypatch.setattr(ChildProcess, "next_wakeup", next_wakeup)
        monkeypatch.setattr(ChildProcess, "fds", fds)
        for _ in range(10):
            assert index.ready() == set()
            assert index.due(29.0) == []
            assert index.next_wakeup() == 30.0
            assert index.count(State.IDLE) == 199 and index.count(State.BUSY) == 1
        assert set(asked) <= {busy.child}
        assert len(asked) <= 10  # once per next_wakeup(), to check the heap's head is not stale
    finally:
        for s in many:
            s.close()
