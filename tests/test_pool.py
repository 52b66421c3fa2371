"""The pool with real slots and a fake clock: deadlines, stalled sweeps and respawn backoff in milliseconds.

Time is injected: the pool never reads the real clock, so a 30 s deadline
passes when the test says so, while the slots themselves are real processes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sesshu.bus.api import Message
from sesshu.config.model import from_mapping
from sesshu.daemon.assemble import plugin_specs, pool_settings
from sesshu.jobs.ticket import Ticket
from sesshu.pool.events import JobFinished, JobLost, PoolEvent
from sesshu.pool.pool import Pool
from sesshu.pool.protocol import Job
from sesshu.pool.slot import ChildProcess
from sesshu.pool.spawn import forkserver_context
from sesshu.pool.states import State
from tests.harness.clock import FakeClock

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


def make_pool(count: int) -> tuple[Pool, FakeClock]:
    config = from_mapping({"plugin": ["chaos"], "plugin_path": [str(TEST_PLUGINS)], "workers": {"count": count},
                           "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    clock = FakeClock(1000.0)
    pool = Pool(forkserver_context(), pool_settings(config, plugin_specs(config)), clock)
    pool.maintain()
    return pool, clock


def close_pool(pool: Pool) -> None:
    pool.kill_all()
    drive(pool, lambda _: not pool.children, "every slot to be gone")
    pool.close()


@pytest.fixture
def rig() -> Iterator[tuple[Pool, FakeClock]]:
    pool, clock = make_pool(1)
    yield pool, clock
    close_pool(pool)


def drive(pool: Pool, until: Callable[[list[PoolEvent]], Any], what: str, *, respawn: bool = False,
          check: Callable[[Pool], None] | None = None) -> list[PoolEvent]:
    """Run the pool's chores on real readiness (not time) until a condition holds.

    It waits on the pool itself, as the supervisor does.
    """
    from multiprocessing.connection import wait

    events: list[PoolEvent] = []
    deadline = time.monotonic() + 20
    while not until(events):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        events += pool.collect(set(wait([pool], 0.05)))
        events += pool.enforce_deadlines()
        if respawn:
            pool.maintain()
        if check is not None:
            check(pool)
    return events


def ticket() -> Ticket:
    return Ticket(Message("m-1", "r-1", "{}", 1))


def idle(pool: Pool) -> Callable[[list[PoolEvent]], bool]:
    return lambda _: len(pool.idle()) == 1


def test_a_deadline_passes_when_the_clock_says_so(rig: tuple[Pool, FakeClock]) -> None:
    pool, clock = rig
    drive(pool, idle(pool), "an idle slot")
    assert pool.assign(pool.idle()[0], Job(1, "chaos", "chaos:hang"), "m-1", 30.0)
    assert pool.enforce_deadlines() == []  # 30 s have not passed on the fake clock
    clock.now += 29.999
    assert pool.enforce_deadlines() == []
    clock.now += 0.001
    (lost,) = pool.enforce_deadlines()
    assert isinstance(lost, JobLost) and lost.reason == "timeout" and lost.detail == "timed out after 30 s"
    assert pool.children[0].state is State.STOPPING
    assert pool.children[0].kill_at == clock.now + 1.0  # the master's own SIGKILL, after the keeper's


def run_one(pool: Pool, job: Job) -> JobFinished:
    """Run one job on an idle slot; its JobFinished."""
    drive(pool, idle(pool), "an idle slot")
    pool.assign(pool.idle()[0], job, "m-1", 30.0)
    events = drive(pool, lambda ev: any(isinstance(e, JobFinished) for e in ev), "the result")
    return next(e for e in events if isinstance(e, JobFinished))


def test_a_job_that_started_a_process_is_swept_before_the_slot_is_idle_again(rig: tuple[Pool, FakeClock]) -> None:
    pool, _ = rig
    finished = run_one(pool, Job(7, "chaos", "chaos:talk"))
    assert finished.result.status == "done" and finished.running.job.job_id == 7 and finished.result.sweep
    assert pool.children[0].state in (State.SWEEPING, State.IDLE)
    drive(pool, idle(pool), "the keeper's sweep")


def test_a_job_that_left_no_process_makes_its_slot_idle_at_once(rig: tuple[Pool, FakeClock]) -> None:
    pool, _ = rig
    for job_id in (1, 2):
        finished = run_one(pool, Job(job_id, "chaos", "chaos:echo:x"))
        assert finished.result.status == "done" and not finished.result.sweep
        assert pool.children[0].state is State.IDLE and pool.children[0].sweep_by is None


def test_a_process_started_behind_pythons_back_is_still_swept(rig: tuple[Pool, FakeClock]) -> None:
    pool, _ = rig
    finished = run_one(pool, Job(3, "chaos", "chaos:behind"))
    assert finished.result.status == "done" and finished.result.sweep
    sleeper = json.loads(finished.result.payload)["left"]
    drive(pool, idle(pool), "the keeper's sweep")
    with pytest.raises(ProcessLookupError):
        os.kill(sleeper, 0)  # killed and reaped by the keeper before the slot was idle


def test_a_keeper_that_never_answers_the_sweep_costs_its_slot(rig: tuple[Pool, FakeClock]) -> None:
    pool, clock = rig
    drive(pool, idle(pool), "an idle slot")
    child = pool.idle()[0]
    pool.assign(child, Job(2, "chaos", "chaos:talk"), "m-1", 30.0)  # it starts a process: a sweep follows
    # Read the result, but hold back the keeper's answer by not collecting its control fd.
    events: list[PoolEvent] = []
    deadline = time.monotonic() + 20
    while child.state is not State.SWEEPING and time.monotonic() < deadline:
        events += pool.collect({fd for fd in child.fds() if child.is_frame_fd(fd)})
    assert child.state is State.SWEEPING
    clock.now += 5.0  # SWEEP_TIMEOUT
    pool.enforce_deadlines()
    assert child.state is State.STOPPING


def test_respawns_back_off_on_the_injected_clock(rig: tuple[Pool, FakeClock]) -> None:
    pool, clock = rig
    drive(pool, idle(pool), "an idle slot")
    pool.children[0].signal_group(9)
    drive(pool, lambda _: not pool.children, "the dead slot to be reaped")
    # It died idle and young: the crash-loop backoff holds the respawn for 0.1 s of fake time.
    pool.maintain()
    assert pool.children == []
    assert pool.next_wakeup() == pytest.approx(clock.now + 0.1)
    clock.now += 0.1
    pool.maintain()
    assert len(pool.children) == 1


# -- the pool's index: what a turn costs, and that it stays right --------------


def consistent(pool: Pool) -> None:
    """The pool's answers equal what a scan of every slot would say."""
    children = pool.children
    assert {id(c) for c in pool.idle()} == {id(c) for c in children if c.state is State.IDLE}
    assert pool.busy_count() == sum(1 for c in children if c.state is State.BUSY)
    assert pool.live_count() == sum(1 for c in children if c.state not in (State.STOPPING, State.DEAD)
                                    and c.generation >= 0)
    assert sorted(r.job.job_id for r in pool.running()) == sorted(
        c.running.job.job_id for c in children if c.state is State.BUSY and c.running is not None)
    assert sorted(pool._index.fds()) == sorted(fd for c in children for fd in c.fds())
    times = [t for c in children if (t := c.next_wakeup()) is not None]
    wakeup = pool.next_wakeup()
    if pool.live_count() >= pool.size:  # no respawn pending: the slots' times alone
        assert wakeup == (min(times) if times else None)
    elif times:
        assert wakeup is not None and wakeup <= min(times)


