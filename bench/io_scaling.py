"""I/O-bound scaling: http_robots against a loopback site whose /robots.txt
answers after 100 ms, with 1 to 128 workers.

Ideal throughput is workers / 0.1 s; the figure is measured jobs/s over
ideal. The site (tests/harness/site.py) runs threaded in the bench process;
sesshud runs as a subprocess against moto, fed ~50 messages ahead (more for
more workers). Past 16 workers this machine cannot reach the ideal (a few
hundred jobs/s is what its two cores give); what matters there is that
adding workers past the knee does not lose throughput, so 64 and 128
workers are compared with 32.

That comparison is of rates a few percent apart, while the host's steal
moves this machine's speed by more than that within a minute. So daemons of
32, 64 and 128 workers are started together, each on its own queue, and fed
in turn, a short window each, over several cycles (32 64 128, then 128 64
32, ...): neighbouring windows meet the same machine. The daemons that wait
meanwhile only hold a long poll each.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from bench.common import Bench, Figure, Section, check, cores_used, cpu_ms, progress, table, wait_until
from bench.feeder import Body, Feeder, client, depth, request
from bench.sesshud import Sesshud, stop_all, write_config
from bench.throughput import CpuMeter, _fresh, _measure, host_took, sesshud_round
from tests.harness.site import FixtureSite, Route

DELAY = 0.1
WORKERS = (1, 2, 4, 8, 16)
MANY = (32, 64, 128)  # past the knee: compared with the first
TARGET = 0.85
TARGET_MANY = 1.0
ROBOTS = b"User-agent: *\nDisallow: /private/\nAllow: /\n"


def _visible(n: int) -> int:
    return min(200, max(50, 4 * n))


def _row(n: int, label: Any, r: dict[str, Any]) -> list[Any]:
    ideal = n / DELAY
    return [n, label, f"{r['rate']:.1f}", f"{ideal:.0f}", f"{r['rate'] / ideal:.2f}",
            f"{cpu_ms(r, 'sesshud master'):.2f}", f"{cpu_ms(r):.1f}", f"{cores_used(r):.2f} of {os.cpu_count()}",
            host_took(r)]


def _full_note(kept: dict[int, list[dict[str, Any]]], base: int, n: int) -> str:
    """Why more workers can miss: past the knee the cores are full, and more processes cost them more per job."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    cores = mean([cores_used(r) for r in kept[base]])
    ms = {k: mean([cpu_ms(r) for r in kept[k]]) for k in (base, n)}
    split = ", ".join(f"{name} {mean([cpu_ms(r, name) for r in kept[base]]):.2f} -> "
                      f"{mean([cpu_ms(r, name) for r in kept[n]]):.2f}" for name in kept[base][0]["cpu"])
    return (f"; at {base} workers the processes of the run already used {cores:.2f} of {os.cpu_count()} cores, "
            f"so more workers cannot go faster, only cost more: all CPU per job {ms[base]:.2f} ms at {base} "
            f"workers, {ms[n]:.2f} at {n} (by process: {split})")


def _kept(bench: Bench, body: Body, warmup: float, window: float, cycles: int) -> list[tuple[int, dict[str, Any]]]:
    """(workers, result) of each window, in order, from daemons kept running between their windows."""
    daemons: dict[int, tuple[Sesshud, str]] = {}
    out = []
    sqs = client("sqs", bench.moto.url)
    try:
        for n in MANY:
            queue, topic = _fresh(bench, f"io-{n}")
            config = write_config(bench.tmp / f"io-{n}-{uuid.uuid4().hex[:6]}.yaml", endpoint=bench.moto.url,
                                  queue=queue, topic=topic, plugins=["http_robots"], workers=n)
            daemons[n] = (Sesshud(config).start(), queue)
        for n, (daemon, _) in daemons.items():
            daemon.wait_idle_workers(n, 180)
        for cycle in range(cycles):
            for n in MANY if cycle % 2 == 0 else MANY[::-1]:
                daemon, queue = daemons[n]
                progress(f"io scaling: http_robots, {n} workers, cycle {cycle + 1}/{cycles}")
                feeder = Feeder(bench.moto.url, queue, body, visible=_visible(n)).start()
                try:
                    meter = CpuMeter({bench.server_name: (bench.moto.pid(), False),
                                      "sesshud master": (daemon.pid, False), "sesshud children": (daemon.pid, True),
                                      "bench (feeder, site)": (os.getpid(), False)})
                    r = _measure(feeder, meter, warmup, window)
                finally:
                    feeder.stop()
                r["cpu"]["sesshud children"] -= r["cpu"]["sesshud master"]
                out.append((n, r))
                progress(f"  -> {r['rate']:.1f} jobs/s")
                # The next window starts with this daemon idle again.
                wait_until(lambda q=queue: depth(sqs, q) == (0, 0), 120, f"{n} workers to finish their queue", 0.1)
                time.sleep(0.5)
    finally:
        stop_all([d for d, _ in daemons.values()])
    return out


