"""Run a real ``sesshud`` subprocess against the local SQS/SNS server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from sesshu.ops.provision import Deployment
from tests.harness.aws import MotoServer, aws_env, poll

ROOT = Path(__file__).resolve().parents[2]
TEST_PLUGINS = ROOT / "tests" / "plugins"
SESSHUD = Path(sys.executable).parent / "sesshud"


# The test sites are on loopback, which the workers' address guard refuses unless allowed.
LOOPBACK = ["127.0.0.0/8", "::1/128"]


def shared_dir(config: Path) -> Path:
    """Where the workers of a write_config daemon may write, beside its config."""
    shared = config.parent / "shared"
    shared.mkdir(exist_ok=True)
    return shared


def write_config(path: Path, server: MotoServer, deployment: Deployment, **overrides: Any) -> Path:
    """A config for ``deployment``; ``overrides`` replace top-level keys or workers.* keys.

    Loopback is allowed (``workers.network.allow``) unless ``workers={"network": ...}`` says otherwise.
    """
    workers: dict[str, Any] = {"count": 2, "timeout": 5, "polling": {"interval": 1},
                               "retry": {"delay": 1, "max_delay": 2}, "shutdown_timeout": 10,
                               # Test plugins leave proof (a grandchild's pid) in shared_dir(path):
                               # outside the scratch directories, so it must be granted, and apart
                               # from the config, which no plugin may read.
                               "filesystem": {"write": [str(shared_dir(path))]},
                               "network": {"allow": LOOPBACK}}
    workers.update(overrides.pop("workers", {}))
    doc: dict[str, Any] = {
        "plugin": ["chaos", "http_robots", "http_javascript", "http_stylesheet"],
        "plugin_path": [str(TEST_PLUGINS)],
        "workers": workers,
        "bus": {"region": "us-east-1", "endpoint_url": server.url,
                "input": {"queue": deployment.queue_url}, "output": {"topic": deployment.results_topic}},
    }
    doc.update(overrides)
    path.write_text(yaml.safe_dump(doc))
    return path


class Daemon:
    """``sesshud -c CONFIG`` in a subprocess, its stderr in a file."""

    def __init__(self, config: Path, server: MotoServer | None = None, *args: str,
                 env: dict[str, str] | None = None, command: list[str] | None = None,
                 cwd: str | None = None) -> None:
        self.config = config
        self.log_path = config.with_suffix(".log")
        self.env = aws_env(server.url if server else None)
        self.env.update(env or {})
        self.args = args
        self.command = command or [str(SESSHUD)]
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> Daemon:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*self.command, "-c", str(self.config), *self.args], cwd=self.cwd,
                                         stdout=log, stderr=log, env=self.env,
                                         # Its own session: every descendant keeps the session
                                         # id, which is how orphans are found.
                                         start_new_session=True)
        if wait_ready:
            self.wait_log(r"INFO sesshu\.daemon\.assemble: started", timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 30.0, count: int = 1) -> list[str]:
        rx = re.compile(pattern)

        def found() -> list[str]:
            lines = [ln for ln in self.log().splitlines() if rx.search(ln)]
            if self.proc is not None and self.proc.poll() is not None and len(lines) < count:
                raise AssertionError(f"sesshud exited {self.proc.returncode}:\n{self.log()[-4000:]}")
            return lines if len(lines) >= count else []

        try:
            return list(poll(found, timeout, what=f"log line {pattern!r} x{count}"))
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} x{count} in log:\n{self.log()[-4000:]}") from None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the daemon to exit by itself."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def workers(self) -> list[int]:
        """Live processes of this daemon whose title says they are workers."""
        return [pid for pid, title in session_processes(self.pid) if title.startswith("sesshud: worker")]

    def worker_titles(self) -> list[str]:
        """What each worker says it is doing: "sesshud: worker idle", or its plugin and target."""
        return [title for _, title in session_processes(self.pid) if title.startswith("sesshud: worker")]

    def leftovers(self) -> list[tuple[int, str]]:
        return session_processes(self.pid)

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid, _ in session_processes(self.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, title) of live, non-zombie processes in session ``sid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z" or int(fields[3]) != sid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out.append((int(entry), title))
    return out


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