def all_idle(pool: Pool, n: int) -> Callable[[list[PoolEvent]], bool]:
    return lambda _: len(pool.idle()) == n and len(pool.children) == n


def test_the_books_stay_right_through_crashes_timeouts_respawns_and_resizes() -> None:
    pool, clock = make_pool(3)
    try:
        drive(pool, all_idle(pool, 3), "three idle slots", check=consistent)
        hang, segv, echo = pool.idle()
        assert pool.assign(hang, Job(1, "chaos", "chaos:hang"), "m-1", 30.0)
        assert pool.assign(segv, Job(2, "chaos", "chaos:segv"), "m-1", 30.0)
        assert pool.assign(echo, Job(3, "chaos", "chaos:echo:x"), "m-1", 30.0)
        consistent(pool)
        events = drive(pool, lambda ev: {e.running.job.job_id for e in ev if isinstance(e, JobFinished | JobLost)}
                       == {2, 3}, "the crash and the result", check=consistent)
        assert any(isinstance(e, JobLost) and e.reason == "crashed" for e in events)
        clock.now += 30.0
        (lost,) = pool.enforce_deadlines()
        assert isinstance(lost, JobLost) and lost.reason == "timeout"
        consistent(pool)
        clock.now += 1.0  # past the master's own SIGKILL, should the keeper not be quick
        drive(pool, all_idle(pool, 3), "respawned slots", respawn=True, check=consistent)
        pool.resize(5)
        drive(pool, all_idle(pool, 5), "five idle slots", respawn=True, check=consistent)
        pool.resize(2)
        drive(pool, all_idle(pool, 2), "two slots", respawn=True, check=consistent)
        pool.idle()[0].signal_group(9)  # an idle slot dies young: the respawn waits for the backoff
        drive(pool, lambda _: len(pool.children) == 1, "the dead slot reaped", check=consistent)
        pool.maintain()
        assert len(pool.children) == 1 and pool.next_wakeup() == pytest.approx(clock.now + 0.1)
        consistent(pool)
        clock.now += 0.1
        drive(pool, all_idle(pool, 2), "the respawn after the backoff", respawn=True, check=consistent)
    finally:
        close_pool(pool)


