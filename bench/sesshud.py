"""``sesshud`` as the benchmarks run it: a subprocess with a generated config.

The daemon logs to a file at its default level (info, a line per job, as
deployed). Its exit line ``stopped; outcomes: ...; bus requests: ...`` is
parsed for the job counts and, where the daemon reports them, its own count
of bus requests (a cross-check of the counting proxy).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import psutil
import yaml

from bench.common import BENCH_PLUGINS, REGION, quiet_env, wait_until
from tests.harness.daemon import SESSHUD, Daemon

_STOPPED = re.compile(r"stopped; outcomes: (?P<outcomes>[^;\n]*)(?:; bus requests: (?P<requests>[^\n]*))?")


def write_config(path: Path, *, endpoint: str, queue: str, topic: str, plugins: list[Any] | None = None,
                 workers: int = 4, bus: dict[str, Any] | None = None, **worker_settings: Any) -> Path:
    """A daemon config; ``bus`` is merged into the ``bus:`` section (``{"output": {...}}`` adds to output)."""
    section: dict[str, Any] = {"region": REGION, "endpoint_url": endpoint, "input": {"queue": queue},
                               "output": {"topic": topic}}
    for key, value in (bus or {}).items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    doc = {
        "logging": {"level": "info"},
        "plugin": plugins or ["noop"],
        "plugin_path": [str(BENCH_PLUGINS)],
        # The benchmarks' sites are on loopback, which the workers' address guard refuses unless allowed.
        "workers": {"count": workers, "network": {"allow": ["127.0.0.0/8"]}, **worker_settings},
        "bus": section,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


_ACCEPTS: dict[str, bool] = {}


def accepts(bus: dict[str, Any], tmp: Path) -> bool:
    """Whether this checkout's sesshud takes a config whose ``bus:`` section adds ``bus``.

    Keys such as ``bus.senders`` or ``bus.output.s3_threshold`` arrive with
    newer daemons, and an older one rejects a config that names them, so a
    measurement sets them only when ``sesshud --check`` accepts them. Asked
    once per distinct ``bus`` and run.
    """
    key = json.dumps(bus, sort_keys=True)
    if key not in _ACCEPTS:
        def check(name: str, extra: dict[str, Any] | None) -> bool:
            config = write_config(tmp / f"accepts-{name}.yaml", endpoint="http://127.0.0.1:9", queue="q",
                                  topic="arn:aws:sns:us-east-1:000000000000:t", bus=extra)
            done = subprocess.run([str(SESSHUD), "--check", "-c", str(config)], env=quiet_env(),
                                  capture_output=True, text=True, timeout=120)
            return done.returncode == 0

        if "{}" not in _ACCEPTS:
            _ACCEPTS["{}"] = check("base", None)
        if not _ACCEPTS["{}"]:  # a broken setup must not pass for an old daemon
            raise RuntimeError("sesshud --check fails on the bench's own config")
        _ACCEPTS[key] = check(f"{len(_ACCEPTS)}", bus)
    return _ACCEPTS[key]


def _counts(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        key, eq, value = part.strip().partition("=")
        if eq and value.strip().isdigit():
            out[key] = int(value)
    return out


class Sesshud(Daemon):
    """The tests' daemon harness, with what the benchmarks add: psutil views and the exit summary."""

    def __init__(self, config: Path, *, command: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(config, None, env={**quiet_env(), **(env or {})}, command=command)

    def start(self, wait_ready: bool = True) -> Self:
        super().start(wait_ready)
        return self

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"sesshud exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    def worker_processes(self, title: str = "sesshud: worker") -> list[psutil.Process]:
        """Live worker children whose process title starts with ``title``, for memory readings."""
        found = []
        for proc in psutil.Process(self.pid).children(recursive=True):
            try:
                if " ".join(proc.cmdline()).startswith(title) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def wait_idle_workers(self, n: int, timeout: float = 60) -> list[psutil.Process]:
        return list(wait_until(lambda: self._alive() and len(w := self.worker_processes("sesshud: worker idle")) >= n
                               and w, timeout, f"{n} idle workers", interval=0.05))

    def finish(self, timeout: float = 60) -> dict[str, dict[str, int]]:
        """SIGTERM, wait for the exit, and return its outcome and bus request counts."""
        try:
            self.stop(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise
        return self.summary()

    def summary(self) -> dict[str, dict[str, int]]:
        found = list(_STOPPED.finditer(self.log()))
        match = found[-1] if found else None
        if match is None:
            return {"outcomes": {}, "requests": {}}
        return {"outcomes": _counts(match["outcomes"]), "requests": _counts(match["requests"])}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill_all()


def stop_all(daemons: list[Sesshud], timeout: float = 60) -> None:
    """SIGTERM every daemon at once, then wait for each (each long poll has a 2 s exit grace)."""
    for d in daemons:
        d.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for d in daemons:
        assert d.proc is not None
        try:
            d.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            d.kill_all()
