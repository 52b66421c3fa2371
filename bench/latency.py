"""Latency a job sees at light load: send -> result received, minus plugin time.

One job at a time, 50 ms apart: the bench sends a request to the input
queue, then long-polls the results queue (subscribed to the results topic
with raw delivery) until that job's result arrives. The plugin reports its
own run time (``took``), which is subtracted. The same is measured for the
threaded raw boto3 loop (``bench.rawloop``: 2 receiver threads long-polling
20 s like sesshud's default, 4 sender threads, 4 worker threads, sesshud's
SNS body encoding) in the same run, so what sesshu adds on top of a minimal
worker shows beside the absolute figure; both include moto's own request
handling. The target: sesshud's median at most 1.5 ms above the raw loop's.
Then both again through the proxy at the bench's round trip per AWS request
(20 ms): there the figure is sesshud's p50 over the raw loop's, as the
absolute value is mostly round trips. The probe itself talks to the server
directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import rawloop
from bench.common import Bench, Figure, Section, at, check, median, percentile, progress, quiet_env, table
from bench.feeder import client, make_queue, make_topic, request
from bench.proxy import CountingProxy
from bench.sesshud import Sesshud, stop_all, write_config

TARGET_P50 = 0.050
TARGET_FAR_RATIO = 1.2  # sesshud's p50 over the raw loop's, with a round trip per request
TARGET_LATER = 0.0015  # sesshud's p50 minus the threaded raw loop's: how much later a result is published
GAP = 0.05


def _probe(bench: Bench, queue: str, results: str, n: int) -> list[float]:
    """Send ``n`` jobs one at a time; return each one's latency minus plugin time, in seconds."""
    sqs = client("sqs", bench.moto.url)
    out = []
    for i in range(n):
        tag = uuid.uuid4().hex[:8]
        t0 = time.monotonic()
        sqs.send_message(QueueUrl=queue, MessageBody=request("noop", f"n:64:{tag}"))
        took = None
        while took is None:
            msgs = sqs.receive_message(QueueUrl=results, MaxNumberOfMessages=1, WaitTimeSeconds=10).get("Messages")
            if not msgs:
                raise TimeoutError(f"no result within 10 s for job {i}")
            t1 = time.monotonic()
            doc = json.loads(msgs[0]["Body"])
            sqs.delete_message(QueueUrl=results, ReceiptHandle=msgs[0]["ReceiptHandle"])
            if doc["result"].get("tag") == tag:
                took = float(doc["result"]["took"])
        out.append(t1 - t0 - took)
        time.sleep(GAP)
    return out


def _deployment(bench: Bench, name: str) -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:6]
    results = make_queue(bench.moto.url, f"{name}-results-{tag}")
    topic = make_topic(bench.moto.url, f"{name}-out-{tag}", results_queue=results)
    return make_queue(bench.moto.url, f"{name}-{tag}"), topic, results


def sesshud_block(bench: Bench, n: int, endpoint: str) -> list[float]:
    queue, topic, results = _deployment(bench, "lat-sesshud")
    config = write_config(bench.tmp / f"lat-{uuid.uuid4().hex[:6]}.yaml", endpoint=endpoint,
                          queue=queue, topic=topic)
    daemon = Sesshud(config).start()
    try:
        daemon.wait_idle_workers(4)
        _probe(bench, queue, results, 3)  # warm-up
        return _probe(bench, queue, results, n)
    finally:
        stop_all([daemon])


def raw_block(bench: Bench, n: int, endpoint: str) -> list[float]:
    queue, topic, results = _deployment(bench, "lat-raw")
    proc = subprocess.Popen([sys.executable, *rawloop.command(endpoint, queue, topic, wait=20)], env=quiet_env())
    try:
        _probe(bench, queue, results, 3)
        return _probe(bench, queue, results, n)
    finally:
        proc.terminate()
        proc.wait(30)


def _ms(x: float) -> str:
    return f"{1000 * x:.1f} ms"


def _samples(bench: Bench, delay: float, n: int, blocks: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"sesshud": [], "raw loop": []}
    runners: dict[str, Callable[[Bench, int, str], list[float]]] = {"sesshud": sesshud_block,
                                                                     "raw loop": raw_block}
    proxy = CountingProxy(bench.moto.url, delay).start() if delay else None
    try:
        for b in range(blocks):
            for side in (("sesshud", "raw loop") if b % 2 == 0 else ("raw loop", "sesshud")):
                progress(f"latency{at(delay)}, block {b + 1}/{blocks}: {side}, {n} jobs one at a time")
                got = runners[side](bench, n, proxy.url if proxy else bench.moto.url)
                samples[side] += got
                progress(f"  -> p50 {_ms(median(got))}, p99 {_ms(percentile(got, 99))}")
    finally:
        if proxy is not None:
            proxy.stop()
    return samples


def run(bench: Bench) -> Section:
    section = Section("Latency at light load")
    n, blocks = bench.size(100, 30), bench.size(2, 1)
    for delay in bench.delays:
        samples = _samples(bench, delay, n, blocks)
        ses, raw = samples["sesshud"], samples["raw loop"]
        p50, p99, ratio = median(ses), percentile(ses, 99), median(ses) / median(raw)
        later = p50 - median(raw)
        section.figures.append(Figure(
            f"p50 send -> result received, sesshud minus the threaded raw loop{at(delay)}", _ms(later),
            f"<= {_ms(TARGET_LATER)}", check(later, at_most=TARGET_LATER),
            ("" if check(later, at_most=TARGET_LATER) else "Missed. ")
            + f"sesshud {_ms(p50)}, {rawloop.describe()} {_ms(median(raw))}, medians of {len(ses)} jobs each"
            + (", both through the proxy" if delay else "")))
        if delay:
            section.figures.append(Figure(
                f"p50 send -> result received, minus plugin time, over the raw loop's{at(delay)}",
                f"{ratio:.2f}x", f"<= {TARGET_FAR_RATIO}x", check(ratio, at_most=TARGET_FAR_RATIO),
                f"sesshud {_ms(p50)} (p99 {_ms(p99)}), threaded raw boto3 loop {_ms(median(raw))} "
                f"(p99 {_ms(percentile(raw, 99))}), both through the proxy"))
        else:
            section.figures += [
                Figure("p50 send -> result received, minus plugin time", _ms(p50), f"<= {_ms(TARGET_P50)}",
                       check(p50, at_most=TARGET_P50),
                       f"threaded raw boto3 loop in the same run: {_ms(median(raw))} (sesshud/raw {ratio:.2f}x)"),
                Figure("p99 send -> result received, minus plugin time", _ms(p99), "", None,
                       f"raw boto3 loop: {_ms(percentile(raw, 99))}"),
            ]
        rows: list[list[Any]] = [[side, len(v), _ms(median(v)), _ms(percentile(v, 90)), _ms(percentile(v, 99)),
                                  _ms(max(v))] for side, v in samples.items()]
        how = f"through the proxy, {1000 * delay:g} ms per AWS request" if delay else "straight to the server"
        section.details.append(
            f"{how.capitalize()}: {len(ses)} jobs per side, one at a time, {GAP * 1000:.0f} ms apart, 4 workers, "
            "default settings.\n\n" + table(["worker", "jobs", "p50", "p90", "p99", "max"], rows))
    return section