def test_a_turn_asks_only_the_slots_with_something_to_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """Among idle slots, the wait, the chores and the counts touch no slot; a result touches its own."""
    pool, _ = make_pool(8)
    try:
        # Idle, and each keeper has named its runner: that line may come after the runner's Ready.
        drive(pool, lambda ev: all_idle(pool, 8)(ev) and all(c.pid != c.slot_pid for c in pool.children),
              "eight idle slots whose keepers have named their runners")
        asked: list[ChildProcess] = []
        for name in ("fds", "next_wakeup", "read_frames", "read_output", "read_control", "kill_if_due"):
            real = getattr(ChildProcess, name)

            def counted(self: ChildProcess, *args: Any, _real: Any = real) -> Any:
                asked.append(self)
                return _real(self, *args)

            monkeypatch.setattr(ChildProcess, name, counted)
        for _ in range(20):
            assert pool.collect(set()) == [] and pool.collect({pool}) == []
            assert pool.enforce_deadlines() == []
            pool.maintain()
            assert pool.next_wakeup() is None
            assert (len(pool.idle()), pool.busy_count(), pool.live_count(), pool.running()) == (8, 0, 8, [])
        assert asked == []
        worker = pool.idle()[3]
        pool.assign(worker, Job(5, "chaos", "chaos:echo:x"), "m-1", 30.0)
        drive(pool, lambda ev: any(isinstance(e, JobFinished) for e in ev), "the result")
        drive(pool, all_idle(pool, 8), "the sweep")
        assert asked and set(asked) == {worker}
    finally:
        close_pool(pool)


def test_what_the_fork_server_imported_is_frozen_out_of_the_gcs_reach(rig: tuple[Pool, FakeClock]) -> None:
    """A collection in a slot would write to every object it walks, and unshare its page."""
    pool, _ = rig
    finished = run_one(pool, Job(8, "chaos", "chaos:frozen"))
    assert json.loads(finished.result.payload)["frozen"] > 10_000  # the preloaded modules' objects
