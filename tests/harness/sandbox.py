"""This very host, as a throw-away copy: for installing a package as root and leaving no trace.

A :class:`Sandbox` is a private mount namespace in which the host's root
filesystem is mounted read-only under an overlay whose upper layer is a
tmpfs. Inside it, ``dpkg -i``, account creation, /etc and /opt all work on
the real files of the host, but every write lands in that tmpfs, which
vanishes with the namespace: if the test fails, or is killed, the host is
untouched. The host's dpkg lock is not taken either, so the sandbox races
neither apt nor another test run.

The network is the host's, so a daemon inside reaches servers the tests run
on 127.0.0.1. /proc and /dev are the host's, /run, /tmp and /dev/shm fresh.

Commands run through an agent: a Python process chrooted into the overlay,
which is a child subreaper, so the daemons that init scripts orphan are its
children and are reaped (a zombie still "exists" for start-stop-daemon).
At the end it kills every process left in the namespace.

The upper layer is visible inside at :data:`UPPER`: what the sandbox
changed, compared with the host by :meth:`Sandbox.changes`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

UPPER = "/run/sandbox/upper"
INBOX = "/run/sandbox/in"

# Runs as root in the new mount namespace: $1 is a directory for the tmpfs,
# $2 a directory to show inside at INBOX, $3 the agent's code.
SETUP = r"""
set -eu
top=$1
mount -t tmpfs -o mode=0755 sandbox "$top"
mkdir "$top/upper" "$top/work" "$top/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
root=$top/root
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
mount -t tmpfs -o mode=0755 run "$root/run"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
mkdir -p "$root/run/sandbox/upper" "$root/run/sandbox/in" "$root/run/sandbox/io"
mount --bind "$top/upper" "$root/run/sandbox/upper"
mount -o remount,bind,ro "$root/run/sandbox/upper"
mount --bind "$2" "$root/run/sandbox/in"
mount -o remount,bind,ro "$root/run/sandbox/in"
exec chroot "$root" /usr/bin/python3 -c "$3"
"""

# The agent: one JSON request a line on stdin, one JSON reply a line on stdout.
AGENT = r"""
import ctypes, json, os, signal, sys, time

PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
NAMESPACE = os.readlink("/proc/self/ns/mnt")


def reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def others():
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == NAMESPACE:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def run(request):
    io = "/run/sandbox/io"
    with open(f"{io}/stdin", "w") as f:
        f.write(request.get("stdin") or "")
    actions = [(os.POSIX_SPAWN_OPEN, 0, f"{io}/stdin", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, f"{io}/out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
               (os.POSIX_SPAWN_OPEN, 2, f"{io}/err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
    pid = os.posix_spawnp(request["argv"][0], request["argv"], request["env"], file_actions=actions)
    while True:
        # Also reaps a daemon the moment it dies, while a stop waits for it.
        done, status = os.waitpid(-1, 0)
        if done == pid:
            break
    with open(f"{io}/out", errors="replace") as out, open(f"{io}/err", errors="replace") as err:
        return {"rc": os.waitstatus_to_exitcode(status), "out": out.read(), "err": err.read()}


print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    reap()
    try:
        reply = run(json.loads(line))
    except OSError as exc:
        reply = {"rc": 127, "out": "", "err": f"sandbox: {exc}"}
    print(json.dumps(reply), flush=True)

# Whatever is still running in here dies with the sandbox.
for _ in range(50):
    pids = others()
    if not pids:
        break
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.1)
    reap()
"""

# A clean environment, as `service` would give an init script.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
       "HOME": "/root", "TERM": "dumb"}


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Result:
        assert self.returncode == 0, f"{' '.join(self.argv)} exited {self.returncode}:\n{self.stdout}\n{self.stderr}"
        return self


@dataclass(frozen=True)
class Change:
    """A path the sandbox wrote, as the overlay's upper layer holds it."""

    path: str
    kind: str  # "file", "link", "dir", "whiteout" (deleted), "other"
    mode: int
    uid: int
    gid: int
    digest: str  # sha256 of a file's content, a link's target; "" otherwise


CHANGES = r"""
import hashlib, json, os, stat, sys
upper = sys.argv[1]
out = []
for top, dirs, files in os.walk(upper):
    for name in dirs + files:
        full = os.path.join(top, name)
        st = os.lstat(full)
        digest = ""
        if stat.S_ISREG(st.st_mode):
            kind = "file"
            with open(full, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            kind, digest = "link", os.readlink(full)
        elif stat.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            kind = "whiteout"
        else:
            kind = "other"
        out.append([full[len(upper):], kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, digest])
print(json.dumps(out))
"""


class Sandbox:
    """The host's root filesystem under a tmpfs overlay, in a private mount namespace (needs root)."""

    def __init__(self, workdir: Path, inbox: Path) -> None:
        self._top = workdir / "sandbox"
        self._top.mkdir()
        self._proc: subprocess.Popen[str] | None = None
        self._inbox = inbox
        self._agent_pid: int | None = None
        self._namespace: str | None = None

    def start(self) -> Self:
        self._proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", SETUP, "sandbox",
             str(self._top), str(self._inbox), AGENT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        ready = self._reply(60)
        self._agent_pid = int(ready["ready"])
        self._namespace = os.readlink(f"/proc/{self._agent_pid}/ns/mnt")
        return self

    @property
    def agent_pid(self) -> int:
        assert self._agent_pid is not None
        return self._agent_pid

    def _reply(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            raise AssertionError(f"the sandbox did not answer within {timeout} s (exit {self._proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def run(self, *argv: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> Result:
        """Run ``argv`` as root inside; wait for it (and reap what it orphans)."""
        assert self._proc is not None and self._proc.stdin is not None
        request = {"argv": list(argv), "stdin": stdin, "env": {**ENV, **(env or {})}}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        reply = self._reply(timeout)
        return Result(list(argv), reply["rc"], reply["out"], reply["err"])

    def sh(self, script: str, timeout: float = 300) -> Result:
        return self.run("/bin/sh", "-c", script, timeout=timeout)

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run("/bin/sh", "-c", f'cat > "$0" && chmod {mode} "$0"', path, stdin=text).check()

    def read(self, path: str) -> str:
        return self.run("/bin/cat", path).check().stdout

    def exists(self, path: str) -> bool:
        return self.run("/usr/bin/test", "-e", path).returncode == 0

    def changes(self) -> list[Change]:
        """Every path written in the sandbox: what its upper layer holds."""
        reply = self.run("/usr/bin/python3", "-c", CHANGES, UPPER).check()
        return [Change(*entry) for entry in json.loads(reply.stdout)]

    def processes(self) -> list[int]:
        """Live processes in the sandbox's namespace, its agent included."""
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self._namespace:
                        with open(f"/proc/{entry}/stat", "rb") as f:
                            if f.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                                out.append(int(entry))
                except OSError:
                    continue
        return out

    def close(self) -> None:
        """End the agent (it kills what is left); if it hangs, kill everything in the namespace."""
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        if self._namespace is not None:
            deadline = time.monotonic() + 30
            while (left := self.processes()) and time.monotonic() < deadline:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
