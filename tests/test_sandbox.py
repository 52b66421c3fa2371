"""Containment primitives on their own: identities, environments, limits, and killing a whole tree."""

from __future__ import annotations

import errno
import os
import time

import pytest

from sesshu.worker import sandbox
from sesshu.worker.sandbox import SandboxError


def test_environment_is_exact_inside_and_restored_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with sandbox.environment({"PATH": "/bin"}):
        assert dict(os.environ) == {"PATH": "/bin"}
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "secret"


def test_worker_environment_takes_base_names_the_allow_list_and_home() -> None:
    source = {"PATH": "/x", "LANG": "C.UTF-8", "AWS_ACCESS_KEY_ID": "k", "HTTP_PROXY": "p", "OTHER": "o"}
    identity = sandbox.Identity("nobody", 65534, 65534, "/nonexistent")
    env = sandbox.worker_environment(("HTTP_PROXY",), identity, source)
    assert env == {"PATH": "/x", "LANG": "C.UTF-8", "HTTP_PROXY": "p", "HOME": "/nonexistent", "USER": "nobody",
                   "LOGNAME": "nobody"}
    assert sandbox.worker_environment((), None, {})["PATH"] == sandbox.DEFAULT_PATH


@pytest.mark.parametrize(("exc", "reason"), [
    (OSError(errno.EMFILE, "Too many open files"), "limit_open_files"),
    (OSError(errno.EFBIG, "File too large"), "limit_file_size"),
    (ValueError("nothing to do with limits"), None),
])
def test_limit_reason_names_the_limit(exc: BaseException, reason: str | None) -> None:
    assert sandbox.limit_reason(exc, started_process=True, processes_capped=True) == reason


def test_eagain_is_the_process_limit_only_after_the_job_started_a_process() -> None:
    again = BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    assert sandbox.limit_reason(again, started_process=True, processes_capped=True) == "limit_processes"
    # A non-blocking socket says EAGAIN too: without a process start, it is the plugin's own error.
    assert sandbox.limit_reason(again, started_process=False, processes_capped=True) is None


def test_a_thread_that_cannot_start_is_the_process_limit() -> None:
    cannot = RuntimeError("can't start new thread")
    assert sandbox.limit_reason(cannot, started_process=False, processes_capped=True) == "limit_processes"
    assert sandbox.limit_reason(RuntimeError("something else"), started_process=True, processes_capped=True) is None


def test_without_a_process_limit_eagain_names_no_limit() -> None:
    again = BlockingIOError(errno.EAGAIN, "again")
    assert sandbox.limit_reason(again, started_process=True, processes_capped=False) is None
    assert sandbox.limit_reason(RuntimeError("can't start new thread"), started_process=True,
                                processes_capped=False) is None


def test_limit_reason_looks_through_wrapping_exceptions() -> None:
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as inner:
            raise RuntimeError("the HTTP library wrapped it") from inner
    except RuntimeError as outer:
        assert sandbox.limit_reason(outer, started_process=False, processes_capped=False) == "limit_open_files"


def test_an_unknown_account_is_refused() -> None:
    with pytest.raises(SandboxError, match=r"^workers\.user: no account 'no-such-account-x'"):
        sandbox.resolve_identity("no-such-account-x")


def test_an_unknown_group_is_refused() -> None:
    with pytest.raises(SandboxError, match=r"^workers\.group: no group"):
        sandbox.resolve_identity("nobody", "no-such-group-x")


def test_kill_tree_reaches_a_grandchild_that_left_its_session() -> None:
    """In a forked subreaper, as a keeper is: it kills what a job left, however it left."""
    r, w = os.pipe()
    subreaper = os.fork()
    if subreaper == 0:  # the keeper's part
        os.close(r)
        sandbox.set_subreaper()
        middle = os.fork()
        if middle == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            os._exit(0)
        # Once the middle one has exited, its child is ours: no waiting on the clock.
        os.waitpid(middle, 0)
        before = sandbox.descendants(os.getpid())
        sandbox.kill_tree(os.getpid())
        after = sandbox.descendants(os.getpid())
        os.write(w, f"{len(before)} {len(after)}".encode())
        os._exit(0)
    os.close(w)
    got = os.read(r, 64).decode().split()
    os.close(r)
    os.waitpid(subreaper, 0)
    assert int(got[0]) >= 1 and got[1] == "0"


def test_close_fds_keeps_only_what_is_asked() -> None:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        extra = os.open(os.devnull, os.O_RDONLY)
        sandbox.close_fds({0, 1, 2, w})
        try:
            os.fstat(extra)
            still_open = True
        except OSError:
            still_open = False
        os.write(w, b"open" if still_open else b"closed")
        os._exit(0)
    os.close(w)
    got = os.read(r, 16)
    os.close(r)
    os.waitpid(child, 0)
    assert got == b"closed"
