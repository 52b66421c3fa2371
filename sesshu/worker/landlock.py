"""Landlock: the kernel's unprivileged file view and scoping, through its three system calls.

A process that restricts itself keeps only the file access its rules grant,
below the directories (or to the files) they name, for itself and every
process it starts; the rules cannot be widened later. From ABI 6 the same
domain also scopes signals and abstract Unix sockets: a process in it can
signal only processes of its own domain (its descendants), never the
keeper, the master or a sibling runner.

The numbers below are the kernel's UAPI (``linux/landlock.h``); the system
call numbers are the same on every architecture the kernel has.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# Access rights on files, and the first ABI that knows each.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_FS_ALL = (1 << 16) - 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

READ = EXECUTE | READ_FILE | READ_DIR
# What may be granted on a file, as opposed to a directory.
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64),
                ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def abi() -> int:
    """The Landlock ABI this kernel offers: 0 where it has none (too old, or not enabled at boot)."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
            return 0
        raise


@dataclass(frozen=True)
class Grant:
    """Rights below one path (a directory, or a single file)."""

    path: str
    access: int


@dataclass(frozen=True)
class Restricted:
    """What :func:`restrict_self` put in force."""

    abi: int
    files: bool
    signals: bool


def restrict_self(grants: list[Grant]) -> Restricted:
    """Confine this process (and what it starts) to ``grants``; scope its signals where the ABI can.

    A grant whose path does not exist, or that this process cannot reach,
    is skipped: a host without ``/lib64`` or ``/etc/gai.conf`` needs no rule
    for it, and a rule cannot open what the account's own rights close. Needs no_new_privs (or
    CAP_SYS_ADMIN). Returns what held; raises OSError when the kernel has
    Landlock but refused the ruleset.
    """
    version = abi()
    if version == 0:
        return Restricted(0, False, False)
    handled = _FS_BY_ABI.get(version, _FS_ALL)
    scoped = (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if version >= 6 else 0
    attr = _RulesetAttr(handled, 0, scoped)
    size = ctypes.sizeof(_RulesetAttr) if version >= 6 else 16  # older kernels refuse fields they lack
    ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for grant in grants:
            _add(ruleset, grant, handled)
        _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return Restricted(version, True, bool(scoped & SCOPE_SIGNAL))


def _add(ruleset: int, grant: Grant, handled: int) -> None:
    try:
        fd = os.open(grant.path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    try:
        access = grant.access & handled
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_RIGHTS
        if access:
            rule = _PathBeneathAttr(access, fd)
            _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_uint32(_RULE_PATH_BENEATH),
                     ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)
