"""A host at fleet scale: 256 workers waiting on slow sites, 20 ms per AWS request.

http_robots against a loopback site whose /robots.txt answers after 1 s, so
each worker spends its job waiting and 256 workers could complete 256 jobs a
second; the figure is measured jobs/s over that ideal. sesshud talks to the
server through the proxy at the bench's round trip per AWS request (20 ms),
so every receive, publish and delete costs what it would cost against SQS and
SNS. The feeder keeps more messages waiting than there are workers. Start-up
is not measured: the window opens once every worker is idle and a warm-up
has passed, and ends before the feeder stops.

While the daemon is still busy after the window, the memory of a sample of
its slots is read (psutil; USS is what a process alone holds): the runner
that runs the plugin and the keeper beside it.
"""

from __future__ import annotations

import os

from bench import cpusplit
from bench.common import Bench, Figure, Section, at, check, progress, table
from bench.feeder import request
from bench.memory import uss_sample
from bench.proxy import CountingProxy
from bench.sesshud import Sesshud, accepts
from bench.throughput import host_took, sesshud_round
from tests.harness.site import FixtureSite, Route

WORKERS = 256
SITE_DELAY = 1.0
TARGET = 0.90
ROBOTS = b"User-agent: *\nDisallow: /private/\nAllow: /\n"


def _memory(daemon: Sesshud) -> dict[str, dict[str, float]]:
    return {"runner, busy": uss_sample(daemon, "sesshud: worker http_robots"),
            "keeper": uss_sample(daemon, "sesshud: keeper")}


def run(bench: Bench) -> Section:
    section = Section("Fleet scale")
    delay = bench.delay
    warmup, window = bench.size(4.0, 3.0), bench.size(8.0, 4.0)
    knows = {key: accepts({key: "auto"}, bench.tmp) for key in ("senders", "receivers")}
    with FixtureSite({"/robots.txt": Route(body=ROBOTS, delay=SITE_DELAY,
                                           headers={"Content-Type": "text/plain"})}) as site, \
            CountingProxy(bench.moto.url, delay) as proxy:
        progress(f"fleet: http_robots on a {SITE_DELAY:g} s site, {WORKERS} workers{at(delay)}")
        r = sesshud_round(bench, warmup, window, proxy=proxy, workers=WORKERS, plugins=["http_robots"],
                          body=lambda i: request("http_robots", f"{site.url}/page/{i}"),
                          visible=WORKERS + 100, name="fleet", start_timeout=300, during=_memory,
                          meter_self=True)
    ideal = WORKERS / SITE_DELAY
    cores = sum(r["cpu"].values()) / window
    ratio = r["rate"] / ideal
    jobs = max(1, r["jobs"])
    per_job = sum(r["requests"].values()) / jobs
    mem: dict[str, dict[str, float]] = r["during"]
    progress(f"  -> {r['rate']:.0f} jobs/s = {ratio:.2f} of ideal, {per_job:.3f} requests/job")
    section.figures += [
        Figure(f"I/O-bound, {SITE_DELAY:g} s site, {WORKERS} workers{at(delay)}: jobs/s over ideal "
               f"({ideal:.0f}/s)", f"{ratio:.2f}", f">= {TARGET}", check(ratio, at_least=TARGET),
               ("" if check(ratio, at_least=TARGET) else "Missed. ")
               + f"{r['rate']:.0f} jobs/s; {per_job:.3f} requests/job; master CPU "
               f"{1000 * r['cpu']['sesshud master'] / jobs:.2f} ms/job; the server, sesshud, proxy, feeder and "
               f"site used {cores:.2f} of {os.cpu_count()} cores (details below); sesshud CPU ms per job by part: "
               f"{cpusplit.split_text(r['split'], r['jobs'])}"),
        Figure(f"USS per busy runner / keeper at {WORKERS} workers",
               f"{mem['runner, busy']['uss']:.1f} / {mem['keeper']['uss']:.1f} MiB", "report", None,
               f"median of {mem['runner, busy']['n']} runners and {mem['keeper']['n']} keepers; "
               f"{WORKERS} slots hold about {WORKERS * (mem['runner, busy']['uss'] + mem['keeper']['uss']) / 1024:.1f}"
               " GiB of their own"),
    ]
    ops = ", ".join(f"{op} {n / jobs:.3f}" for op, n in sorted(r["requests"].items()))
    cpu = ", ".join(f"{k} {1000 * v / jobs:.2f}" for k, v in r["cpu"].items())
    section.details.append(
        f"/robots.txt answers after {SITE_DELAY * 1000:.0f} ms; {1000 * delay:g} ms per AWS request; "
        f"{WORKERS} workers, default settings (bus.senders and bus.receivers: "
        + ", ".join(f"{k} {'left to the daemon' if v else 'not known to this daemon'}" for k, v in knows.items())
        + f"); ~{WORKERS + 100} messages kept waiting; window of {window:g} s after all workers were idle and "
        f"{warmup:g} s of warm-up.\n\n"
        + table(["jobs/s", "ideal", "jobs in window", "requests per job, by operation", "CPU ms per job",
                 "cores used, all of these", "cores the host took (steal)"],
                [[f"{r['rate']:.0f}", f"{ideal:.0f}", r["jobs"], ops, cpu, f"{cores:.2f} of {os.cpu_count()}",
                  host_took(r)]])
        + "\n\nMemory while busy, MiB (median of a sample):\n\n"
        + table(["process", "RSS", "USS", "sampled"],
                [[name, f"{m['rss']:.1f}", f"{m['uss']:.1f}", m["n"]] for name, m in mem.items()]))
    return section
