"""Scratch directories: an empty working directory for every job, with nothing of the last one.

The master makes one *scratch root* per process (:func:`root`). Each runner,
once it is the worker account, makes its *slot directory* in it (named
after its keeper, so the keeper can find it), and Landlock lets it write
there and nowhere else. Every job starts in an empty job directory in the
slot, its current directory and ``TMPDIR``: a new one, unless the last job
left its own exactly as made (:class:`JobDirectory`). The check, and the
emptying of the slot, happen when the next job starts, after the keeper
swept every process the last job left, so nothing it started can write
into the new job's view. The runner removes its slot directory when it
leaves; the keeper removes it when the runner died without doing so, and
the master removes the whole root when it stops.

Where workers run as another account, the root is ``1733``, as ``/tmp`` is
but not listable: a worker can make its directory there, and can neither
list nor remove anyone else's.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import stat
import subprocess
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sesshu.worker.sandbox import Identity

_root: tuple[int, str] | None = None  # (the pid that made it, its path)


def root(identity: Identity | None) -> str:
    """This process's scratch root, made on first use and removed when the process exits."""
    global _root
    if _root is None or _root[0] != os.getpid():
        path = tempfile.mkdtemp(prefix="sesshu-scratch-")
        os.chmod(path, 0o1733 if identity is not None else 0o700)
        _root = (os.getpid(), path)
        atexit.register(_remove_root, os.getpid(), path, identity)
    return _root[1]


def _remove_root(pid: int, path: str, identity: Identity | None) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the hook
        remove(path, identity)


def slot_prefix(keeper: int) -> str:
    return f"slot-{keeper}-"


def open_slot(scratch_root: str, keeper: int) -> str:
    """Make this runner's slot directory (as the worker account), private to it."""
    return tempfile.mkdtemp(prefix=slot_prefix(keeper), dir=scratch_root)


class JobDirectory:
    """The directory a runner's jobs start in: made fresh, unless the last job left it exactly as made.

    Removing a directory and making another costs about 0.1 ms of CPU (the
    inode's release is charged to the chdir that drops it), which a job that
    never wrote to it need not pay: a directory that is still empty, has no
    extended attributes, and still has its own inode, mode and owner, with
    nothing else in the slot, holds nothing of the job. Any other is removed
    with everything in the slot, and the next job gets a new one.
    """

    def __init__(self, slot: str) -> None:
        self.slot = slot
        self._path: str | None = None
        self._made: os.stat_result | None = None

    def enter(self) -> str:
        """Make the job's directory its cwd and ``TMPDIR``, fresh or untouched; return its path."""
        if self._path is None or not self._as_made(self._path):
            wipe(self.slot)
            self._path = tempfile.mkdtemp(prefix="job-", dir=self.slot)
            self._made = os.lstat(self._path)
            os.chdir(self._path)
        elif os.getcwd() != self._path:
            os.chdir(self._path)
        os.environ["TMPDIR"] = self._path
        tempfile.tempdir = self._path  # tempfile caches its first answer: tell it this one
        return self._path

    def _as_made(self, path: str) -> bool:
        made = self._made
        try:
            now = os.lstat(path)
            return (made is not None and (now.st_ino, now.st_mode, now.st_uid, now.st_gid)
                    == (made.st_ino, made.st_mode, made.st_uid, made.st_gid)
                    and not os.listdir(path) and os.listdir(self.slot) == [os.path.basename(path)]
                    and not _xattrs(path))
        except OSError:
            return False


def _xattrs(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise


def wipe(directory: str) -> None:
    """Remove everything in ``directory``, whatever modes a job left on it; keep the directory."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    except PermissionError:
        os.chmod(directory, stat.S_IRWXU)  # the job took them away; fails where it is not ours
        entries = list(os.scandir(directory))
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, onerror=_allow_and_retry)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


def _allow_and_retry(func: object, path: str, _exc: object) -> None:
    """A job may have taken the rights away from directories of its own: give them back, level by level.

    Only what is short of rwx for its owner is changed, and the retry goes
    deeper only when something was, so a failure no mode explains ends here
    (what is left, remove() takes care of as the worker account).
    """
    changed = False
    try:
        for p in (os.path.dirname(path), path):
            mode = os.lstat(p).st_mode
            if stat.S_ISDIR(mode) and mode & stat.S_IRWXU != stat.S_IRWXU:
                os.chmod(p, stat.S_IRWXU)
                changed = True
        if stat.S_ISDIR(os.lstat(path).st_mode):
            if changed:
                shutil.rmtree(path, onerror=_allow_and_retry)
        else:
            os.unlink(path)
    except OSError:
        pass


def remove(path: str, identity: Identity | None) -> None:
    """Remove ``path`` and all below it, as the worker account where ours lacks the rights."""
    if not os.path.lexists(path):
        return
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            wipe(path)
            os.rmdir(path)
        else:
            os.unlink(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        if identity is None or os.geteuid() == identity.uid:
            return
    # A master holding only CAP_SETUID and CAP_SETGID cannot remove the worker
    # account's files; the worker account can. rm runs with no shell and no plugin code.
    subprocess.run(["rm", "-rf", "--", path], user=identity.uid, group=identity.gid, extra_groups=[],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False, timeout=60)
    try:
        os.rmdir(path)
    except OSError:
        pass


def remove_slots(scratch_root: str, keeper: int, identity: Identity | None) -> None:
    """The keeper's last duty: the slot directories of its runner, if the runner left any."""
    prefix = slot_prefix(keeper)
    try:
        names = [n for n in os.listdir(scratch_root) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        remove(os.path.join(scratch_root, name), identity)