def run(bench: Bench) -> Section:
    section = Section("I/O-bound scaling")
    warmup, window = bench.size(2.0, 1.5), bench.size(8.0, 3.0)
    k_warmup, k_window, cycles = bench.size(1.5, 1.0), bench.size(5.0, 3.0), bench.size(4, 1)
    rows = []
    runs: dict[int, list[float]] = {}
    with FixtureSite({"/robots.txt": Route(body=ROBOTS, delay=DELAY,
                                           headers={"Content-Type": "text/plain"})}) as site:
        def body(i: int) -> str:
            return request("http_robots", f"{site.url}/page/{i}")

        for n in WORKERS:
            progress(f"io scaling: http_robots, {n} workers")
            r = sesshud_round(bench, warmup, window, workers=n, plugins=["http_robots"], body=body,
                              visible=_visible(n), name=f"io-{n}", start_timeout=180, meter_self=True)
            runs[n] = [r["rate"]]
            rows.append(_row(n, "-", r))
            progress(f"  -> {r['rate']:.1f} jobs/s = {r['rate'] / (n / DELAY):.2f} of ideal")
        kept_rows = []
        kept: dict[int, list[dict[str, Any]]] = {}
        for i, (n, r) in enumerate(_kept(bench, body, k_warmup, k_window, cycles)):
            runs.setdefault(n, []).append(r["rate"])
            kept.setdefault(n, []).append(r)
            kept_rows.append(_row(n, f"{i // len(MANY) + 1}", r))
    rates = {n: sum(rs) / len(rs) for n, rs in runs.items()}
    efficiency = {n: rates[n] / (n / DELAY) for n in rates}
    top = WORKERS[-1]
    note = ", ".join(f"{n}: {efficiency[n]:.2f}" for n in WORKERS)
    section.figures.append(Figure(f"http_robots at {top} workers, jobs/s over ideal ({top}/0.1 s)",
                                  f"{efficiency[top]:.2f}", f">= {TARGET}", check(efficiency[top], at_least=TARGET),
                                  f"by workers: {note}"))
    base = MANY[0]
    for n in MANY[1:]:
        ratio = rates[n] / rates[base]
        each = ", ".join(f"{a / b:.2f}x" for a, b in zip(runs[n], runs[base], strict=True))
        met = check(ratio, at_least=TARGET_MANY)
        section.figures.append(Figure(f"http_robots, 100 ms site: jobs/s at {n} workers over {base} workers",
                                      f"{ratio:.2f}x", f">= {TARGET_MANY}x", met,
                                      f"{rates[n]:.0f} vs {rates[base]:.0f} jobs/s, mean of {len(runs[n])} "
                                      f"windows (each cycle: {each}; {efficiency[n]:.2f} and "
                                      f"{efficiency[base]:.2f} of ideal)" + ("" if met else _full_note(kept, base, n))))
    header = ["workers", "cycle", "jobs/s", "ideal jobs/s", "measured / ideal", "master CPU ms/job",
              "all CPU ms/job", "cores used", "cores the host took (steal)"]
    section.details.append(
        f"/robots.txt answers after {DELAY * 1000:.0f} ms. CPU counts every process: the server, sesshud (master "
        "and children), and the bench process, which runs the feeder and the site.\n\n"
        f"Up to {WORKERS[-1]} workers, a fresh daemon each, one window of {window:g} s after {warmup:g} s warm-up:"
        "\n\n" + table(header, rows) + "\n\n"
        f"Past the knee: daemons of {', '.join(map(str, MANY))} workers kept running, fed in turn for windows of "
        f"{k_window:g} s after {k_warmup:g} s warm-up, each window starting once the last daemon had finished its "
        "queue (the CPU of the daemons waiting meanwhile is not counted):\n\n" + table(header, kept_rows))
    return section
