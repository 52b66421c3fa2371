"""I/O-bound scaling: http_robots against a loopback site whose /robots.txt
answers after 100 ms, with 1 to 128 workers.

Ideal throughput is workers / 0.1 s; the figure is measured jobs/s over
ideal. The site (tests/harness/site.py) runs threaded in the bench process;
sesshud runs as a subprocess against moto, fed ~50 messages ahead (more for
more workers). Past 16 workers this machine cannot reach the ideal (a few
hundred jobs/s is what its two cores give); what matters there is that
adding workers past the knee does not lose throughput, so 64 and 128
workers are compared with 32.
"""

from __future__ import annotations

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
    efficiency = {}
    rates: dict[int, float] = {}
    with FixtureSite({"/robots.txt": Route(body=ROBOTS, delay=DELAY,
                                           headers={"Content-Type": "text/plain"})}) as site:
        for n in (*WORKERS, *MANY):
            progress(f"io scaling: http_robots, {n} workers")
            r = sesshud_round(bench, warmup, window, workers=n, plugins=["http_robots"],
                              body=lambda i: request("http_robots", f"{site.url}/page/{i}"),
                              visible=min(200, max(50, 4 * n)), name=f"io-{n}", start_timeout=180)
            rates[n] = r["rate"]
            ideal = n / DELAY
            efficiency[n] = r["rate"] / ideal
            rows.append([n, f"{r['rate']:.1f}", f"{ideal:.0f}", f"{efficiency[n]:.2f}",
                         f"{1000 * r['cpu']['sesshud master'] / max(1, r['jobs']):.2f}"])
            progress(f"  -> {r['rate']:.1f} jobs/s = {efficiency[n]:.2f} of ideal")
    top = WORKERS[-1]
    note = ", ".join(f"{n}: {efficiency[n]:.2f}" for n in WORKERS)
    section.figures.append(Figure(f"http_robots at {top} workers, jobs/s over ideal ({top}/0.1 s)",
                                  f"{efficiency[top]:.2f}", f">= {TARGET}", check(efficiency[top], at_least=TARGET),
                                  f"by workers: {note}"))
    base = MANY[0]
    for n in MANY[1:]:
        ratio = rates[n] / rates[base]
        section.figures.append(Figure(f"http_robots, 100 ms site: jobs/s at {n} workers over {base} workers",
                                      f"{ratio:.2f}x", f">= {TARGET_MANY}x", check(ratio, at_least=TARGET_MANY),
                                      f"{rates[n]:.0f} vs {rates[base]:.0f} jobs/s ({efficiency[n]:.2f} and "
                                      f"{efficiency[base]:.2f} of ideal)"))
    section.details.append(
        f"/robots.txt answers after {DELAY * 1000:.0f} ms; windows of {window:g} s after {warmup:g} s warm-up.\n\n"
        + table(["workers", "jobs/s", "ideal jobs/s", "measured / ideal", "master CPU ms/job"], rows))
    return section
