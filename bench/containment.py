"""The cost of containment, side by side in one run.

Three daemons in turn on the same server and the same no-op load (4 workers),
all run from the venv on Debian's python3 that an unprivileged account can
read (as the containment tests do): without ``workers.user``, with
``workers.user: nobody``, and with ``workers.user`` plus ``workers.max_jobs: 1``
(a fresh runner for every job). Rounds alternate the order. Every slot is a
keeper and a runner, and every job ends with the keeper's sweep, in all
three; the figures show what the account switch and the fresh process add.

*Respawn with the sandbox on*: with ``workers.user``, SIGKILL an idle runner
and time until its slot is replaced and idle again (keeper, runner, account
switch, limits, plugin import).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_PLUGINS, Bench, Figure, Section, median, progress, table, wait_until
from bench.sesshud import Sesshud, stop_all, write_config
from bench.throughput import sesshud_round
from tests.harness.sandboxed import WORKER, Staged

VARIANTS: dict[str, dict[str, Any]] = {
    "no workers.user": {},
    "workers.user": {"user": WORKER},
    "workers.user + max_jobs 1": {"user": WORKER, "max_jobs": 1},
}


def _staged() -> Staged:
    staged = Staged()
    shutil.copy(BENCH_PLUGINS / "noop.py", staged.plugins / "noop.py")
    os.chmod(staged.plugins / "noop.py", 0o644)
    return staged


def _launcher(staged: Staged) -> Any:
    def launch(config: Path) -> Sesshud:
        text = config.read_text().replace(str(BENCH_PLUGINS), str(staged.plugins))
        config.write_text(text)
        os.chmod(config, 0o644)
        return Sesshud(config, command=staged.command(), env=staged.env())
    return launch


def respawn_times(bench: Bench, staged: Staged, n: int) -> list[float]:
    from bench.feeder import make_queue, make_topic

    config = write_config(bench.tmp / "respawn.yaml", endpoint=bench.moto.url,
                          queue=make_queue(bench.moto.url, f"respawn-{os.getpid()}-{time.monotonic_ns()}"),
                          topic=make_topic(bench.moto.url, f"respawn-out-{time.monotonic_ns()}"),
                          workers=1, user=WORKER)
    daemon = _launcher(staged)(config).start()
    times: list[float] = []
    try:
        for _ in range(n):
            (victim,) = daemon.wait_idle_workers(1)
            t0 = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            wait_until(lambda v=victim.pid: [w for w in daemon.worker_processes("sesshud: worker idle")
                                             if w.pid != v], 30, "a replacement worker", interval=0.002)
            times.append(time.monotonic() - t0)
    finally:
        stop_all([daemon])
    return times


def run(bench: Bench) -> Section:
    section = Section("Cost of containment")
    if os.geteuid() != 0:
        section.details.append("Not measured: switching workers to another account needs root.")
        return section
    rounds, warmup, window = bench.size(3, 1), bench.size(2.0, 1.0), bench.size(10.0, 3.0)
    staged = _staged()
    try:
        launch = _launcher(staged)
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        names = list(VARIANTS)
        for i in range(rounds):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                progress(f"containment round {i + 1}/{rounds}: {name}")
                r = sesshud_round(bench, warmup, window, name="cont", launch=launch, **VARIANTS[name])
                rates[name].append(r["rate"])
                progress(f"  -> {r['rate']:.0f} jobs/s")
        base = median(rates["no workers.user"])
        user = median(rates["workers.user"])
        fresh = median(rates["workers.user + max_jobs 1"])
        section.figures.append(Figure("jobs/s with workers.user / without, no-op, 4 workers",
                                      f"{user / base:.2f}x", "report", None,
                                      f"{user:.0f} vs {base:.0f} jobs/s (median of {rounds})"))
        section.figures.append(Figure("jobs/s with workers.max_jobs 1 / default (both with workers.user)",
                                      f"{fresh / user:.2f}x", "report", None,
                                      f"{fresh:.0f} vs {user:.0f} jobs/s: a keeper, a runner and the plugin "
                                      "import for every job"))
        times = respawn_times(bench, staged, bench.size(9, 3))
        section.figures.append(Figure("SIGKILLed runner -> replacement idle, with workers.user (median)",
                                      f"{1000 * median(times):.0f} ms", "report", None,
                                      f"{len(times)} kills; slowest {1000 * max(times):.0f} ms"))
        rows = [[name, *(f"{r:.0f}" for r in rates[name])] for name in names]
        section.details.append(f"Windows of {window:g} s after {warmup:g} s of warm-up, 4 workers, no-op plugin; "
                               "jobs/s per round.\n\n"
                               + table(["daemon", *(f"round {i + 1}" for i in range(rounds))], rows))
        return section
    finally:
        staged.remove()
