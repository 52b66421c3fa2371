"""sesshu.daemon.signals: handlers only record, the wake-up pipe wakes the loop, drain hands over what came."""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Iterator

import pytest

from sesshu.daemon.signals import HANDLED, SignalRecorder
from tests.harness.aws import poll

DEADLINE = 20.0  # generous: a recorded signal shows up at once


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


@pytest.fixture
def recorder() -> Iterator[SignalRecorder]:
    # uninstall() leaves SIG_DFL behind, not what pytest had: put those back ourselves.
    saved = {name: signal.getsignal(getattr(signal, name)) for name in HANDLED}
    rec = SignalRecorder()
    rec.install()
    try:
        yield rec
    finally:
        rec.uninstall()
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)
        rec.close()


def send(sig: int) -> None:
    # Aimed at this thread: a process-wide signal could land on another test's thread.
    signal.pthread_kill(threading.get_ident(), sig)


def test_a_signal_is_recorded_and_wakes_the_pipe(recorder: SignalRecorder) -> None:
    assert not readable(recorder.wake_r)
    send(signal.SIGHUP)
    poll(lambda: recorder.pending, DEADLINE, what="the SIGHUP to be recorded")
    assert readable(recorder.wake_r)
    # Not told the pipe is readable: it hands over the signals and leaves the pipe alone.
    assert recorder.drain(readable=False) == [signal.SIGHUP]
    assert readable(recorder.wake_r)
    assert recorder.drain() == []
    assert not readable(recorder.wake_r)


def test_signals_of_one_kind_that_arrive_together_count_once(recorder: SignalRecorder) -> None:
    both = {signal.SIGHUP, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, both)
    try:
        for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR1, signal.SIGHUP):
            send(sig)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
    poll(lambda: set(recorder.pending) == both, DEADLINE, what="both signals to be recorded")
    assert sorted(recorder.drain()) == sorted(both)


def test_drain_returns_what_came_since_the_last_call_in_order(recorder: SignalRecorder) -> None:
    # Delivered one after the other, each is its own event: the recorder merges nothing.
    sent = [signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1]
    for count, sig in enumerate(sent, 1):
        send(sig)
        poll(lambda count=count: len(recorder.pending) == count, DEADLINE, what=f"signal {sig} to be recorded")
    assert recorder.drain() == sent
    assert recorder.drain() == []


def test_wake_from_another_thread_needs_no_signal(recorder: SignalRecorder) -> None:
    waker = threading.Thread(target=recorder.wake)
    waker.start()
    waker.join()
    assert readable(recorder.wake_r)
    assert recorder.drain() == []
    assert not readable(recorder.wake_r)


def test_wake_never_raises_on_a_full_or_closed_pipe() -> None:
    rec = SignalRecorder()
    try:
        while True:
            os.write(rec.wake_w, b"\0" * 4096)
    except BlockingIOError:
        pass
    rec.wake()  # a wake-up is already pending: nothing to add
    rec.close()
    rec.wake()  # a lane finishing after the loop ended


def test_install_and_uninstall() -> None:
    saved = {name: signal.getsignal(getattr(signal, name)) for name in HANDLED}
    previous = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous)
    rec = SignalRecorder()
    try:
        rec.install()
        assert all(signal.getsignal(getattr(signal, name)) == rec._record for name in HANDLED)
        rec.uninstall()
        assert all(signal.getsignal(getattr(signal, name)) == signal.SIG_DFL for name in HANDLED)
        # The interpreter's wake-up fd is back to what it was before install().
        assert signal.set_wakeup_fd(previous) == previous
    finally:
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)
        rec.close()
