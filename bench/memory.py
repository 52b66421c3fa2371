"""Memory of the master, the fork server and the worker children (psutil).

sesshud runs with the shipped plugins and the bench no-op plugin, 4 workers.
Children are measured idle right after start, and again after serving a few
hundred jobs; a busy child is one in the middle of an http_robots fetch
against a site that takes 5 s to answer. RSS counts pages shared with the
fork server; USS is what a process alone holds. A bare ``python -c`` process
is measured beside them as the floor of any Python worker.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import psutil

from bench.common import Bench, Figure, Section, check, median, progress, table, wait_until
from bench.feeder import Feeder, make_queue, make_topic, request
from bench.sesshud import Sesshud, stop_all, write_config
from tests.harness.site import FixtureSite, Route

TARGET_IDLE_RSS = 25.0  # MiB
PLUGINS = ["noop", "http_robots", "http_javascript", "http_stylesheet"]
MIB = 1024 * 1024


def _mem(proc: psutil.Process) -> dict[str, float]:
    info = proc.memory_full_info()
    return {"rss": info.rss / MIB, "uss": info.uss / MIB, "pss": getattr(info, "pss", 0) / MIB}


def _median_mem(procs: list[psutil.Process]) -> dict[str, float]:
    samples = [_mem(p) for p in procs]
    return {k: median([s[k] for s in samples]) for k in ("rss", "uss", "pss")}


def _fork_server(daemon: Sesshud) -> psutil.Process | None:
    for child in psutil.Process(daemon.pid).children():
        try:
            if "forkserver" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def _bare_python() -> dict[str, float]:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)
        return _mem(psutil.Process(proc.pid))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


def run(bench: Bench) -> Section:
    section = Section("Memory")
    jobs = bench.size(400, 100)
    tag = uuid.uuid4().hex[:6]
    queue = make_queue(bench.moto.url, f"mem-{tag}")
    topic = make_topic(bench.moto.url, f"mem-out-{tag}")
    config = write_config(bench.tmp / f"mem-{tag}.yaml", endpoint=bench.moto.url, queue=queue, topic=topic,
                          plugins=PLUGINS, workers=4)
    rows: list[list[Any]] = []
    fast = FixtureSite({"/robots.txt": Route(body=b"User-agent: *\nDisallow: /x\n")}).start()
    slow = FixtureSite({"/robots.txt": Route(body=b"User-agent: *\nDisallow: /y\n", delay=5.0)}).start()
    daemon = Sesshud(config).start()
    try:
        progress("memory: idle daemon")
        idle = _median_mem(daemon.wait_idle_workers(4))
        master0 = _mem(psutil.Process(daemon.pid))
        server = _fork_server(daemon)
        bare = _bare_python()
        progress(f"memory: {jobs} no-op jobs (1 KiB results) and {jobs // 10} http_robots fetches")

        def body(i: int) -> str:
            if i % 10 == 9:
                return request("http_robots", f"{fast.url}/p/{i}")
            return request("noop", f"n:1024:{i}")

        feeder = Feeder(bench.moto.url, queue, body, total=jobs).start()
        try:
            feeder.wait_all_done(120)
        finally:
            feeder.stop()
        used = _median_mem(daemon.wait_idle_workers(4))
        progress("memory: a child busy in a slow http_robots fetch")
        feeder = Feeder(bench.moto.url, queue, lambda i: request("http_robots", f"{slow.url}/p/{i}"), total=1).start()
        busy_procs = wait_until(lambda: daemon.worker_processes("sesshud: worker http_robots"), 10, "a busy worker")
        time.sleep(0.5)
        busy = _mem(busy_procs[0])
        master1 = _mem(psutil.Process(daemon.pid))
        feeder.stop()
        rows = [
            ["bare `python -c` (baseline)", bare],
            ["master, idle", master0],
            ["master, after the jobs", master1],
            ["fork server", _mem(server) if server else dict.fromkeys(("rss", "uss", "pss"), float("nan"))],
            ["child, idle at start (median of 4)", idle],
            ["child, idle after jobs (median of 4)", used],
            ["child, busy in http_robots", busy],
        ]
    finally:
        stop_all([daemon])
        fast.stop()
        slow.stop()
    section.figures += [
        Figure("Idle child RSS", f"{idle['rss']:.1f} MiB", f"<= {TARGET_IDLE_RSS:g} MiB",
               check(idle["rss"], at_most=TARGET_IDLE_RSS),
               f"{idle['rss'] / bare['rss']:.2f}x a bare python ({bare['rss']:.1f} MiB); USS {idle['uss']:.1f} MiB"),
        Figure("Busy child RSS / USS", f"{busy['rss']:.1f} / {busy['uss']:.1f} MiB", "", None,
               "in an http_robots fetch after serving jobs"),
        Figure("Master RSS / USS", f"{master1['rss']:.1f} / {master1['uss']:.1f} MiB", "", None,
               f"{master1['rss'] / bare['rss']:.2f}x a bare python; idle at start {master0['rss']:.1f} MiB"),
    ]
    section.details.append(
        "Plugins loaded: " + ", ".join(PLUGINS) + "; 4 workers. MiB.\n\n"
        + table(["process", "RSS", "USS", "PSS"],
                [[name, f"{m['rss']:.1f}", f"{m['uss']:.1f}", f"{m['pss']:.1f}"] for name, m in rows]))
    return section
