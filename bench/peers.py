"""``--peers``: sesshud versus Celery (prefork, -c 4) on the same SQS server.

Celery runs ``bench.celery_app``'s no-op task through kombu's SQS transport
against the same moto server; sesshud runs its no-op plugin with 4 workers.
Both are fed by the same kind of :class:`~bench.feeder.Feeder` (Celery's
messages are copies of one that Celery itself produced, with fresh ids) and
timed the same way. Celery does less per job: it publishes no result.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from typing import Any

from bench.common import Bench, Figure, Section, check, median, progress, quiet_env, table, wait_until
from bench.feeder import Body, Feeder, client, make_queue
from bench.throughput import CpuMeter, _measure, sesshud_round

TARGET = 5.0


def _template(bench: Bench) -> dict[str, Any]:
    """One message exactly as Celery sends it, decoded."""
    queue_name = f"bench-celery-capture-{uuid.uuid4().hex[:6]}"
    queue = make_queue(bench.moto.url, queue_name)
    code = ("from bench.celery_app import noop; noop.delay('n:64:x')")
    env = {**quiet_env(), "BENCH_SQS_ENDPOINT": bench.moto.url, "BENCH_CELERY_QUEUE": queue_name}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    msg = client("sqs", bench.moto.url).receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]
    return json.loads(base64.b64decode(msg["Body"]))  # type: ignore[no-any-return]


def celery_body(template: dict[str, Any], queue_name: str) -> Body:
    def body(i: int) -> str:
        doc = json.loads(json.dumps(template))
        task_id = str(uuid.uuid4())
        doc["headers"].update(id=task_id, root_id=task_id)
        doc["properties"].update(correlation_id=task_id, delivery_tag=str(uuid.uuid4()))
        doc["properties"]["delivery_info"]["routing_key"] = queue_name
        return base64.b64encode(json.dumps(doc).encode()).decode()
    return body


def celery_round(bench: Bench, template: dict[str, Any], warmup: float, window: float) -> dict[str, Any]:
    queue_name = f"bench-celery-{uuid.uuid4().hex[:6]}"
    queue = make_queue(bench.moto.url, queue_name)
    feeder = Feeder(bench.moto.url, queue, celery_body(template, queue_name)).start()
    env = {**quiet_env(), "BENCH_SQS_ENDPOINT": bench.moto.url, "BENCH_CELERY_QUEUE": queue_name}
    with open(bench.tmp / f"{queue_name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-P", "prefork",
                                 "-c", "4", "-Q", queue_name, "--without-gossip", "--without-mingle",
                                 "--without-heartbeat", "--loglevel", "WARNING"],
                                env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is None and feeder.completed()[1] > 0, 60, "Celery to take jobs", 0.2)
        meter = CpuMeter({"moto": (bench.moto.pid(), False), "celery (all processes)": (proc.pid, True)})
        return _measure(feeder, meter, warmup, window)
    finally:
        feeder.stop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)


def run(bench: Bench) -> Section:
    section = Section("Peers")
    rounds, warmup, window = bench.size(2, 1), bench.size(2.0, 1.5), bench.size(12.0, 4.0)
    template = _template(bench)
    cel: list[dict[str, Any]] = []
    ses: list[dict[str, Any]] = []
    for i in range(rounds):
        for side in (("celery", "sesshud") if i % 2 == 0 else ("sesshud", "celery")):
            progress(f"peers round {i + 1}/{rounds}: {side}")
            if side == "celery":
                cel.append(celery_round(bench, template, warmup, window))
                progress(f"  -> Celery prefork -c 4: {cel[-1]['rate']:.0f} jobs/s")
            else:
                ses.append(sesshud_round(bench, warmup, window, name="peers-sesshud"))
                progress(f"  -> sesshud: {ses[-1]['rate']:.0f} jobs/s")
    r_cel, r_ses = median([r["rate"] for r in cel]), median([r["rate"] for r in ses])
    ratio = r_ses / r_cel
    section.figures.append(Figure("sesshud / Celery prefork -c 4 (kombu SQS), no-op", f"{ratio:.2f}x",
                                  f">= {TARGET:g}x", check(ratio, at_least=TARGET),
                                  f"sesshud {r_ses:.0f} vs Celery {r_cel:.0f} jobs/s; Celery publishes no results"))
    rows = []
    for label, runs in (("Celery", cel), ("sesshud", ses)):
        for i, r in enumerate(runs):
            cpu = ", ".join(f"{k} {1000 * v / max(1, r['jobs']):.2f}" for k, v in r["cpu"].items())
            rows.append([f"{label}, round {i + 1}", f"{r['rate']:.0f}", r["jobs"], cpu])
    section.details.append(f"Windows of {window:g} s after {warmup:g} s warm-up.\n\n"
                           + table(["run", "jobs/s", "jobs in window", "CPU ms per job, by process"], rows))
    return section
