"""What every measurement shares: figures, sizes, statistics, machine facts.

A measurement module offers ``run(bench) -> Section``. It reports
:class:`Figure` rows for the summary table and, where one number is not
enough, markdown detail tables. Every figure on this shared, noisy machine
is a ratio against something measured side by side in the same run, or is
shown next to such a baseline.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.aws import REGION as REGION  # re-exported for the bench modules
from tests.harness.aws import aws_env, poll
from tests.harness.aws import free_port as free_port

ROOT = Path(__file__).resolve().parents[1]
BENCH_PLUGINS = ROOT / "bench" / "plugins"
T = TypeVar("T")


@dataclass
class Figure:
    """One row of the summary table."""

    name: str
    measured: str
    target: str = ""  # empty: reported for information, no target
    met: bool | None = None
    note: str = ""  # how it was measured, or why a target is missed


@dataclass
class Section:
    """What one measurement reports."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # markdown blocks
    seconds: float = 0.0


@dataclass
class Bench:
    """The run's options and shared resources, handed to every measurement."""

    quick: bool
    tmp: Path
    moto: Any = None  # the SQS/SNS server, started by run.py: bench.motoserver.MotoProcess, or LocalStack
    server_name: str = "moto"  # how CPU tables name the server process
    delay: float = 0.020  # seconds: the round trip the proxy adds per AWS request for the "far" figures
    far: bool = True  # measure the server-dependent figures at ``delay`` too (not on the second server)

    def size(self, full: T, quick: T) -> T:
        return quick if self.quick else full

    @property
    def delays(self) -> tuple[float, ...]:
        """The round trips the server-dependent figures are measured at: loopback, and ``delay``."""
        return (0.0, self.delay) if self.far and self.delay > 0 else (0.0,)


def at(delay: float) -> str:
    """How a figure's name says it was measured with a round trip added per AWS request."""
    return f", {1000 * delay:g} ms per AWS request" if delay > 0 else ""


def progress(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


# -- processes and waiting ----------------------------------------------------


def quiet_env(endpoint: str | None = None) -> dict[str, str]:
    """The tests' environment for child processes (fake credentials), plus this checkout on PYTHONPATH."""
    env = aws_env(endpoint)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it is truthy (the tests' ``poll``, with the bench's finer interval)."""
    return poll(condition, timeout, interval, what)


# -- statistics ---------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100), interpolating between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_text(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}x"


def check(value: float, *, at_most: float | None = None, at_least: float | None = None) -> bool:
    if at_most is not None and not value <= at_most:
        return False
    return not (at_least is not None and not value >= at_least)


def cpu_ms(r: dict[str, Any], *names: str) -> float:
    """CPU milliseconds per job of the named metered processes of a window (all of them if none is named)."""
    cpu = r["cpu"]
    return float(1000 * sum(cpu[n] for n in (names or cpu)) / max(1, r["jobs"]))


def cores_used(r: dict[str, Any], *names: str) -> float:
    """Cores the named metered processes of a window used (all of them if none is named)."""
    return cpu_ms(r, *names) * float(r["rate"]) / 1000


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the machine --------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    load = os.getloadavg()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "boto3": _version("boto3"),
        "botocore": _version("botocore"),
        "moto": _version("moto"),
        "pebble": _version("pebble"),
        "psutil": _version("psutil"),
        "celery": _version("celery"),
        "sesshu": _version("sesshu"),
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, at start)",
    }
