"""The pool with real slots and a fake clock: deadlines, stalled sweeps and respawn backoff in milliseconds.

Time is injected: the pool never reads the real clock, so a 30 s deadline
passes when the test says so, while the slots themselves are real processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sesshu.bus import Message
from sesshu.children import State
from sesshu.config import from_mapping
from sesshu.daemon import plugin_specs, pool_settings
from sesshu.events import JobFinished, JobLost, PoolEvent
from sesshu.pool import Pool
from sesshu.protocol import Job
from sesshu.spawn import forkserver_context
from sesshu.ticket import Ticket

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig() -> Iterator[tuple[Pool, FakeClock]]:
    config = from_mapping({"plugin": ["chaos"], "plugin_path": [str(TEST_PLUGINS)], "workers": {"count": 1},
                           "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    clock = FakeClock()
    pool = Pool(forkserver_context(), pool_settings(config, plugin_specs(config)), clock)
    pool.maintain()
    yield pool, clock
    pool.kill_all()
    drive(pool, lambda _: not pool.children, "every slot to be gone")


def drive(pool: Pool, until: Callable[[list[PoolEvent]], Any], what: str) -> list[PoolEvent]:
    """Run the pool's chores on real readiness (not time) until a condition holds."""
    from multiprocessing.connection import wait

    events: list[PoolEvent] = []
    deadline = time.monotonic() + 20
    while not until(events):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        ready = {fd for fd in wait(pool.waitables(), 0.05) if isinstance(fd, int)}
        events += pool.collect(ready)
        events += pool.enforce_deadlines()
    return events


def ticket() -> Ticket:
    return Ticket(Message("m-1", "r-1", "{}", 1))


def idle(pool: Pool) -> Callable[[list[PoolEvent]], bool]:
    return lambda _: len(pool.idle()) == 1


def test_a_deadline_passes_when_the_clock_says_so(rig: tuple[Pool, FakeClock]) -> None:
    pool, clock = rig
    drive(pool, idle(pool), "an idle slot")
    assert pool.assign(pool.idle()[0], Job(1, "chaos", "chaos:hang"), ticket(), 30.0)
    assert pool.enforce_deadlines() == []  # 30 s have not passed on the fake clock
    clock.now += 29.999
    assert pool.enforce_deadlines() == []
    clock.now += 0.001
    (lost,) = pool.enforce_deadlines()
    assert isinstance(lost, JobLost) and lost.reason == "timeout" and lost.detail == "timed out after 30 s"
    assert pool.children[0].state is State.STOPPING
    assert pool.children[0].kill_at == clock.now + 1.0  # the master's own SIGKILL, after the keeper's


def test_a_finished_job_is_swept_before_the_slot_is_idle_again(rig: tuple[Pool, FakeClock]) -> None:
    pool, _ = rig
    drive(pool, idle(pool), "an idle slot")
    pool.assign(pool.idle()[0], Job(7, "chaos", "chaos:echo:x"), ticket(), 30.0)
    events = drive(pool, lambda ev: any(isinstance(e, JobFinished) for e in ev), "the result")
    finished = next(e for e in events if isinstance(e, JobFinished))
    assert finished.result.status == "done" and finished.running.job.job_id == 7
    assert pool.children[0].state in (State.SWEEPING, State.IDLE)
    drive(pool, idle(pool), "the keeper's sweep")


def test_a_keeper_that_never_answers_the_sweep_costs_its_slot(rig: tuple[Pool, FakeClock]) -> None:
    pool, clock = rig
    drive(pool, idle(pool), "an idle slot")
    child = pool.idle()[0]
    pool.assign(child, Job(2, "chaos", "chaos:echo:y"), ticket(), 30.0)
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
