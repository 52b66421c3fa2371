"""Landlock on this kernel: each check runs in a forked child, since a restriction cannot be undone."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sesshu.worker import landlock
from sesshu.worker.landlock import Grant
from sesshu.worker.sandbox import drop_capabilities, set_no_new_privs
from tests.harness.forked import in_child

pytestmark = pytest.mark.skipif(landlock.abi() == 0, reason="this kernel has no Landlock")


def attempt(fn: Callable[[], object]) -> str:
    try:
        fn()
    except OSError as exc:
        return f"denied: {exc.strerror}"
    return "allowed"


def test_the_abi_is_a_version() -> None:
    assert landlock.abi() >= 1


def test_reads_writes_and_signals_are_confined(tmp_path: Path) -> None:
    readable, writable, outside = tmp_path / "r", tmp_path / "w", tmp_path / "o"
    for d in (readable, writable, outside):
        d.mkdir()
        (d / "f").write_text("x")
    sleeper = subprocess.Popen(["sleep", "60"])  # outside the domain: not ours to signal

    def body() -> dict[str, Any]:
        set_no_new_privs()
        held = landlock.restrict_self([Grant("/usr", landlock.READ), Grant("/lib", landlock.READ),
                                       Grant("/lib64", landlock.READ), Grant("/bin", landlock.READ),
                                       Grant(str(readable), landlock.READ),
                                       Grant(str(writable), (1 << 16) - 1),
                                       Grant(str(tmp_path / "missing"), landlock.READ)])
        child = subprocess.Popen(["sleep", "60"])  # started inside: ours to signal
        out = {
            "held": [held.files, held.signals],
            "read granted": attempt(lambda: (readable / "f").read_text()),
            "write read-only": attempt(lambda: (readable / "f").write_text("y")),
            "write granted": attempt(lambda: (writable / "new").write_text("y")),
            "read outside": attempt(lambda: (outside / "f").read_text()),
            "list outside": attempt(lambda: os.listdir(outside)),
            "signal outside": attempt(lambda: os.kill(sleeper.pid, signal.SIGSTOP)),
            "signal own child": attempt(lambda: child.kill()),
        }
        child.wait()
        return out

    try:
        got = in_child(body)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert got["read granted"] == "allowed"
    assert got["write granted"] == "allowed"
    assert got["write read-only"] == "denied: Permission denied"
    assert got["read outside"] == "denied: Permission denied"
    assert got["list outside"] == "denied: Permission denied"
    assert got["signal own child"] == "allowed"
    if landlock.abi() >= 6:
        assert got["held"] == [True, True]
        assert got["signal outside"] == "denied: Operation not permitted"
    else:
        assert got["held"] == [True, False]
    assert (outside / "f").read_text() == "x" and (readable / "f").read_text() == "x"


def test_a_grant_on_a_file_gives_only_file_rights(tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.write_text("x")
    (tmp_path / "two").write_text("x")

    def body() -> dict[str, str]:
        set_no_new_privs()
        landlock.restrict_self([Grant(str(one), (1 << 16) - 1)])  # directory rights are dropped, not refused
        return {"one": attempt(lambda: one.read_text()), "two": attempt(lambda: (tmp_path / "two").read_text())}

    assert in_child(body) == {"one": "allowed", "two": "denied: Permission denied"}


def test_without_no_new_privs_an_unprivileged_process_is_refused() -> None:
    def body() -> str:
        drop_capabilities()  # root's CAP_SYS_ADMIN would let it restrict itself anyway
        return attempt(lambda: landlock.restrict_self([]))

    assert in_child(body) == "denied: Operation not permitted"
