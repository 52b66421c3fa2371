"""I/O-bound scaling: http_robots against a loopback site whose /robots.txt
answers after 100 ms, with 1, 2, 4, 8 and 16 workers.

Ideal throughput is workers / 0.1 s; the figure is measured jobs/s over
ideal. The site (tests/harness/site.py) runs threaded in the bench process;
sesshud runs as a subprocess against moto, fed ~50 messages ahead.
"""

from __future__ import annotations

from bench.common import Bench, Figure, Section, check, progress, table
from bench.feeder import request
from bench.throughput import sesshud_round
from tests.harness.site import FixtureSite, Route

DELAY = 0.1
WORKERS = (1, 2, 4, 8, 16)
TARGET = 0.85
PREFETCH = 8
ROBOTS = b"User-agent: *\nDisallow: /private/\nAllow: /\n"


def run(bench: Bench) -> Section:
    section = Section("I/O-bound scaling")
    warmup, window = bench.size(2.0, 1.5), bench.size(8.0, 3.0)
    rows = []
    efficiency = {}
    with FixtureSite({"/robots.txt": Route(body=ROBOTS, delay=DELAY,
                                           headers={"Content-Type": "text/plain"})}) as site:
        for n in WORKERS:
            progress(f"io scaling: http_robots, {n} workers")
            r = sesshud_round(bench, warmup, window, workers=n, plugins=["http_robots"],
                              body=lambda i: request("http_robots", f"{site.url}/page/{i}"),
                              visible=max(50, 4 * n), name=f"io-{n}")
            ideal = n / DELAY
            efficiency[n] = r["rate"] / ideal
            rows.append([n, f"{r['rate']:.1f}", f"{ideal:.0f}", f"{efficiency[n]:.2f}",
                         f"{1000 * r['cpu']['sesshud master'] / max(1, r['jobs']):.2f}"])
            progress(f"  -> {r['rate']:.1f} jobs/s = {efficiency[n]:.2f} of ideal")
        top = WORKERS[-1]
        progress(f"io scaling: http_robots, {top} workers, prefetch {PREFETCH} (not a default)")
        r = sesshud_round(bench, warmup, window, workers=top, plugins=["http_robots"], prefetch=PREFETCH,
                          body=lambda i: request("http_robots", f"{site.url}/page/{i}"),
                          visible=max(50, 4 * top), name=f"io-{top}-prefetch")
        with_prefetch = r["rate"] / (top / DELAY)
        rows.append([f"{top}, prefetch {PREFETCH}", f"{r['rate']:.1f}", f"{top / DELAY:.0f}", f"{with_prefetch:.2f}",
                     f"{1000 * r['cpu']['sesshud master'] / max(1, r['jobs']):.2f}"])
        progress(f"  -> {r['rate']:.1f} jobs/s = {with_prefetch:.2f} of ideal")
    note = ", ".join(f"{n}: {efficiency[n]:.2f}" for n in WORKERS)
    section.figures.append(Figure(f"http_robots at {top} workers, jobs/s over ideal ({top}/0.1 s)",
                                  f"{efficiency[top]:.2f}", f">= {TARGET}", check(efficiency[top], at_least=TARGET),
                                  f"by workers: {note}; with prefetch {PREFETCH}: {with_prefetch:.2f}"
                                  + ("" if efficiency[top] >= TARGET else
                                     ". With prefetch 0 a worker that finishes waits for a ReceiveMessage "
                                     "round trip (behind any receive already in flight) before its next job")))
    section.details.append(
        f"/robots.txt answers after {DELAY * 1000:.0f} ms; windows of {window:g} s after {warmup:g} s warm-up.\n\n"
        + table(["workers", "jobs/s", "ideal jobs/s", "measured / ideal", "master CPU ms/job"], rows))
    return section
