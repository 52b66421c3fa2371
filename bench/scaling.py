"""How cost grows: throughput and requests per job as workers go 1 -> 16
(1 KiB results) and as results grow 1 KiB -> 200 KiB (4 workers).

Each point is a fresh sesshud talking through a fresh counting proxy, fed ~50
messages ahead; jobs and requests are counted over the same window. The
4-worker, 1 KiB point is the reference each row is compared with.
"""

from __future__ import annotations

from typing import Any

from bench.common import Bench, Figure, Section, progress, table
from bench.proxy import CountingProxy
from bench.throughput import noop_body, sesshud_round

WORKERS = (1, 2, 4, 8, 16)
SIZES_KIB = (1, 10, 50, 100, 200)
SNS_BATCH_LIMIT = 256 * 1024  # real SNS: total size of one PublishBatch


def _point(bench: Bench, workers: int, kib: int, warmup: float, window: float) -> dict[str, Any]:
    with CountingProxy(bench.moto.url) as proxy:
        r = sesshud_round(bench, warmup, window, proxy=proxy, workers=workers, body=noop_body(kib * 1024),
                          name=f"scale-{workers}w-{kib}k")
        counts = proxy.counts()
        r["largest_publish"] = counts["largest"].get("sns:PublishBatch", 0)
    r["per_job"] = sum(r["requests"].values()) / max(1, r["jobs"])
    r["received_per_job"] = r["entries"].get("sqs:ReceiveMessage", 0) / max(1, r["jobs"])
    return r


def run(bench: Bench) -> Section:
    section = Section("Scaling")
    warmup, window = bench.size(1.5, 1.0), bench.size(5.0, 2.0)
    points: dict[tuple[int, int], dict[str, Any]] = {}
    for workers, kib in [*((w, 1) for w in WORKERS), *((4, k) for k in SIZES_KIB if k != 1)]:
        progress(f"scaling: {workers} workers, {kib} KiB results")
        points[(workers, kib)] = p = _point(bench, workers, kib, warmup, window)
        progress(f"  -> {p['rate']:.0f} jobs/s, {p['per_job']:.3f} requests/job")
    ref = points[(4, 1)]

    def row(key: tuple[int, int]) -> list[Any]:
        p = points[key]
        cpu = 1000 * (p["cpu"]["sesshud master"]) / max(1, p["jobs"])
        big = p["largest_publish"]
        flag = f"{big / 1024:.0f} KiB" + (" (over SNS's 256 KiB)" if big > SNS_BATCH_LIMIT else "") if big else "-"
        return [key[0], key[1], f"{p['rate']:.0f}", f"{p['rate'] / ref['rate']:.2f}", f"{p['per_job']:.3f}",
                f"{p['received_per_job']:.2f}", f"{cpu:.2f}", flag]

    header = ["workers", "result KiB", "jobs/s", "vs 4 w, 1 KiB", "requests/job", "received/completed",
              "master CPU ms/job", "largest PublishBatch"]
    section.details.append(
        f"Windows of {window:g} s after {warmup:g} s warm-up, through the counting proxy. "
        "received/completed is messages received per message completed (published and deleted) in the "
        "window: above 1, results are piling up unsent in the daemon.\n\n"
        + table(header, [row((w, 1)) for w in WORKERS]) + "\n\n"
        + table(header, [row((4, k)) for k in SIZES_KIB]))
    over = [k for k in SIZES_KIB if points[(4, k)]["largest_publish"] > SNS_BATCH_LIMIT]
    top, big = points[(WORKERS[-1], 1)], points[(4, SIZES_KIB[-1])]
    size_note = f"requests/job {ref['per_job']:.2f} -> {big['per_job']:.2f}"
    if big["received_per_job"] > 1.2:
        size_note += (f"; {big['received_per_job']:.2f} messages received per job completed: results were "
                      "waiting unsent in the daemon")
    if over:
        size_note += (f"; PublishBatch bodies over SNS's 256 KiB limit at {', '.join(map(str, over))} KiB "
                      "(moto accepts them, AWS would not)")
    first = points[(WORKERS[0], 1)]
    section.figures += [
        Figure(f"Throughput {WORKERS[0]} -> {WORKERS[-1]} workers (no-op, 1 KiB)",
               f"{first['rate'] / ref['rate']:.2f}x -> {top['rate'] / ref['rate']:.2f}x of 4 workers",
               "", None, f"requests/job {first['per_job']:.2f} -> {top['per_job']:.2f}"),
        Figure(f"Throughput 1 -> {SIZES_KIB[-1]} KiB results (4 workers)",
               f"{big['rate'] / ref['rate']:.2f}x of 1 KiB", "", None, size_note),
    ]
    return section
