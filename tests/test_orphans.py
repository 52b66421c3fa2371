"""Orphans: children the master did not have when the pool was built are killed and reaped.

The test process stands for the master: a child it spawns after building
:class:`Orphans` is what a plugin would have left behind, whatever its parent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

import pytest

from sesshu.pool.orphans import Orphans


def spawn_sleeper() -> int:
    return os.posix_spawnp("sleep", ["sleep", "600"], os.environ)


def zombie(pid: int) -> bool:
    """Dead and not yet reaped: the state field of /proc/PID/stat is Z."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except FileNotFoundError:
        return False
    return text[text.rindex(")") + 2] == "Z"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_later_child_is_killed_and_reaped_and_an_earlier_one_is_left(caplog: pytest.LogCaptureFixture) -> None:
    ours = spawn_sleeper()
    try:
        orphans = Orphans()
        stray = spawn_sleeper()
        assert orphans.sweep(final=True) == 1
        assert gone(stray)  # reaped too: a zombie would still answer signal 0
        assert not gone(ours)
        assert "killed 1 process(es) a plugin left behind" in caplog.text
        assert orphans.sweep(final=True) == 0
    finally:
        os.kill(ours, signal.SIGKILL)
        os.waitpid(ours, 0)


def test_a_turns_sweep_kills_without_waiting() -> None:
    orphans = Orphans()
    strays = [spawn_sleeper(), spawn_sleeper()]
    assert orphans.sweep() == 2
    for pid in strays:
        with contextlib.suppress(ChildProcessError):  # the sweep may have reaped it already
            os.waitpid(pid, 0)
        assert gone(pid)


def test_with_no_orphan_a_sweep_kills_nothing_and_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert Orphans().sweep() == 0 and Orphans().sweep(final=True) == 0
    assert caplog.text == ""


def test_an_orphan_killed_but_not_yet_reaped_is_counted_once(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The kill does not wait: the next turn's sweep still sees the dying child, and must not count it again."""
    orphans = Orphans()
    stray = spawn_sleeper()
    real_waitpid = os.waitpid
    monkeypatch.setattr(os, "waitpid", lambda pid, flags: (0, 0))  # as if it had not died yet
    assert orphans.sweep() == 1
    monkeypatch.setattr(os, "waitpid", real_waitpid)
    assert orphans.sweep() == 0  # still our child, dying or a zombie: not counted again
    deadline = time.monotonic() + 30
    while not (zombie(stray) or gone(stray)):  # SIGKILL lands asynchronously; that sweep may have reaped it
        assert time.monotonic() < deadline, "the killed orphan never died"
        time.sleep(0.01)
    assert orphans.sweep() == 0  # reaped by now, and still not counted
    assert gone(stray)
    assert caplog.text.count("killed 1 process(es) a plugin left behind") == 1
    assert orphans.sweep() == 0


def test_a_dying_pid_that_is_no_longer_our_child_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were it remembered, a new orphan that got the same pid would be spared by every turn's sweep."""
    orphans = Orphans()
    stray = spawn_sleeper()
    real_waitpid = os.waitpid
    monkeypatch.setattr(os, "waitpid", lambda pid, flags: (0, 0))  # the kill's reap comes later
    assert orphans.sweep() == 1
    monkeypatch.setattr(os, "waitpid", real_waitpid)
    os.waitpid(stray, 0)  # reaped elsewhere: the pid is free for the kernel to give again
    assert orphans.sweep() == 0
    assert stray not in orphans._dying
