"""Memory of the master, the fork server and the worker children (psutil).

sesshud runs with the shipped plugins and the bench no-op plugin, 4 workers.
Children are measured idle right after start, and again after serving a few
hundred jobs; a busy child is one in the middle of an http_robots fetch
against a site that takes 5 s to answer. RSS counts pages shared with the
fork server; USS is what a process alone holds. A bare ``python -c`` process
is measured beside them as the floor of any Python worker.

Then a daemon with 64 workers serves a few hundred no-op jobs, and a sample
of its idle runners and keepers is read: what one more worker slot costs
when there are many (the fleet measurement reads busy ones at 256).
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
MANY = 64
SAMPLE = 16  # processes read of many: smaps of hundreds would disturb what runs beside


def uss_sample(daemon: Sesshud, title: str, n: int = SAMPLE) -> dict[str, float]:
    """Median RSS and USS (MiB) of up to ``n`` live processes of the daemon whose title starts with ``title``."""
    rss, uss = [], []
    for proc in daemon.worker_processes(title)[:n]:  # any title, despite the method's name
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss.append(info.rss / MIB)
        uss.append(info.uss / MIB)
    return {"rss": median(rss), "uss": median(uss), "n": len(uss)}


def many_workers(bench: Bench) -> dict[str, dict[str, float]]:
    """Idle runners and keepers of a ``MANY``-worker daemon after it served ten no-op jobs a worker."""
    tag = uuid.uuid4().hex[:6]
    queue = make_queue(bench.moto.url, f"mem-many-{tag}")
    config = write_config(bench.tmp / f"mem-many-{tag}.yaml", endpoint=bench.moto.url, queue=queue,
                          topic=make_topic(bench.moto.url, f"mem-many-out-{tag}"), plugins=PLUGINS, workers=MANY)
    daemon = Sesshud(config).start()
    try:
        daemon.wait_idle_workers(MANY, timeout=180)
        feeder = Feeder(bench.moto.url, queue, lambda i: request("noop", f"n:1024:{i}"), total=10 * MANY).start()
        try:
            feeder.wait_all_done(180)
        finally:
            feeder.stop()
        daemon.wait_idle_workers(MANY, timeout=60)
        return {"runner, idle": uss_sample(daemon, "sesshud: worker idle"),
                "keeper": uss_sample(daemon, "sesshud: keeper")}
    finally:
        stop_all([daemon])


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
    progress(f"memory: {MANY} workers, idle after {10 * MANY} no-op jobs")
    many = many_workers(bench)
    section.figures += [
        Figure("Child USS, idle / busy", f"{used['uss']:.1f} / {busy['uss']:.1f} MiB", "report; lower is better",
               None, f"idle: median of 4 runners after serving jobs (at start: {idle['uss']:.1f}); busy: in an "
               "http_robots fetch"),
        Figure(f"USS per idle runner / keeper at {MANY} workers",
               f"{many['runner, idle']['uss']:.1f} / {many['keeper']['uss']:.1f} MiB", "report; lower is better",
               None, f"median of {many['runner, idle']['n']} runners and {many['keeper']['n']} keepers; a slot "
               f"costs {many['runner, idle']['uss'] + many['keeper']['uss']:.1f} MiB of its own"),
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
                [[name, f"{m['rss']:.1f}", f"{m['uss']:.1f}", f"{m['pss']:.1f}"] for name, m in rows])
        + f"\n\nWith {MANY} workers, idle after {10 * MANY} no-op jobs, MiB (median of a sample):\n\n"
        + table(["process", "RSS", "USS", "sampled"],
                [[name, f"{m['rss']:.1f}", f"{m['uss']:.1f}", m["n"]] for name, m in many.items()]))
    return section
