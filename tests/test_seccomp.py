"""The system-call filter, loaded in forked children: what it refuses, and what still works."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading

import pytest

from sesshu.worker import seccomp
from sesshu.worker.sandbox import set_no_new_privs
from tests.harness.forked import in_child

pytestmark = pytest.mark.skipif(seccomp.available() is not None, reason=f"no seccomp here: {seccomp.available()}")

_libc = ctypes.CDLL(None, use_errno=True)


def call(name: str, *args: int) -> str:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    number = lib.seccomp_syscall_resolve_name(name.encode())
    assert number >= 0, name
    rc = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]


def test_the_refused_calls_fail_with_eperm_and_the_rest_works() -> None:
    def body() -> dict[str, object]:
        set_no_new_privs()
        seccomp.load_filter()
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        pid = os.fork()
        if pid == 0:
            os._exit(5)
        forked = os.waitpid(pid, 0)[1] >> 8
        return {
            "unshare(CLONE_NEWUSER)": call("unshare", 0x10000000),
            "bpf": call("bpf", 0, 0, 0),
            "io_uring_setup": call("io_uring_setup", 1, 0),
            "userfaultfd": call("userfaultfd", 0),
            "keyctl": call("keyctl", 0, 0, 0, 0, 0),
            "perf_event_open": call("perf_event_open", 0, 0, -1, -1, 0),
            "process_vm_readv": call("process_vm_readv", os.getpid(), 0, 0, 0, 0, 0),
            "personality(ADDR_NO_RANDOMIZE)": call("personality", 0x0040000),
            "personality(query)": call("personality", 0xFFFFFFFF),
            "clone3": call("clone3", 0, 0),
            "unshare(1)": subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode,
            "fork": forked,
            "subprocess": subprocess.run(["sh", "-c", "exit 3"]).returncode,
            "getpid": call("getpid"),
        }

    got = in_child(body)
    for name in ("unshare(CLONE_NEWUSER)", "bpf", "io_uring_setup", "userfaultfd", "keyctl", "perf_event_open",
                 "process_vm_readv", "personality(ADDR_NO_RANDOMIZE)"):
        assert got[name] == "EPERM", (name, got[name])
    assert got["clone3"] == "ENOSYS"  # so the C library falls back to clone, where flags can be seen
    assert got["unshare(1)"] != 0
    assert got["personality(query)"] == "ok"
    assert (got["fork"], got["subprocess"], got["getpid"]) == (5, 3, "ok")


def test_without_the_filter_those_calls_are_not_refused_this_way() -> None:
    """The control: the same child, no filter. unshare(CLONE_NEWUSER) succeeds unprivileged or not."""
    def body() -> str:
        return call("unshare", 0x10000000)

    assert in_child(body) == "ok"


def test_a_missing_library_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libno-such-seccomp.so.9")
    assert seccomp.available() == "libseccomp is not installed (Debian: libseccomp2)"
    with pytest.raises(seccomp.SeccompUnavailable):
        seccomp.load_filter()
