"""I/O-bound scaling: http_robots against a loopback site whose /robots.txt
answers after 100 ms, with 1 to 128 workers.

Ideal throughput is workers / 0.1 s; the figure is measured jobs/s over
ideal. The site (tests/harness/site.py) runs threaded in the bench process;
sesshud runs as a subprocess against moto, fed ~50 messages ahead (more for
more workers). Past 16 workers this machine cannot reach the ideal (a few
hundred jobs/s is what its two cores give); what matters there is that
adding workers past the knee does not lose throughput, so 64 and 128
workers are compared with 32. Those three run twice, in the order 32, 64,
128, 128, 64, 32, so that a drift in the machine's load over the run weighs
on each alike; each figure is their mean.
"""

from __future__ import annotations

import os

from bench.common import Bench, Figure, Section, check, progress, table
from bench.feeder import request
from bench.throughput import sesshud_round
from tests.harness.site import FixtureSite, Route

DELAY = 0.1
WORKERS = (1, 2, 4, 8, 16)
MANY = (32, 64, 128)  # past the knee: compared with the first
TARGET = 0.85
TARGET_MANY = 1.0
ROBOTS = b"User-agent: *\nDisallow: /private/\nAllow: /\n"


def run(bench: Bench) -> Section:
    section = Section("I/O-bound scaling")
    warmup, window = bench.size(2.0, 1.5), bench.size(8.0, 3.0)
    rows = []
    runs: dict[int, list[float]] = {}
    order = [*WORKERS, *MANY, *reversed(MANY)] if not bench.quick else [*WORKERS, *MANY]
    with FixtureSite({"/robots.txt": Route(body=ROBOTS, delay=DELAY,
                                           headers={"Content-Type": "text/plain"})}) as site:
        for n in order:
            progress(f"io scaling: http_robots, {n} workers")
            r = sesshud_round(bench, warmup, window, workers=n, plugins=["http_robots"],
                              body=lambda i: request("http_robots", f"{site.url}/page/{i}"),
                              visible=min(200, max(50, 4 * n)), name=f"io-{n}", start_timeout=180,
                              meter_self=True)
            runs.setdefault(n, []).append(r["rate"])
            ideal = n / DELAY
            jobs = max(1, r["jobs"])
            rows.append([n, len(runs[n]), f"{r['rate']:.1f}", f"{ideal:.0f}", f"{r['rate'] / ideal:.2f}",
                         f"{1000 * r['cpu']['sesshud master'] / jobs:.2f}",
                         f"{1000 * sum(r['cpu'].values()) / jobs:.1f}",
                         f"{sum(r['cpu'].values()) / window:.2f} of {os.cpu_count()}"])
            progress(f"  -> {r['rate']:.1f} jobs/s = {r['rate'] / ideal:.2f} of ideal")
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
        section.figures.append(Figure(f"http_robots, 100 ms site: jobs/s at {n} workers over {base} workers",
                                      f"{ratio:.2f}x", f">= {TARGET_MANY}x", check(ratio, at_least=TARGET_MANY),
                                      f"{rates[n]:.0f} vs {rates[base]:.0f} jobs/s, mean of {len(runs[n])} "
                                      f"(each round: {each}; {efficiency[n]:.2f} and {efficiency[base]:.2f} of "
                                      "ideal)"))
    section.details.append(
        f"/robots.txt answers after {DELAY * 1000:.0f} ms; windows of {window:g} s after {warmup:g} s warm-up. "
        "CPU counts every process: the server, sesshud (master and children), and the bench process, which runs "
        "the feeder and the site.\n\n"
        + table(["workers", "round", "jobs/s", "ideal jobs/s", "measured / ideal", "master CPU ms/job",
                 "all CPU ms/job", "cores used"], rows))
    return section
