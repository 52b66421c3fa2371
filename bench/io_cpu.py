"""CPU per job with an I/O-like plugin: jobs that wait 20 ms each, on 16 workers.

The bench no-op plugin's ``io:20`` target sleeps 20 ms, as a plugin waiting
on a remote answer would, and uses next to no CPU itself; what a job costs
is then the worker's own bookkeeping. sesshud runs it on 16 workers (so 2
receiver lanes and 4 sender lanes, its defaults for 16); the threaded raw
loop (``bench.rawloop``) on 16 worker threads with 2 receiver and 4 sender
threads, publishing with sesshud's SNS body encoding. Both are fed ~64
messages ahead by the same feeder, rounds alternate, and CPU is read from
``/proc`` over each window, sesshud's split into its master's loop thread,
its bus threads, its keepers and its runners. Measured on loopback, then
through the proxy at the bench's round trip per AWS request (20 ms).
"""

from __future__ import annotations

from bench import cpusplit, rawloop
from bench.common import Bench, Figure, Section, at, check, cpu_ms, median, table
from bench.feeder import request
from bench.throughput import _cpu_row, alternate, children_ms, split_note, tree_ms

WORKERS = 16
WAIT_MS = 20
VISIBLE = 64
TARGET_CHILDREN_MS = 0.25


def body(i: int) -> str:
    return request("noop", f"io:{WAIT_MS}:{i}")


def run(bench: Bench) -> Section:
    section = Section("CPU per job, I/O-like plugin")
    rounds, warmup, window = bench.size(2, 1), bench.size(2.0, 1.5), bench.size(8.0, 4.0)
    for delay in bench.delays:
        raw, ses = alternate(
            bench, delay, rounds, warmup, window, f"io cpu: {WAIT_MS} ms jobs, {WORKERS} workers",
            raw={"body": body, "name": "iocpu-raw", "workers": WORKERS, "visible": VISIBLE},
            sesshud={"body": body, "name": "iocpu-sesshud", "workers": WORKERS, "visible": VISIBLE,
                     "start_timeout": 180})
        kids = median([children_ms(r) for r in ses])
        met = check(kids, at_most=TARGET_CHILDREN_MS)
        section.figures.append(Figure(
            f"CPU per job, sesshud children (keepers + runners), {WAIT_MS} ms I/O-like plugin, {WORKERS} workers"
            f"{at(delay)}", f"{kids:.3f} ms", f"<= {TARGET_CHILDREN_MS} ms", met,
            "keepers and runners, read from /proc by process title" + ("" if met else ". Missed; " + split_note(ses))))
        t_ses, t_raw = median([tree_ms(r) for r in ses]), median([tree_ms(r) for r in raw])
        r_ses, r_raw = median([r["rate"] for r in ses]), median([r["rate"] for r in raw])
        section.figures.append(Figure(
            f"CPU per job, sesshud whole tree / raw loop, {WAIT_MS} ms I/O-like plugin, {WORKERS} workers{at(delay)}",
            f"{t_ses / t_raw:.2f}x", "", None,
            f"sesshud {t_ses:.3f} ms vs {rawloop.describe(workers=WORKERS)} {t_raw:.3f} ms per job; "
            f"jobs/s: sesshud {r_ses:.0f}, raw loop {r_raw:.0f} (ideal {WORKERS * 1000 / WAIT_MS:.0f}); "
            f"medians of {rounds}"))
        rows = [_cpu_row(f"raw loop, round {i + 1}", r) for i, r in enumerate(raw)]
        rows += [_cpu_row(f"sesshud, round {i + 1}", r) for i, r in enumerate(ses)]
        split_rows = [[f"sesshud, round {i + 1}", *(f"{1000 * r['split'][p] / max(1, r['jobs']):.3f}"
                                                    for p in cpusplit.PARTS)] for i, r in enumerate(ses)]
        split_rows += [[f"raw loop, round {i + 1} (one process)", f"{cpu_ms(r, 'raw loop'):.3f}", "-", "-", "-", "-"]
                       for i, r in enumerate(raw)]
        how = f"through the proxy, {1000 * delay:g} ms per AWS request" if delay else "straight to the server"
        section.details.append(
            f"{how.capitalize()}: `io:{WAIT_MS}` jobs, {WORKERS} workers, windows of {window:g} s after {warmup:g} s "
            f"of warm-up, ~{VISIBLE} messages kept waiting.\n\n"
            + table(["run", "jobs/s", "jobs in window", "CPU ms per job, by process",
                     "server ms per request (through the proxy, its delay left out)",
                     "cores the host took (steal)"], rows)
            + "\n\nsesshud's CPU ms per job by part:\n\n" + table(["run", *cpusplit.PARTS], split_rows))
    return section
