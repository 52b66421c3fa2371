"""sesshud versus Celery 5 doing the same job on the same SQS/SNS server, with two Celery pools.

Celery runs ``bench.celery_app``'s no-op task through kombu's SQS transport,
and publishes each result as one SNS message, as sesshud does; sesshud runs
its no-op plugin with 4 workers. Celery runs twice: with the prefork pool
(``-c 4``, a process per worker, as sesshud has), and with the thread pool
(``-P threads -c 6``: as many publishes in flight at once as sesshud has bus
lanes, 2 receivers and 4 senders, each with a request in flight). Every
contender is fed by the same kind of :class:`~bench.feeder.Feeder`
(Celery's messages are copies of one that Celery itself produced, with fresh
ids) and timed the same way. On loopback all talk to the server directly; at
the bench's round trip per AWS request (20 ms) all talk through the same
proxy, Celery's broker and SNS client included. ``bench.celery_app`` says
how Celery is configured. CPU per job is read for every contender over the
same windows; sesshud's is split by thread and process (``bench.cpusplit``).

Where sesshud misses a target, two sesshud daemons then run together on one
queue. They ask the server for twice the work one daemon does: the rate they
get together is shown beside the one daemon's, a measurement of its own.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from importlib import metadata
from typing import Any

from bench import cpusplit
from bench.common import (
    Bench,
    Figure,
    Section,
    at,
    check,
    cores_used,
    cpu_ms,
    median,
    progress,
    quiet_env,
    table,
    wait_until,
)
from bench.feeder import Body, Feeder, client, make_queue, make_topic
from bench.proxy import CountingProxy
from bench.throughput import CpuMeter, _measure, host_took, server_ms, sesshud_round, split_note, tree_ms

TARGETS = {0.0: 5.0, 0.020: 10.0}  # by round trip; issue #12
CEILING_DAEMONS = 2  # a missed target is checked against what the server gives this many daemons at once
# Celery's pools: (name, -P, -c). The thread pool's concurrency is sesshud's
# bus concurrency (2 receiver lanes and 4 sender lanes, its defaults).
POOLS = (("prefork", "prefork", 4), ("threads", "threads", 6))


def pool_label(pool: str, concurrency: int) -> str:
    return f"Celery {pool} -c {concurrency}"


def celery_key(pool: str) -> str:
    return f"celery {pool} (all processes)"


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


def celery_round(bench: Bench, template: dict[str, Any], warmup: float, window: float,
                 proxy: CountingProxy | None = None, pool: str = "prefork", concurrency: int = 4) -> dict[str, Any]:
    queue_name = f"bench-celery-{uuid.uuid4().hex[:6]}"
    queue = make_queue(bench.moto.url, queue_name)
    topic = make_topic(bench.moto.url, f"{queue_name}-out")
    feeder = Feeder(bench.moto.url, queue, celery_body(template, queue_name)).start()
    env = {**quiet_env(), "BENCH_SQS_ENDPOINT": proxy.url if proxy else bench.moto.url,
           "BENCH_CELERY_QUEUE": queue_name, "BENCH_SNS_TOPIC": topic}
    with open(bench.tmp / f"{queue_name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-P", pool,
                                 "-c", str(concurrency), "-Q", queue_name, "--without-gossip", "--without-mingle",
                                 "--without-heartbeat", "--loglevel", "WARNING"],
                                env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is None and feeder.completed()[1] > 0, 60, "Celery to take jobs", 0.2)
        meter = CpuMeter({bench.server_name: (bench.moto.pid(), False), celery_key(pool): (proc.pid, True)})
        return _measure(feeder, meter, warmup, window, proxy)
    finally:
        feeder.stop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)


def _rounds(bench: Bench, template: dict[str, Any], delay: float, rounds: int, warmup: float,
            window: float) -> dict[str, list[dict[str, Any]]]:
    """Results by contender ("sesshud", or a Celery pool's name) of alternating rounds."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in POOLS}
    out["sesshud"] = []
    proxy = CountingProxy(bench.moto.url, delay).start() if delay else None
    try:
        for i in range(rounds):
            sides = [name for name, _, _ in POOLS] + ["sesshud"]
            for side in (sides if i % 2 == 0 else sides[::-1]):
                progress(f"peers{at(delay)}, round {i + 1}/{rounds}: {side}")
                if side == "sesshud":
                    out[side].append(sesshud_round(bench, warmup, window, proxy=proxy, name="peers-sesshud",
                                                   meter_self=True))
                    progress(f"  -> sesshud: {out[side][-1]['rate']:.0f} jobs/s")
                else:
                    _, pool, concurrency = next(p for p in POOLS if p[0] == side)
                    out[side].append(celery_round(bench, template, warmup, window, proxy, pool, concurrency))
                    progress(f"  -> {pool_label(pool, concurrency)}: {out[side][-1]['rate']:.0f} jobs/s")
    finally:
        if proxy is not None:
            proxy.stop()
    return out


def _ceiling(bench: Bench, delay: float, rounds: int, warmup: float, window: float) -> list[dict[str, Any]]:
    """Two sesshud daemons on one queue: what the server gives sesshud's kind of work when asked for more."""
    out = []
    proxy = CountingProxy(bench.moto.url, delay).start() if delay else None
    try:
        for i in range(rounds):
            progress(f"peers{at(delay)}, server ceiling, round {i + 1}/{rounds}: two sesshud daemons")
            out.append(sesshud_round(bench, warmup, window, proxy=proxy, name="peers-ceiling", meter_self=True,
                                     daemons=CEILING_DAEMONS))
            progress(f"  -> two daemons together: {out[-1]['rate']:.0f} jobs/s")
    finally:
        if proxy is not None:
            proxy.stop()
    return out


def _ceiling_note(ceiling: list[dict[str, Any]], ses: list[dict[str, Any]], cel: list[dict[str, Any]],
                  target_rate: float, server: str) -> str:
    two = max(ceiling, key=lambda r: r["rate"])
    best = max([*ceiling, *ses], key=lambda r: r["rate"])
    cores = ", ".join(f"{cores_used(r, server):.2f}" for r in [*ses, *ceiling])
    celery = ", ".join(f"{cores_used(r, server):.2f}" for r in cel)
    said = (f". Asked for twice the work by {CEILING_DAEMONS} such daemons on one queue, the server gave "
            f"{two['rate']:.0f} jobs/s; the most any sesshud run here got was {best['rate']:.0f}, with the server "
            f"using {cores} of a core in those runs (under Celery: {celery})")
    if best["rate"] < target_rate:
        return said + f", below the {target_rate:.0f} jobs/s the target needs"
    return said + f": more than the {target_rate:.0f} jobs/s the target needs, so one daemon fell short of it"


def _how() -> str:
    from bench.celery_app import SETTINGS, TRANSPORT

    options = ", ".join(f"{k} {v}" for k, v in TRANSPORT.items() if k not in ("region", "is_secure"))
    pools = " and ".join(f"`celery worker -P {pool} -c {c} --without-gossip --without-mingle --without-heartbeat`"
                         for _, pool, c in POOLS)
    return (f"Celery {metadata.version('celery')} (kombu {metadata.version('kombu')}), {pools}, "
            f"worker_prefetch_multiplier {SETTINGS['worker_prefetch_multiplier']}, task_acks_late "
            f"{SETTINGS['task_acks_late']} (the message is deleted as the task starts), result backend off; SQS "
            f"transport options: {options}. Each task publishes its result as one SNS message (stock boto3, a "
            "client per pool process, shared by the threads of the thread pool, through the same endpoint as the "
            "broker). The thread pool's 6 threads match sesshud's bus concurrency: 2 receiver lanes and 4 sender "
            "lanes, each with one request in flight. sesshud: 4 workers, default settings.")


def _per_job(runs: list[dict[str, Any]]) -> float:
    return median([sum(r["requests"].values()) / max(1, r["jobs"]) for r in runs])


def run(bench: Bench) -> Section:
    section = Section("Peers")
    rounds, warmup = bench.size(2, 1), bench.size(2.0, 1.5)
    template = _template(bench)
    rows = []
    for delay in bench.delays:
        window = bench.size(12.0, 4.0) if not delay else bench.size(8.0, 4.0)
        results = _rounds(bench, template, delay, rounds, warmup, window)
        ses = results["sesshud"]
        r_ses = median([r["rate"] for r in ses])
        ceiling: list[dict[str, Any]] = []
        for name, pool, concurrency in POOLS:
            cel = results[name]
            label = pool_label(pool, concurrency)
            r_cel = median([r["rate"] for r in cel])
            ratio = r_ses / r_cel
            target = TARGETS.get(round(delay, 3)) if pool == "prefork" else None  # issue #12 set them for prefork
            note = (f"sesshud {r_ses:.0f} vs {label} {r_cel:.0f} jobs/s (median of {rounds}); both publish every "
                    "result")
            if delay:
                note += f"; requests per job: sesshud {_per_job(ses):.2f}, Celery {_per_job(cel):.2f}"
            if target and ratio < target:
                fastest = max(ses, key=lambda r: r["rate"])
                note += ". Missed; in sesshud's fastest run, CPU ms per job by process: " + ", ".join(
                    f"{k} {1000 * v / max(1, fastest['jobs']):.2f}" for k, v in fastest["cpu"].items())
                note += "; sesshud by part: " + cpusplit.split_text(fastest["split"], fastest["jobs"])
                if delay:
                    note += f"; the server's time per request in that run, in ms: {server_ms(fastest)}"
                if not ceiling:
                    ceiling = _ceiling(bench, delay, rounds, warmup, window)
                note += _ceiling_note(ceiling, ses, cel, target * r_cel, bench.server_name)
            section.figures.append(Figure(f"sesshud / {label} (kombu SQS), no-op + SNS publish{at(delay)}",
                                          f"{ratio:.2f}x", f">= {target:g}x" if target else "",
                                          check(ratio, at_least=target) if target else None, note))
        for name, pool, concurrency in POOLS:
            cel = results[name]
            section.figures.append(Figure(
                f"CPU per job, {pool_label(pool, concurrency)}, all its processes, no-op + SNS publish{at(delay)}",
                f"{median([cpu_ms(r, celery_key(pool)) for r in cel]):.3f} ms", "", None,
                f"the server besides: {median([cpu_ms(r, bench.server_name) for r in cel]):.2f} ms per job"))
        section.figures.append(Figure(
            f"CPU per job, sesshud (master and children), no-op + SNS publish{at(delay)}",
            f"{median([tree_ms(r) for r in ses]):.3f} ms", "", None,
            f"the server besides: {median([cpu_ms(r, bench.server_name) for r in ses]):.2f} ms per job; "
            + split_note(ses)))
        runs_by = [(pool_label(pool, c), results[name]) for name, pool, c in POOLS]
        runs_by += [("sesshud", ses), (f"{CEILING_DAEMONS} sesshud daemons", ceiling)]
        for label, runs in runs_by:
            for i, r in enumerate(runs):
                jobs = max(1, r["jobs"])
                cpu = ", ".join(f"{k} {1000 * v / jobs:.2f}" for k, v in r["cpu"].items())
                if "split" in r:
                    cpu += f" (sesshud by part: {cpusplit.split_text(r['split'], r['jobs'])})"
                ops = ", ".join(f"{op} {n / jobs:.2f}" for op, n in sorted(r.get("requests", {}).items())) or "-"
                rows.append([f"{label}{at(delay)}, round {i + 1}", f"{r['rate']:.0f}", r["jobs"], ops, cpu,
                             f"{cores_used(r, bench.server_name):.2f}", host_took(r)])
    section.details.append(f"{_how()}\n\nWindows of {bench.size(12.0, 4.0):g} s on loopback and "
                           f"{bench.size(8.0, 4.0):g} s at a round trip, after {warmup:g} s warm-up.\n\n"
                           + table(["run", "jobs/s", "jobs in window", "requests per job (through the proxy)",
                                    "CPU ms per job, by process", "server cores used",
                                    "cores the host took (steal)"], rows))
    return section
