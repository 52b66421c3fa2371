"""Pacing of sender calls: backoff after transient failures, linger for a fuller batch, on a fake clock."""

from __future__ import annotations

from sesshu.bus import sending
from sesshu.bus.pacing import RETRY_CAP, RETRY_FIRST, RETRY_JITTER, VISIBILITY_RETRY_CAP, Pacing
from tests.harness.clock import FakeClock


def test_a_kind_that_keeps_failing_waits_longer_each_time_up_to_its_cap_and_goes_at_once_after_a_success() -> None:
    clock = FakeClock()
    pacing = Pacing(clock)
    waits = []
    for _ in range(12):
        pacing.flying(sending.PUBLISH)
        pacing.landed(sending.PUBLISH, failed_transiently=True)
        [until] = pacing.pauses_ending([sending.PUBLISH])
        waits.append(until - clock.now)
    assert RETRY_FIRST * (1 - RETRY_JITTER) <= waits[0] <= RETRY_FIRST
    assert all(RETRY_CAP * (1 - RETRY_JITTER) <= w <= RETRY_CAP for w in waits[-3:])
    assert pacing.paused(sending.PUBLISH) and pacing.backing_off()
    assert not pacing.paused(sending.DELETE)
    pacing.flying(sending.PUBLISH)
    pacing.landed(sending.PUBLISH, failed_transiently=False)
    assert not pacing.paused(sending.PUBLISH) and not pacing.backing_off()
    pacing.flying(sending.PUBLISH)
    pacing.landed(sending.PUBLISH, failed_transiently=True)
    [until] = pacing.pauses_ending([sending.PUBLISH])
    assert until - clock.now <= RETRY_FIRST  # the failures in a row began again


def test_visibility_changes_back_off_two_seconds_at_most_and_are_not_a_sign_of_backing_off() -> None:
    clock = FakeClock()
    pacing = Pacing(clock)
    for _ in range(10):
        pacing.flying(sending.VISIBILITY)
        pacing.landed(sending.VISIBILITY, failed_transiently=True)
    [until] = pacing.pauses_ending([sending.VISIBILITY])
    assert until - clock.now <= VISIBILITY_RETRY_CAP
    assert not pacing.backing_off()


def test_a_pause_ends_on_the_first_turn_after_it_and_a_stop_ends_every_pause() -> None:
    clock = FakeClock()
    pacing = Pacing(clock)
    for kind in (sending.PUBLISH, sending.DELETE):
        pacing.flying(kind)
        pacing.landed(kind, failed_transiently=True)
    [publish_until] = pacing.pauses_ending([sending.PUBLISH])
    pacing.turn(publish_until - 0.001, stopping=False)
    assert pacing.paused(sending.PUBLISH)
    pacing.turn(RETRY_FIRST + clock.now, stopping=False)
    assert not pacing.paused(sending.PUBLISH) and not pacing.paused(sending.DELETE)
    pacing.flying(sending.UPLOAD)
    pacing.landed(sending.UPLOAD, failed_transiently=True)
    pacing.turn(clock.now, stopping=True)
    assert not pacing.paused(sending.UPLOAD)


def test_a_call_back_while_stopping_changes_no_pause() -> None:
    pacing = Pacing(FakeClock())
    pacing.flying(sending.DELETE)
    assert pacing.calls_in_flight == 1
    pacing.landed(sending.DELETE, failed_transiently=None)
    assert pacing.calls_in_flight == 0 and not pacing.paused(sending.DELETE)


def test_a_partial_batch_waits_while_its_kind_is_in_flight_or_more_is_coming_up_to_its_linger() -> None:
    pacing = Pacing(FakeClock())
    due = pacing.due
    assert due(sending.PUBLISH, since=100.0, wait=0.05, full=True, now=100.0, more_coming=True)
    assert not due(sending.PUBLISH, since=100.0, wait=0.05, full=False, now=100.01, more_coming=True)
    assert due(sending.PUBLISH, since=100.0, wait=0.05, full=False, now=100.05, more_coming=True)
    assert due(sending.PUBLISH, since=100.0, wait=0.05, full=False, now=100.0, more_coming=False)
    pacing.flying(sending.PUBLISH)
    assert not due(sending.PUBLISH, since=100.0, wait=0.05, full=False, now=200.0, more_coming=False)
    assert due(sending.PUBLISH, since=100.0, wait=0.05, full=True, now=100.0, more_coming=True)
    assert due(sending.DELETE, since=100.0, wait=1.0, full=False, now=100.0, more_coming=False)
