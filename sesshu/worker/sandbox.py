"""Containment primitives: what a worker may hold, be, and leave behind.

Plugins are untrusted. nginx, postfix and OpenSSH keep a privileged master and
unprivileged workers; nsjail and bubblewrap add rlimits. This module holds
the operating-system calls that do the same for Sesshu, so that the code
that decides *when* to contain (``sesshu.worker.keeper``, ``sesshu.worker.runner``) reads as
policy, and tests can call each primitive on its own.
"""

from __future__ import annotations

import ctypes
import errno
import grp
import os
import pwd
import resource
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# What a worker's environment always carries when the master has it: the
# search paths, the locale and the time zone. Nothing else, unless allowed.
# PYTHONPATH must reach the fork server, which imports Sesshu itself from it:
# multiprocessing does not hand the fork server the master's sys.path.
BASE_ENVIRONMENT = ("PATH", "PYTHONPATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC",
                    "LC_TIME", "LC_COLLATE", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxError(Exception):
    """A containment step that must not be skipped failed."""


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def set_dumpable(on: bool) -> None:
    """Non-dumpable: no process of the same account may ptrace us, read our memory or copy our fds."""
    _prctl(_PR_SET_DUMPABLE, 1 if on else 0)


def set_no_new_privs() -> None:
    """No set-uid binary or file capability can give a worker more rights than it has."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def set_subreaper() -> None:
    """Orphaned descendants are re-parented to us instead of init, so we can still kill them."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def drop_capabilities() -> None:
    """Give up every capability: ambient, effective, permitted and inheritable.

    A uid switch clears them only when it leaves uid 0; a master started
    unprivileged with CAP_SETUID, CAP_SETGID and CAP_KILL (the systemd unit)
    would otherwise hand them to its workers.
    """
    _prctl2(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two zeroed {effective, permitted, inheritable} sets
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _prctl2(option: int, arg: int) -> None:
    try:
        _prctl(option, arg)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a kernel without ambient capabilities has none to clear
            raise


def die_with_parent(sig: int) -> None:
    """Receive ``sig`` when the parent dies (cleared by a uid change: call it after dropping)."""
    _prctl(_PR_SET_PDEATHSIG, sig)


@dataclass(frozen=True)
class Identity:
    """The account workers switch to: resolved once, in the master."""

    user: str
    uid: int
    gid: int
    home: str


def resolve_identity(user: str, group: str | None = None) -> Identity:
    """Look up ``workers.user`` (and ``workers.group``); refuse what cannot contain anything."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SandboxError(f"workers.user: no account {user!r} on this host") from None
    gid = entry.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise SandboxError(f"workers.group: no group {group!r} on this host") from None
    if entry.pw_uid == os.geteuid():
        raise SandboxError(f"workers.user: {user!r} is the daemon's own account; plugins would "
                           "run with its rights (use a separate, unprivileged account)")
    if entry.pw_uid == 0:
        raise SandboxError("workers.user: root cannot contain anything; use an unprivileged account")
    return Identity(user, entry.pw_uid, gid, entry.pw_dir or "/")


def drop_privileges(identity: Identity) -> None:
    """Supplementary groups, then gid, then uid: each step needs the rights the next one drops."""
    os.setgroups([])
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    drop_capabilities()
    # Prove it took: a process that can get root back has not dropped anything.
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise SandboxError("the uid switch did not hold: the worker could become root again")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker (``workers.limits`` and ``workers.memory_limit``)."""

    processes: int | None = 512  # RLIMIT_NPROC: counted per account, across all its workers
    open_files: int | None = 1024
    file_size_mib: int | None = 1024
    memory_mib: int | None = None  # RLIMIT_AS

    def apply(self) -> None:
        pairs = [(resource.RLIMIT_CORE, 0),
                 (resource.RLIMIT_NPROC, self.processes),
                 (resource.RLIMIT_NOFILE, self.open_files),
                 (resource.RLIMIT_FSIZE, None if self.file_size_mib is None else self.file_size_mib << 20),
                 (resource.RLIMIT_AS, None if self.memory_mib is None else self.memory_mib << 20)]
        for which, value in pairs:
            if value is not None:
                _lower(which, value)


def _lower(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def limit_reason(exc: BaseException, started_process: bool, processes_capped: bool) -> str | None:
    """Which resource limit an exception (or one it wraps) ran into, if any.

    The kernel says only EAGAIN when a fork meets RLIMIT_NPROC, and Python
    only "can't start new thread" when a thread does. Counting processes
    afterwards cannot tell, since what the job started may be gone by then;
    whether the job tried to start a process (``started_process``, from
    :class:`sesshu.worker.leftovers.ProcessStarts`) can. Without a process limit
    (``processes_capped`` false), neither names one.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError):
            if e.errno in (errno.EMFILE, errno.ENFILE):
                return "limit_open_files"
            if e.errno == errno.EFBIG:
                return "limit_file_size"
            if e.errno == errno.EAGAIN and started_process and processes_capped:
                return "limit_processes"
        elif isinstance(e, RuntimeError) and processes_capped and str(e) == "can't start new thread":
            return "limit_processes"
        stack += [e.__cause__, e.__context__]
    return None


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker applies to itself before any plugin code runs, imports included."""

    identity: Identity | None = None
    environment: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    must_read: tuple[tuple[str, str], ...] = ()  # (path, what it is), checked as the worker account
    scratch_root: str | None = None  # where each runner makes its slot's scratch directory
    read: tuple[str, ...] = ()  # more to read than the system's and the interpreter's files (Landlock)
    write: tuple[str, ...] = ()  # more to write than the scratch directory (Landlock)
    require_containment: bool = False  # no Landlock or no seccomp is then a boot failure
    network_allow: tuple[str, ...] = ()  # ranges the address guard lets through (workers.network.allow)


def worker_environment(allow: tuple[str, ...], identity: Identity | None,
                       source: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a worker: the base names, the allow-list, and HOME."""
    src = dict(os.environ if source is None else source)
    env = {k: src[k] for k in (*BASE_ENVIRONMENT, *allow) if k in src}
    env.setdefault("PATH", DEFAULT_PATH)
    if identity is not None:
        env.update(HOME=identity.home, USER=identity.user, LOGNAME=identity.user)
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Run the body with exactly ``env`` as the process environment, then put it back.

    The fork server is exec'd inside such a body, so its initial environment
    block (``/proc/PID/environ``), which every worker inherits, never holds
    the master's credentials.
    """
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def unreadable(must_read: tuple[tuple[str, str], ...]) -> str | None:
    """The first of ``must_read`` this process cannot read, described; None when all can be."""
    for path, what in must_read:
        if not os.access(path, os.R_OK):
            return f"cannot read {path} ({what})"
    return None


def close_fds(keep: set[int]) -> None:
    """Close every fd but ``keep``: a worker holds only what it was given."""
    low = 0
    for fd in sorted(keep):
        _close_range(low, fd)
        low = fd + 1
    _close_range(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _close_range(low: int, high: int) -> None:
    # os.closerange(n, n) is not a no-op where it becomes close_range(2): it closes from n to the end.
    if low < high:
        os.closerange(low, high)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, across all its threads; empty once it is gone."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return out


def descendants(root: int, exclude: int | None = None) -> list[int]:
    """Every process below ``root``; ``exclude`` itself is left out, but not what lies below it."""
    found: list[int] = []
    seen: set[int] = set()
    todo = children_of(root)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        if pid != exclude:
            found.append(pid)
        todo += children_of(pid)
    return found


def kill_tree(root: int, exclude: int | None = None, rounds: int = 50) -> list[tuple[int, int]]:
    """SIGKILL every descendant of ``root`` but ``exclude``, and reap what we inherit.

    Called by ``root`` itself, a subreaper: every orphan below it has become
    its child, and reaping them keeps the next pass from counting zombies.
    Processes may fork while we look, so repeat until a pass finds none.
    Returns the (pid, wait status) of every child reaped on the way.
    """
    reaped: list[tuple[int, int]] = []
    for _ in range(rounds):
        victims = descendants(root, exclude)
        if not victims:
            break
        for victim in victims:
            try:
                os.kill(victim, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.001)  # SIGKILL takes effect asynchronously: give the dying a moment to become reapable
        reaped += reap_all()
    return reaped


def reap_all() -> list[tuple[int, int]]:
    """Collect every exited child without blocking: (pid, wait status)."""
    out: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, status))
