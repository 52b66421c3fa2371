"""sesshu.daemon.pidfile: written only when asked, never stolen from a live process, removed only if ours."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sesshu.daemon.pidfile import Pidfile, PidfileError
from tests.harness.aws import poll


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sesshud.pid"


@pytest.fixture
def live_pid() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "600"])  # only a holder that outlives the test; killed below
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_nothing_is_written_until_write(path: Path) -> None:
    pidfile = Pidfile(str(path))
    pidfile.check()  # what sesshud does before start-up: it must leave no file behind
    assert not path.exists()
    pidfile.write()
    assert path.read_text() == f"{os.getpid()}\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file is left


def test_a_live_process_keeps_its_pidfile(path: Path, live_pid: int) -> None:
    path.write_text(f"{live_pid}\n")
    pidfile = Pidfile(str(path))
    with pytest.raises(PidfileError, match=rf"held by running process {live_pid}$"):
        pidfile.check()
    with pytest.raises(PidfileError):
        pidfile.write()
    assert path.read_text() == f"{live_pid}\n"
    pidfile.remove()  # never written by us: the live holder's file stays
    assert path.read_text() == f"{live_pid}\n"


def test_the_pid_of_a_dead_process_is_taken_over(path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: that pid no longer names a process
    path.write_text(f"{proc.pid}\n")
    Pidfile(str(path)).write()
    assert path.read_text() == f"{os.getpid()}\n"


def test_a_zombie_holds_nothing(path: Path) -> None:
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        # Not reaped yet: kill(pid, 0) still succeeds, but the daemon is dead.
        poll(lambda: Path(f"/proc/{child}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z",
             timeout=20, what="the child to become a zombie")
        path.write_text(f"{child}\n")
        Pidfile(str(path)).write()
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        os.waitpid(child, 0)


@pytest.mark.parametrize("content", ["", "\n", "0\n", "not a pid\n", "12abc", "4.5\n", "\x00\x01"])
def test_garbage_is_taken_over(path: Path, content: str) -> None:
    path.write_text(content)
    Pidfile(str(path)).write()
    assert path.read_text() == f"{os.getpid()}\n"


# A negative pid would make kill() signal a process group (-1: every process), and a huge one overflow.
@pytest.mark.parametrize("content", ["-1\n", "-4\n", "99999999999999999999\n", "4194305\n"])
def test_garbage_that_looks_like_a_number_is_taken_over(path: Path, content: str) -> None:
    path.write_text(content)
    Pidfile(str(path)).write()
    assert path.read_text() == f"{os.getpid()}\n"


def test_remove_deletes_only_a_pidfile_that_is_still_ours(path: Path, live_pid: int) -> None:
    pidfile = Pidfile(str(path))
    pidfile.write()
    pidfile.remove()
    assert not path.exists()
    pidfile.remove()  # twice, or after someone deleted it: no error

    pidfile.write()
    path.write_text(f"{live_pid}\n")  # another daemon took it over meanwhile
    pidfile.remove()
    assert path.read_text() == f"{live_pid}\n"


def test_remove_without_write_leaves_even_our_own_pid(path: Path) -> None:
    path.write_text(f"{os.getpid()}\n")
    pidfile = Pidfile(str(path))
    pidfile.check()  # our own pid (a re-exec) is no holder
    pidfile.remove()
    assert path.exists()
