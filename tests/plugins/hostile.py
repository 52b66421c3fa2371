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
frame nested 100,000 levels deep. ``hostile:leave:NAME`` leaves NAME in its
directory, TMPDIR, /tmp, /var/tmp and /dev/shm, and ``hostile:look:NAME``
looks for it; ``hostile:readfile:PATH`` reads a file; ``hostile:syscalls``
tries each system call the filter refuses; ``hostile:threads:N`` and
``hostile:spawn:N`` start N threads or N processes; ``hostile:sigchild``
signals its own child; ``hostile:ordinary`` does what an honest plugin does.
Where a PID list (``P,P``) follows ``env`` or ``steal``, those processes are
attacked instead of the ones found by title in /proc.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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


def env(arg: str) -> Any:
    parent = os.getppid()
    out = {"environ": dict(os.environ), "self": _try(lambda: _read("/proc/self/environ"))}
    out["parent"] = _try(lambda: _read(f"/proc/{parent}/environ"))
    for pid in _pids(arg) if arg else _pids_titled("multiprocessing.forkserver"):
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


def steal(arg: str) -> Any:
    out = {}
    for pid in _pids(arg) if arg[:1].isdigit() else _pids_titled(arg):
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


def leave(name: str) -> Any:
    """Leave a file wherever a later job might look: the job's directory, TMPDIR, the shared temporaries."""
    out = {}
    for where in (".", os.environ.get("TMPDIR", "."), "/tmp", "/var/tmp", "/dev/shm"):
        path = os.path.join(where, name)
        out[path] = _try(lambda p=path: Path(p).write_text("left by an earlier job"))
    out["cwd"] = os.getcwd()
    return out


def look(name: str) -> Any:
    """What this job can see of an earlier one: its files, and what is in its own directory."""
    found = {}
    for where in (os.environ.get("TMPDIR", "."), "/tmp", "/var/tmp", "/dev/shm"):
        path = os.path.join(where, name)
        found[path] = _try(lambda p=path: _read(p))
    st = os.stat(".")
    return {"found": found, "cwd": os.getcwd(), "tmpdir": os.environ.get("TMPDIR"), "listing": os.listdir("."),
            "owner": st.st_uid, "mode": st.st_mode & 0o7777}


def readfile(path: str) -> Any:
    return _try(lambda: _read(path))


def syscalls(_: str) -> Any:
    """Each system call the filter must refuse, with harmless arguments: the errno each one gave."""
    seccomp = ctypes.CDLL("libseccomp.so.2")
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    calls: dict[str, tuple[int, ...]] = {
        "unshare": (0x10000000,), "setns": (-1, 0), "mount": (0, 0, 0, 0, 0), "umount2": (0, 0),
        "pivot_root": (0, 0), "move_mount": (-1, 0, -1, 0, 0), "open_tree": (-1, 0, 0), "fsopen": (0, 0),
        "bpf": (0, 0, 0), "keyctl": (0, 0, 0, 0, 0), "add_key": (0, 0, 0, 0, 0), "request_key": (0, 0, 0, 0),
        "perf_event_open": (0, 0, -1, -1, 0), "userfaultfd": (0,), "io_uring_setup": (1, 0),
        "io_uring_enter": (-1, 0, 0, 0, 0, 0), "io_uring_register": (-1, 0, 0, 0),
        "process_vm_readv": (os.getpid(), 0, 0, 0, 0, 0), "process_vm_writev": (os.getpid(), 0, 0, 0, 0, 0),
        "pidfd_getfd": (-1, 0, 0), "kexec_load": (0, 0, 0, 0), "kexec_file_load": (-1, -1, 0, 0, 0),
        "init_module": (0, 0, 0), "finit_module": (-1, 0, 0), "delete_module": (0, 0),
        "personality": (0x0040000,),
    }
    out = {}
    for name, args in calls.items():
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            continue
        rc = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
        out[name] = "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    # ptrace of its own child, which the kernel alone would allow.
    child = subprocess.Popen(["sleep", "3600"])
    try:
        rc = _libc.ptrace(_PTRACE_ATTACH, child.pid, 0, 0)
        out["ptrace"] = "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    finally:
        child.kill()
        child.wait()
    # A namespace through clone's flags, as unshare(1) or a fork with CLONE_NEWUSER would.
    done = subprocess.run(["unshare", "--user", "true"], capture_output=True, check=False)
    out["clone(CLONE_NEWUSER)"] = "got" if done.returncode == 0 else f"denied: {done.stderr.decode()[-200:]}"
    with open("/proc/self/status") as f:
        out["Seccomp"] = next(line.split()[1] for line in f if line.startswith("Seccomp:"))
    return out


def threads(arg: str) -> Any:
    started = []
    for _ in range(int(arg)):
        t = threading.Thread(target=time.sleep, args=(3600,), daemon=True)
        t.start()
        started.append(t)
    return len(started)


def spawn(arg: str) -> Any:
    held = [subprocess.Popen(["sleep", "3600"]) for _ in range(int(arg))]
    return len(held)


def sigchild(_: str) -> Any:
    """A plugin may still signal what it started itself."""
    child = subprocess.Popen(["sleep", "3600"])
    child.send_signal(signal.SIGTERM)
    return child.wait(timeout=10)


def ordinary(_: str) -> Any:
    """What an ordinary plugin does: threads, a subprocess, temporary files, the network's files."""
    with ThreadPoolExecutor(4) as pool:
        squares = list(pool.map(lambda x: x * x, range(8)))
    echoed = subprocess.run(["sh", "-c", "echo from a shell"], capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w+", delete=False) as f:
        f.write("scratch")
    with open("here.txt", "w") as here:
        here.write("cwd")
    return {"squares": squares, "echo": echoed.strip(), "tempfile": os.path.dirname(f.name),
            "cwd": os.getcwd(), "hosts": len(_read("/etc/hosts")) > 0, "cpus": os.cpu_count()}


def _pids(arg: str) -> list[int]:
    return [int(p) for p in arg.split(",") if p]


def _pids_titled(prefix: str) -> list[int]:
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out  # Landlock: this worker cannot even list the processes
    for entry in entries:
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
           "partial": partial, "deep": deep, "leave": leave, "look": look, "readfile": readfile,
           "syscalls": syscalls, "threads": threads, "spawn": spawn, "sigchild": sigchild, "ordinary": ordinary}
