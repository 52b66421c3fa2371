"""``sesshud`` as the benchmarks run it: a subprocess with a generated config.

The daemon logs to a file at its default level (info, a line per job, as
deployed). Its exit line ``stopped; outcomes: ...; bus requests: ...`` is
parsed for the job counts and, where the daemon reports them, its own count
of bus requests (a cross-check of the counting proxy).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import psutil
import yaml

from bench.common import BENCH_PLUGINS, REGION, quiet_env, wait_until

SESSHUD = Path(sys.executable).parent / "sesshud"
_STOPPED = re.compile(r"stopped; outcomes: (?P<outcomes>[^;\n]*)(?:; bus requests: (?P<requests>[^\n]*))?")


def write_config(path: Path, *, endpoint: str, queue: str, topic: str, plugins: list[Any] | None = None,
                 workers: int = 4, **worker_settings: Any) -> Path:
    doc = {
        "logging": {"level": "info"},
        "plugin": plugins or ["noop"],
        "plugin_path": [str(BENCH_PLUGINS)],
        "workers": {"count": workers, **worker_settings},
        "bus": {"region": REGION, "endpoint_url": endpoint, "input": {"queue": queue},
                "output": {"topic": topic}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _counts(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        key, eq, value = part.strip().partition("=")
        if eq and value.strip().isdigit():
            out[key] = int(value)
    return out


class Sesshud:
    """One daemon process, in its own session so a failed run leaves nothing behind."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(SESSHUD), "-c", str(self.config)], stdout=log, stderr=log,
                                         env=quiet_env(), start_new_session=True)
        wait_until(lambda: self._alive() and "sesshu.daemon: started" in self.log(), 60,
                   f"sesshud to start (log {self.log_path})", interval=0.05)
        return self

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"sesshud exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def workers(self, title: str = "sesshud: worker") -> list[psutil.Process]:
        """Live worker children whose process title starts with ``title``."""
        found = []
        for proc in psutil.Process(self.pid).children(recursive=True):
            try:
                if " ".join(proc.cmdline()).startswith(title) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def wait_idle_workers(self, n: int, timeout: float = 60) -> list[psutil.Process]:
        return list(wait_until(lambda: self._alive() and len(w := self.workers("sesshud: worker idle")) >= n
                               and w, timeout, f"{n} idle workers", interval=0.05))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> dict[str, dict[str, int]]:
        """SIGTERM, wait for the exit, and return its outcome and bus request counts."""
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self.summary()

    def summary(self) -> dict[str, dict[str, int]]:
        found = list(_STOPPED.finditer(self.log()))
        match = found[-1] if found else None
        if match is None:
            return {"outcomes": {}, "requests": {}}
        return {"outcomes": _counts(match["outcomes"]), "requests": _counts(match["requests"])}

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def stop_all(daemons: list[Sesshud], timeout: float = 60) -> None:
    """SIGTERM every daemon at once, then wait for each (each long poll has a 2 s exit grace)."""
    for d in daemons:
        d.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for d in daemons:
        assert d.proc is not None
        try:
            d.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            d.kill()
