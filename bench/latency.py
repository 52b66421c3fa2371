"""Latency a job sees at light load: send -> result received, minus plugin time.

One job at a time, 50 ms apart: the bench sends a request to the input
queue, then long-polls the results queue (subscribed to the results topic
with raw delivery) until that job's result arrives. The plugin reports its
own run time (``took``), which is subtracted. The same is measured for the
raw boto3 loop (``bench.rawloop``, long-polling 20 s like sesshud's default)
in the same run, so what sesshu adds on top of a minimal worker shows
beside the absolute figure; both include moto's own request handling.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import Bench, Figure, Section, check, median, percentile, progress, quiet_env, table
from bench.feeder import client, make_queue, make_topic, request
from bench.sesshud import Sesshud, stop_all, write_config

TARGET_P50 = 0.050
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


def sesshud_block(bench: Bench, n: int) -> list[float]:
    queue, topic, results = _deployment(bench, "lat-sesshud")
    config = write_config(bench.tmp / f"lat-{uuid.uuid4().hex[:6]}.yaml", endpoint=bench.moto.url,
                          queue=queue, topic=topic)
    daemon = Sesshud(config).start()
    try:
        daemon.wait_idle_workers(4)
        _probe(bench, queue, results, 3)  # warm-up
        return _probe(bench, queue, results, n)
    finally:
        stop_all([daemon])


def raw_block(bench: Bench, n: int) -> list[float]:
    queue, topic, results = _deployment(bench, "lat-raw")
    proc = subprocess.Popen([sys.executable, "-m", "bench.rawloop", "--endpoint", bench.moto.url, "--queue", queue,
                             "--topic", topic, "--wait", "20"], env=quiet_env())
    try:
        _probe(bench, queue, results, 3)
        return _probe(bench, queue, results, n)
    finally:
        proc.terminate()
        proc.wait(30)


def _ms(x: float) -> str:
    return f"{1000 * x:.1f} ms"


def run(bench: Bench) -> Section:
    section = Section("Latency at light load")
    n, blocks = bench.size(100, 30), bench.size(2, 1)
    samples: dict[str, list[float]] = {"sesshud": [], "raw loop": []}
    runners: dict[str, Callable[[Bench, int], list[float]]] = {"sesshud": sesshud_block, "raw loop": raw_block}
    for b in range(blocks):
        for side in (("sesshud", "raw loop") if b % 2 == 0 else ("raw loop", "sesshud")):
            progress(f"latency block {b + 1}/{blocks}: {side}, {n} jobs one at a time")
            got = runners[side](bench, n)
            samples[side] += got
            progress(f"  -> p50 {_ms(median(got))}, p99 {_ms(percentile(got, 99))}")
    ses, raw = samples["sesshud"], samples["raw loop"]
    p50, p99 = median(ses), percentile(ses, 99)
    rows: list[list[Any]] = [[side, len(v), _ms(median(v)), _ms(percentile(v, 90)), _ms(percentile(v, 99)),
                              _ms(max(v))] for side, v in samples.items()]
    section.figures += [
        Figure("p50 send -> result received, minus plugin time", _ms(p50), f"<= {_ms(TARGET_P50)}",
               check(p50, at_most=TARGET_P50),
               f"raw boto3 loop in the same run: {_ms(median(raw))} (sesshud/raw {p50 / median(raw):.2f}x)"),
        Figure("p99 send -> result received, minus plugin time", _ms(p99), "", None,
               f"raw boto3 loop: {_ms(percentile(raw, 99))}"),
    ]
    section.details.append(
        f"{len(ses)} jobs per side, one at a time, {GAP * 1000:.0f} ms apart, 4 workers, default settings.\n\n"
        + table(["worker", "jobs", "p50", "p90", "p99", "max"], rows))
    return section
