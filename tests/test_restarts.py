"""The pool's restart score and crash-loop backoff, on a fake clock: no slot, no process."""

from __future__ import annotations

import logging

import pytest

from sesshu.pool.restarts import MIN_UPTIME, Restarts
from tests.harness.clock import FakeClock


def test_every_restart_is_counted_by_reason_and_told_to_the_hook() -> None:
    told: list[str] = []
    restarts = Restarts(told.append)
    for reason in ("timeout", "crashed", "timeout", "memory"):
        restarts.count(reason)
    assert restarts.counts == {"timeout": 2, "crashed": 1, "memory": 1}
    assert told == ["timeout", "crashed", "timeout", "memory"]
    restarts.counts["timeout"] = 0  # a reader's copy: the score is not changed from outside
    assert restarts.counts["timeout"] == 2


def test_failed_starts_hold_the_next_start_back_doubling_to_thirty_seconds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sesshu.pool.restarts")
    clock, restarts = FakeClock(), Restarts()
    assert restarts.respawn_at <= clock()
    delays = []
    for _ in range(12):
        restarts.start_failed(clock())
        delays.append(restarts.respawn_at - clock())
        clock.now = restarts.respawn_at
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert delays[-1] == 30.0 and max(delays) == 30.0
    assert restarts.counts == {}  # a start that failed replaced no slot
    # One failure may be chance; from the second on, the operator is told.
    assert caplog.text.count("workers keep dying at start-up") == 11


def test_a_finished_job_ends_the_crash_loop() -> None:
    clock, restarts = FakeClock(), Restarts()
    for _ in range(3):
        restarts.start_failed(clock())
    restarts.proven()
    restarts.start_failed(clock())
    assert restarts.respawn_at == pytest.approx(clock() + 0.1)


def test_a_slot_that_dies_starting_is_a_boot_failure_and_holds_starts_back() -> None:
    clock, restarts = FakeClock(), Restarts()
    restarts.died_starting(clock())
    assert restarts.counts == {"boot_failed": 1}
    assert restarts.respawn_at == pytest.approx(clock() + 0.1)


def test_an_idle_slot_that_dies_young_is_part_of_a_crash_loop() -> None:
    clock, restarts = FakeClock(), Restarts()
    spawned = clock()
    clock.now += MIN_UPTIME - 0.001
    restarts.died_idle(clock(), spawned)
    assert restarts.counts == {"crashed": 1}
    assert restarts.respawn_at == pytest.approx(clock() + 0.1)


def test_an_idle_slot_that_lasted_is_a_crash_but_proves_the_plugins_work() -> None:
    clock, restarts = FakeClock(), Restarts()
    restarts.start_failed(clock())
    restarts.start_failed(clock())  # a crash loop so far: the next delay would be 0.4 s
    held = restarts.respawn_at
    spawned = clock()
    clock.now += MIN_UPTIME
    restarts.died_idle(clock(), spawned)
    assert restarts.counts == {"crashed": 1}
    assert restarts.respawn_at == held  # no new delay: its respawn may go at once
    restarts.start_failed(clock())
    assert restarts.respawn_at == pytest.approx(clock() + 0.1)  # the count started afresh
