"""Large results: 200 KiB per job, sesshud against a raw loop that respects SNS's batch limit.

Both take the bench no-op plugin's ``n:204800`` jobs (each result carries
200 KiB of filler) and talk to the server through the counting proxy, so the
requests each side makes in the window are counted the same way. The raw
loop (``bench.rawloop``, threaded as sesshud's bus is: 2 receiver threads, 4
sender threads, 4 worker threads, and sesshud's SNS body encoding) cannot
put two such results into one ``PublishBatch`` (SNS takes 256 KiB per
batch), so it publishes each alone and deletes up to ten in one batch: 1.2
requests per job at best. The floor for sesshud is the same. Rounds
alternate which side goes first; 4 workers.

Measured on loopback, then once more at the bench's round trip per AWS
request (20 ms). Where the daemon knows ``bus.output.s3_threshold``, a third
contender sends results above 64 KiB to S3 (``bus.output.s3_bucket``) instead
of SNS, which shows whether the threshold pays on this machine.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench import rawloop
from bench.common import Bench, Figure, Section, at, check, cpu_ms, median, progress, table
from bench.feeder import client
from bench.proxy import CountingProxy
from bench.sesshud import accepts
from bench.throughput import noop_body, raw_round, sesshud_round, split_note

SIZE = 200 * 1024
TARGET_REQUESTS = 1.25
TARGET_RATIO = 0.95
S3_THRESHOLD = 64 * 1024


def _published(r: dict[str, Any]) -> int:
    """Results published in the window (one per job, S3 pointers included)."""
    return int(r["entries"].get("sns:PublishBatch", 0) + r["requests"].get("sns:Publish", 0))


def _per_job(r: dict[str, Any]) -> float:
    # Jobs are counted as results published, not as messages gone from the
    # queue: deletes go ten at a time (sesshud lingers up to a second to fill
    # a batch), so at ten jobs a second a window counts deletions in steps of
    # ten, which would swing requests per job by a tenth or more.
    return sum(r["requests"].values()) / max(1, _published(r))


def _rate(r: dict[str, Any]) -> float:
    return float(r["rate"]) * _published(r) / max(1, r["jobs"])


def _s3(bench: Bench) -> dict[str, Any] | None:
    """The ``bus:`` keys that send large results to S3, if this daemon knows ``s3_threshold``; else None."""
    bucket = f"bench-large-{uuid.uuid4().hex[:8]}"
    bus = {"output": {"s3_bucket": bucket, "s3_threshold": S3_THRESHOLD}}
    if not accepts(bus, bench.tmp):
        return None
    client("s3", bench.moto.url).create_bucket(Bucket=bucket)
    return bus


def _contenders(bench: Bench) -> dict[str, dict[str, Any] | None]:
    """Name -> the sesshud ``bus:`` additions, or None for the raw loop."""
    out: dict[str, dict[str, Any] | None] = {"raw loop": None, "sesshud": {}}
    s3 = _s3(bench)
    if s3 is not None:
        out[f"sesshud, s3_threshold {S3_THRESHOLD // 1024} KiB"] = s3
    return out


def _rounds(bench: Bench, delay: float, rounds: int, warmup: float, window: float,
            contenders: dict[str, dict[str, Any] | None]) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    with CountingProxy(bench.moto.url, delay) as proxy:
        for i in range(rounds):
            names = list(contenders) if i % 2 == 0 else list(reversed(contenders))
            for name in names:
                progress(f"large results{at(delay)}, round {i + 1}/{rounds}: {name}")
                bus = contenders[name]
                body = noop_body(SIZE)
                if bus is None:
                    r = raw_round(bench, warmup, window, proxy=proxy, body=body, name="large-raw")
                else:
                    r = sesshud_round(bench, warmup, window, proxy=proxy, body=body, bus=bus or None,
                                      name="large-sesshud")
                results[name].append(r)
                progress(f"  -> {_rate(r):.1f} jobs/s, {_per_job(r):.3f} requests/job")
    return results


def run(bench: Bench) -> Section:
    section = Section("Large results")
    # Long windows: the raw loop completes its jobs ten at a time, so a short window counts in steps of ten.
    warmup, window = bench.size(2.0, 1.5), bench.size(12.0, 4.0)
    contenders = _contenders(bench)
    rows: list[list[Any]] = []
    for delay in bench.delays:
        rounds = bench.size(2, 1) if not delay else 1
        results = _rounds(bench, delay, rounds, warmup, window if not delay else bench.size(8.0, 4.0), contenders)
        rate = {name: median([_rate(r) for r in rs]) for name, rs in results.items()}
        per_job = {name: median([_per_job(r) for r in rs]) for name, rs in results.items()}
        ratio = rate["sesshud"] / rate["raw loop"]
        section.figures += [
            Figure(f"{SIZE // 1024} KiB results: requests per job{at(delay)}", f"{per_job['sesshud']:.3f}",
                   f"<= {TARGET_REQUESTS} (floor 1.2)", check(per_job["sesshud"], at_most=TARGET_REQUESTS),
                   f"raw loop: {per_job['raw loop']:.3f}"),
            Figure(f"{SIZE // 1024} KiB results: jobs/s, sesshud / raw loop within SNS's 256 KiB batch limit"
                   f"{at(delay)}", f"{ratio:.2f}x", f">= {TARGET_RATIO}x" if not delay else "",
                   check(ratio, at_least=TARGET_RATIO) if not delay else None,
                   ("" if delay or check(ratio, at_least=TARGET_RATIO) else "Missed. ")
                   + f"sesshud {rate['sesshud']:.1f} vs raw loop {rate['raw loop']:.1f} jobs/s"
                   + ("" if delay else f" (median of {rounds})")
                   + f"; CPU ms per job: raw loop {median([cpu_ms(r, 'raw loop') for r in results['raw loop']]):.2f}, "
                   + split_note(results["sesshud"])),
        ]
        for name in contenders:
            if name.startswith("sesshud, s3"):
                section.figures.append(Figure(
                    f"{SIZE // 1024} KiB results to S3 (s3_threshold) / to SNS, jobs/s{at(delay)}",
                    f"{rate[name] / rate['sesshud']:.2f}x", "report", None,
                    f"{rate[name]:.1f} vs {rate['sesshud']:.1f} jobs/s; {per_job[name]:.3f} requests/job"))
        for name, rs in results.items():
            for i, r in enumerate(rs):
                ops = ", ".join(f"{op} {n / max(1, r['jobs']):.2f}" for op, n in sorted(r["requests"].items()))
                cpu = ", ".join(f"{k} {1000 * v / max(1, r['jobs']):.1f}" for k, v in r["cpu"].items())
                rows.append([f"{name}{at(delay)}, round {i + 1}", f"{_rate(r):.1f}", _published(r),
                             f"{_per_job(r):.3f}", ops, cpu])
    known = ("" if len(contenders) > 2 else
             " This sesshud does not know `bus.output.s3_threshold`, so the S3 contender was left out.")
    section.details.append(
        f"{SIZE // 1024} KiB results, 4 workers, both through the counting proxy; the raw side is the "
        f"{rawloop.describe()}, publishing with sesshud's SNS body encoding; a job counts when its result "
        f"is published (a window counting deletions would count in steps of ten); windows of {window:g} s on "
        f"loopback, {bench.size(8.0, 4.0):g} s at a round trip, after {warmup:g} s of warm-up.{known}\n\n"
        + table(["run", "jobs/s", "results published in window", "requests/job", "requests per job, by operation",
                 "CPU ms per job, by process"], rows))
    return section
