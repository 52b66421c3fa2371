"""A system-call filter for the runner, through libseccomp (Debian's ``libseccomp2``).

The filter allows everything but the kernel's largest attack surface, which
no data-collection plugin needs: namespaces, mounts, BPF, keyrings, perf,
userfaultfd, io_uring, ptrace and cross-process memory access, kexec, module
loading, personality changes. Those fail with ``EPERM``, an error a plugin
can handle, instead of killing it. libseccomp resolves the names for this
architecture and makes the filter refuse calls made through another ABI
(x32, or 32-bit calls on x86-64), where the numbers differ.

``clone`` stays open for threads and ``fork``, except with a flag that
makes a namespace. ``clone3`` passes its flags in memory, where a filter
cannot look, so it answers ``ENOSYS``: the C library then falls back to
``clone``, as it does on kernels older than 5.3.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

DENIED = (
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "bpf", "keyctl", "add_key", "request_key",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "ptrace",
    "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "reboot",
    "acct", "quotactl", "syslog",
)
# CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET
_CLONE_NAMESPACES = (0x80, 0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_PERSONALITY_QUERY = 0xFFFFFFFF

_ACT_ALLOW = 0x7FFF0000
_CMP_NE = 1
_CMP_MASKED_EQ = 7


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class SeccompUnavailable(Exception):
    """libseccomp is missing, or the kernel has no seccomp filters."""


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise SeccompUnavailable("libseccomp is not installed (Debian: libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    return lib


def available() -> str | None:
    """None when a filter can be loaded here; otherwise why not."""
    try:
        _library()
    except SeccompUnavailable as exc:
        return str(exc)
    try:
        with open("/proc/self/status") as f:
            if not any(line.startswith("Seccomp:") for line in f):
                return "the kernel has no seccomp"
    except OSError:
        pass  # no /proc to ask: loading will tell
    return None


def load_filter() -> None:
    """Install the filter in this thread's process; it holds for every process started from here."""
    lib = _library()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        eperm = _act_errno(errno.EPERM)
        for name in DENIED:
            _rule(lib, ctx, eperm, name)
        _rule(lib, ctx, _act_errno(errno.ENOSYS), "clone3")
        for flag in _CLONE_NAMESPACES:
            _rule(lib, ctx, eperm, "clone", _ArgCmp(0, _CMP_MASKED_EQ, flag, flag))
        _rule(lib, ctx, eperm, "personality", _ArgCmp(0, _CMP_NE, _PERSONALITY_QUERY, 0))
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {errno.errorcode.get(-rc, rc)}")
    finally:
        lib.seccomp_release(ctx)


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *conditions: _ArgCmp) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        return  # not a system call on this architecture (or unknown to this libseccomp)
    array = (_ArgCmp * len(conditions))(*conditions) if conditions else None
    rc = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
    if rc < 0:
        raise OSError(-rc, f"seccomp_rule_add({name}): {errno.errorcode.get(-rc, rc)}")
