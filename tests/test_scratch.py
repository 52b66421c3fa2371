"""Scratch directories: fresh for each job, emptied whatever the job did, removed at the end."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sesshu.worker import scratch


@pytest.fixture
def slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A slot, with the cwd, TMPDIR and tempfile's cache that entering a job changes put back after."""
    monkeypatch.chdir("/")
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("TMPDIR", "/tmp")
    return scratch.open_slot(str(tmp_path), keeper=4242)


def test_a_slot_is_private_and_named_after_its_keeper(tmp_path: Path, slot: str) -> None:
    assert os.path.dirname(slot) == str(tmp_path)
    assert os.path.basename(slot).startswith("slot-4242-")
    assert stat.S_IMODE(os.stat(slot).st_mode) == 0o700


def test_each_job_gets_a_fresh_empty_directory_as_cwd_and_tmpdir(slot: str) -> None:
    jobs = scratch.JobDirectory(slot)
    first = jobs.enter()
    assert os.getcwd() == first and os.environ["TMPDIR"] == first and tempfile.gettempdir() == first
    Path("left.txt").write_text("x")
    os.makedirs("deep/er")
    second = jobs.enter()
    assert second != first and not os.path.exists(first)
    assert os.listdir(second) == [] and os.listdir(slot) == [os.path.basename(second)]


def test_a_directory_left_exactly_as_made_is_kept_and_any_other_is_new(slot: str) -> None:
    jobs = scratch.JobDirectory(slot)
    first = jobs.enter()
    assert jobs.enter() == first  # untouched: it holds nothing of the job
    os.chdir("/")
    os.environ["TMPDIR"] = "/elsewhere"
    assert jobs.enter() == first and os.getcwd() == first and os.environ["TMPDIR"] == first
    touches: dict[str, Callable[[str], object]] = {
        "a file left": lambda job: Path(job, "f").write_text("x"),
        "a file beside it in the slot": lambda job: Path(slot, "beside").write_text("x"),
        "its mode changed": lambda job: os.chmod(job, 0o755),
        "an extended attribute": lambda job: os.setxattr(job, "user.note", b"x"),
        "removed": os.rmdir,
        "replaced by another of its name": lambda job: (os.rmdir(job), os.mkdir(job, 0o700)),
    }
    for what, touch in touches.items():
        current = jobs.enter()
        try:
            touch(current)
        except OSError as exc:
            if what == "an extended attribute" and exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                continue  # this file system keeps none
            raise
        after = jobs.enter()
        assert after != current and not os.path.exists(current), what
        assert os.listdir(after) == [] and os.listdir(slot) == [os.path.basename(after)], what
    # A file written and removed again leaves nothing to see, kept directory or not.
    current = jobs.enter()
    Path(current, "f").write_text("x")
    os.unlink(Path(current, "f"))
    assert os.listdir(jobs.enter()) == []


def test_a_job_that_locked_its_files_away_is_emptied_all_the_same(slot: str) -> None:
    job = Path(scratch.JobDirectory(slot).enter())
    locked = job / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "f").write_text("x")
    os.chmod(locked / "inner", 0)
    os.chmod(locked, 0)
    (Path(slot) / "beside-the-job").write_text("x")  # a job may write anywhere in its slot
    os.symlink("/etc/hostname", Path(slot) / "link")  # removed, never followed
    scratch.wipe(slot)
    assert os.listdir(slot) == []
    assert os.path.exists("/etc/hostname")


def test_a_slot_whose_own_rights_were_taken_is_emptied(slot: str) -> None:
    (Path(slot) / "f").write_text("x")
    os.chmod(slot, 0)
    scratch.wipe(slot)
    assert os.listdir(slot) == []


def test_remove_slots_removes_only_that_keepers(tmp_path: Path) -> None:
    mine = scratch.open_slot(str(tmp_path), keeper=7)
    other = scratch.open_slot(str(tmp_path), keeper=77)
    (Path(mine) / "sub").mkdir()
    (Path(mine) / "sub" / "f").write_text("x")
    scratch.remove_slots(str(tmp_path), 7, None)
    assert not os.path.exists(mine) and os.path.exists(other)


def test_remove_runs_as_the_worker_where_the_master_lacks_the_rights(tmp_path: Path) -> None:
    """The unit's master holds CAP_SETUID but cannot remove the worker account's files itself."""
    from sesshu.worker.sandbox import Identity

    if os.geteuid() != 0:
        pytest.skip("making files of another account takes root")
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, 0o1733)
    os.chmod(tmp_path, 0o755)
    worker = Identity("nobody", 65534, 65534, "/nonexistent")
    slot = root / "slot-1-x"
    slot.mkdir()
    (slot / "f").write_text("x")
    for path in (slot, slot / "f"):
        os.chown(path, worker.uid, worker.gid)
    os.chmod(slot, 0o700)
    pid = os.fork()
    if pid == 0:  # a master that is not root: the daemon account, CAP_SETUID and CAP_SETGID kept
        import ctypes

        ctypes.CDLL(None).prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS
        os.setresuid(1, 1, 0)  # "daemon", the saved uid still root so setuid works in the child
        scratch.remove(str(slot), worker)
        os._exit(0 if not os.path.exists(slot) else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_the_root_is_made_once_per_process_and_listable_by_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from sesshu.worker.sandbox import Identity

    monkeypatch.setattr(scratch, "_root", None)
    first = scratch.root(Identity("nobody", 65534, 65534, "/nonexistent"))
    try:
        assert scratch.root(None) == first
        assert stat.S_IMODE(os.stat(first).st_mode) == 0o1733
    finally:
        os.rmdir(first)
