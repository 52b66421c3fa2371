"""Whether a job may have left a process behind: each way a process can start, in a forked child.

Each case runs in a child of the test process (``tests.harness.forked``),
whose children and resource usage are its own, as a runner's are.
"""

from __future__ import annotations

import multiprocessing.util
import os
import signal
import subprocess

from sesshu.worker.leftovers import Leftovers, ProcessStarts, has_children
from tests.harness.forked import in_child


def test_process_starts_sees_fork_subprocess_and_spawn() -> None:
    # Audit hooks cannot be removed, so this one stays in the test process: it only sets a flag.
    starts = ProcessStarts()
    starts.install()
    assert not starts.seen
    subprocess.run(["true"], check=True)
    assert starts.seen
    starts.seen = False
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert starts.seen
    starts.seen = False
    os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)
    assert starts.seen
    starts.seen = False
    open(os.devnull).close()  # an audited event that starts nothing
    assert not starts.seen


def _jobs(*jobs: object) -> list[bool]:
    """Run each job (a callable) as a runner would, in a fresh child; whether each may have left a process."""
    def body() -> list[bool]:
        starts = ProcessStarts()
        starts.install()
        leftovers = Leftovers(starts)
        out = []
        for job in jobs:
            leftovers.begin()
            job()  # type: ignore[operator]
            out.append(leftovers.possible())
        return out
    return in_child(body)  # type: ignore[no-any-return]


def nothing() -> None:
    sum(range(1000))


def through_subprocess() -> None:
    subprocess.run(["true"], check=True)


def unaudited_and_reaped() -> None:
    # multiprocessing's spawn path raises no audit event; the child is reaped before the job ends.
    pid = multiprocessing.util.spawnv_passfds(b"/bin/true", ["true"], [])
    os.waitpid(pid, 0)


def unaudited_and_running() -> None:
    multiprocessing.util.spawnv_passfds(b"/bin/sleep", ["sleep", "60"], [])


def ignoring_sigchld() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def test_a_job_that_starts_nothing_leaves_nothing_before_or_after_one_that_did() -> None:
    assert _jobs(nothing, through_subprocess, nothing) == [False, True, False]


def test_a_process_started_where_no_audit_hook_looks_is_seen_reaped_or_running() -> None:
    assert _jobs(unaudited_and_reaped, nothing) == [True, False]
    assert _jobs(nothing, unaudited_and_running, nothing) == [False, True, True]  # it still runs


def test_ignored_sigchld_means_every_job_is_swept() -> None:
    assert _jobs(ignoring_sigchld, nothing) == [True, True]


def test_has_children_sees_a_zombie_and_reaps_it_not() -> None:
    def body() -> list[bool]:
        before = has_children()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # it is a zombie now
        zombie = has_children()
        os.waitpid(pid, 0)  # still there to be reaped: has_children took nothing
        return [before, zombie, has_children()]
    assert in_child(body) == [False, True, False]
