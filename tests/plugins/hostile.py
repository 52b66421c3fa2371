"""A test plugin that attacks its host: the target names the attack.

Every attack reports what it managed as its result, so a test can assert
that it failed; attacks on resource limits raise, as a real plugin would,
so the job fails with the limit's reason.

``hostile:env`` the worker's environment, its own initial block and its
parent's and the fork server's; ``hostile:read:PID`` tries /proc/PID/environ
and /proc/PID/mem; ``hostile:ptrace:PID``; ``hostile:signal:PID:SIG``;
``hostile:steal:TITLE`` copies fd 3 of every other process titled TITLE with
pidfd_getfd and forges a result on it; ``hostile:escape:PATH`` leaves a
grandchild in a new session, its pid in PATH; ``hostile:fork:N`` forks N
sleepers; ``hostile:files:N`` opens N files; ``hostile:write:PATH:MIB``
writes MIB MiB; ``hostile:rewrite:PATH`` overwrites a file;
``hostile:patch:MODULE`` replaces another plugin's fetch in this process;
``hostile:fds`` lists its open fds; ``hostile:status`` reports its
dumpable, no_new_privs and ids; ``hostile:print:TEXT`` prints TEXT;
``hostile:title`` renames itself ``sesshud: master``; ``hostile:partial`` sends
part of a frame on its job pipe and stalls; ``hostile:deep`` sends a whole
frame nested 100,000 levels deep.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

from setproctitle import setproctitle

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_PIDFD_OPEN = 434
_SYS_PIDFD_GETFD = 438
_PTRACE_ATTACH = 16
_PTRACE_DETACH = 17


def validate(target: str) -> None:
    if not target.startswith("hostile:"):
        raise ValueError("not a hostile target")


def fetch(target: str) -> Any:
    _, action, *rest = target.split(":", 2)
    arg = rest[0] if rest else ""
    return ATTACKS[action](arg)


def _try(fn: Any) -> str:
    try:
        value = fn()
    except OSError as exc:
        return f"denied: {exc.strerror}"
    return f"got: {value!r}"[:2000]


def _read(path: str) -> Any:
    with open(path, "rb") as f:
        return f.read(4096)


def env(_: str) -> Any:
    parent = os.getppid()
    out = {"environ": dict(os.environ), "self": _try(lambda: _read("/proc/self/environ"))}
    out["parent"] = _try(lambda: _read(f"/proc/{parent}/environ"))
    for pid in _pids_titled("multiprocessing.forkserver"):
        out[f"forkserver {pid}"] = _try(lambda p=pid: _read(f"/proc/{p}/environ"))
    return out


def read(arg: str) -> Any:
    def mem() -> bytes:
        with open(f"/proc/{arg}/maps") as maps:
            start = int(maps.readline().split("-")[0], 16)
        with open(f"/proc/{arg}/mem", "rb") as f:
            f.seek(start)
            return f.read(64)
    return {"environ": _try(lambda: _read(f"/proc/{arg}/environ")), "mem": _try(mem)}


def ptrace(arg: str) -> Any:
    pid = int(arg)
    if _libc.ptrace(_PTRACE_ATTACH, pid, 0, 0) == 0:
        _libc.ptrace(_PTRACE_DETACH, pid, 0, 0)
        return "attached"
    return f"denied: {os.strerror(ctypes.get_errno())}"


def send_signal(arg: str) -> Any:
    pid, sig = arg.split(":")
    return _try(lambda: os.kill(int(pid), int(sig)))


def steal(title: str) -> Any:
    out = {}
    for pid in _pids_titled(title):
        if pid == os.getpid():
            continue
        pidfd = _libc.syscall(_SYS_PIDFD_OPEN, pid, 0)
        if pidfd < 0:
            out[pid] = f"pidfd_open denied: {os.strerror(ctypes.get_errno())}"
            continue
        fd = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, 3, 0)
        if fd < 0:
            out[pid] = f"pidfd_getfd denied: {os.strerror(ctypes.get_errno())}"
            continue
        frame = b'{"op": "result", "job": 1, "status": "done", "error": "", "reason": ""}\n"forged"'
        os.write(fd, len(frame).to_bytes(4, "big") + frame)
        out[pid] = "forged"
    return out


def escape(path: str) -> Any:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3600)
        os._exit(0)
    time.sleep(0.5)
    return "left a grandchild"


def fork(arg: str) -> Any:
    made = 0
    for _ in range(int(arg)):
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
        made += 1
    return made


def files(arg: str) -> Any:
    held = [open("/dev/null") for _ in range(int(arg))]  # noqa: SIM115 - holding them is the attack
    return len(held)


def write(arg: str) -> Any:
    path, mib = arg.rsplit(":", 1)
    block = b"x" * (1 << 20)
    with open(path, "wb") as f:
        for _ in range(int(mib)):
            f.write(block)
    return int(mib)


def rewrite(path: str) -> Any:
    return _try(lambda: open(path, "w").write("def validate(t): pass\ndef fetch(t): return 'pwned'\n"))


def patch(module: str) -> Any:
    sys.modules[module].fetch = lambda target: "patched"  # type: ignore[attr-defined]
    return "patched"


def fds(_: str) -> Any:
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def status(_: str) -> Any:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups", "NoNewPrivs", "CapEff"):
                fields[key] = value.split()
    fields["dumpable"] = _libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    fields["cwd"] = os.getcwd()
    return fields


def say(text: str) -> Any:
    print(text)
    print(f"{text} on stderr", file=sys.stderr)
    return "said"


def title(_: str) -> Any:
    setproctitle("sesshud: master")
    time.sleep(2)
    return "retitled"


def partial(_: str) -> Any:
    """Announce a frame on the job pipe, send a piece of it, and stall."""
    os.write(3, (1000).to_bytes(4, "big") + b'{"op": "res')
    time.sleep(120)


def deep(_: str) -> Any:
    """A whole frame whose result is nested 100,000 levels deep."""
    body = b'{"op": "result", "job": 1, "status": "done", "error": ""}\n' + b"[" * 100_000 + b"]" * 100_000
    os.write(3, len(body).to_bytes(4, "big") + body)
    time.sleep(120)


def _pids_titled(prefix: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = _read(f"/proc/{entry}/cmdline").replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if prefix in cmdline:
                out.append(int(entry))
    return out


ATTACKS = {"env": env, "read": read, "ptrace": ptrace, "signal": send_signal, "steal": steal,
           "escape": escape, "fork": fork, "files": files, "write": write, "rewrite": rewrite,
           "patch": patch, "fds": fds, "status": status, "print": say, "title": title,
           "partial": partial, "deep": deep}
