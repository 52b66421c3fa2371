"""sesshud versus Celery 5 (prefork, -c 4) doing the same job on the same SQS/SNS server.

Celery runs ``bench.celery_app``'s no-op task through kombu's SQS transport,
and publishes each result as one SNS message, as sesshud does; sesshud runs
its no-op plugin with 4 workers. Both are fed by the same kind of
:class:`~bench.feeder.Feeder` (Celery's messages are copies of one that
Celery itself produced, with fresh ids) and timed the same way. On loopback
both talk to the server directly; at the bench's round trip per AWS request
(20 ms) both talk through the same proxy, Celery's broker and SNS client
included. ``bench.celery_app`` says how Celery is configured.

Where sesshud misses a target, two sesshud daemons then run together on one
queue. They ask the server for twice the work one daemon does: when that
gets no more than one daemon got, the server (one Python process, on the
same two cores) is what limits sesshud's kind of work, not the daemon. And
where Celery too holds the server at its ceiling, the ratio is set by the
server's CPU per Celery job over its CPU per sesshud job (and the share of
a core each side got): the summary says so, with the figures.
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

from bench.common import (
    Bench,
    Figure,
    Section,
    at,
    ceilings,
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
from bench.throughput import CpuMeter, _measure, host_took, server_ms, sesshud_round

TARGETS = {0.0: 5.0, 0.020: 10.0}  # by round trip; issue #12
CEILING_DAEMONS = 2  # a missed target is checked against what the server gives this many daemons at once
# Celery counts as holding the server at its ceiling when the server's cores
# under Celery (the median of its runs, as the ratio is of medians) come
# within this share of the most it used in any run.
AT_CEILING = 0.9


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
                 proxy: CountingProxy | None = None) -> dict[str, Any]:
    queue_name = f"bench-celery-{uuid.uuid4().hex[:6]}"
    queue = make_queue(bench.moto.url, queue_name)
    topic = make_topic(bench.moto.url, f"{queue_name}-out")
    feeder = Feeder(bench.moto.url, queue, celery_body(template, queue_name)).start()
    env = {**quiet_env(), "BENCH_SQS_ENDPOINT": proxy.url if proxy else bench.moto.url,
           "BENCH_CELERY_QUEUE": queue_name, "BENCH_SNS_TOPIC": topic}
    with open(bench.tmp / f"{queue_name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-P", "prefork",
                                 "-c", "4", "-Q", queue_name, "--without-gossip", "--without-mingle",
                                 "--without-heartbeat", "--loglevel", "WARNING"],
                                env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is None and feeder.completed()[1] > 0, 60, "Celery to take jobs", 0.2)
        meter = CpuMeter({bench.server_name: (bench.moto.pid(), False), "celery (all processes)": (proc.pid, True)})
        return _measure(feeder, meter, warmup, window, proxy)
    finally:
        feeder.stop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)


def _rounds(bench: Bench, template: dict[str, Any], delay: float, rounds: int, warmup: float,
            window: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cel: list[dict[str, Any]] = []
    ses: list[dict[str, Any]] = []
    proxy = CountingProxy(bench.moto.url, delay).start() if delay else None
    try:
        for i in range(rounds):
            for side in (("celery", "sesshud") if i % 2 == 0 else ("sesshud", "celery")):
                progress(f"peers{at(delay)}, round {i + 1}/{rounds}: {side}")
                if side == "celery":
                    cel.append(celery_round(bench, template, warmup, window, proxy))
                    progress(f"  -> Celery prefork -c 4: {cel[-1]['rate']:.0f} jobs/s")
                else:
                    ses.append(sesshud_round(bench, warmup, window, proxy=proxy, name="peers-sesshud",
                                             meter_self=True))
                    progress(f"  -> sesshud: {ses[-1]['rate']:.0f} jobs/s")
    finally:
        if proxy is not None:
            proxy.stop()
    return cel, ses


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


def _bound(ses: list[dict[str, Any]], cel: list[dict[str, Any]], server: str) -> str:
    """What caps the ratio when Celery, too, holds the server at its ceiling.

    Each side's rate is then the share of a core the server gives it over
    the server's CPU per job, so the ratio comes to Celery's CPU per job over
    sesshud's, times the most the server gave any run over what it gave
    Celery (medians, so the measured ratio lands near it, either side). No
    daemon can raise that except by costing the server less per job.
    """
    full = max(cores_used(r, server) for r in [*ses, *cel])
    under_celery = median([cores_used(r, server) for r in cel])
    if under_celery < AT_CEILING * full:
        return ""
    per_job = [median([cpu_ms(r, server) for r in runs]) for runs in (cel, ses)]
    cap = per_job[0] / per_job[1] * full / under_celery
    return (f". Celery too held the server at its ceiling ({under_celery:.2f} of a core, the median of its runs, "
            f"against at most {full:.2f} in any run), so the ratio is set by the server's CPU per job, "
            f"Celery {per_job[0]:.1f} ms over sesshud's {per_job[1]:.2f} ms, times {full:.2f} over "
            f"{under_celery:.2f}: about {cap:.2f}x on this server, whatever either daemon does")


def _how() -> str:
    from bench.celery_app import SETTINGS, TRANSPORT

    options = ", ".join(f"{k} {v}" for k, v in TRANSPORT.items() if k not in ("region", "is_secure"))
    return (f"Celery {metadata.version('celery')} (kombu {metadata.version('kombu')}), `celery worker -P prefork "
            f"-c 4 --without-gossip --without-mingle --without-heartbeat`, worker_prefetch_multiplier "
            f"{SETTINGS['worker_prefetch_multiplier']}, task_acks_late {SETTINGS['task_acks_late']} (the message is "
            f"deleted as the task starts), result backend off; SQS transport options: {options}. Each task "
            "publishes its result as one SNS message (boto3, a client per pool process, through the same "
            "endpoint as the broker). sesshud: 4 workers, default settings.")


def run(bench: Bench) -> Section:
    section = Section("Peers")
    rounds, warmup = bench.size(2, 1), bench.size(2.0, 1.5)
    template = _template(bench)
    rows = []
    for delay in bench.delays:
        window = bench.size(12.0, 4.0) if not delay else bench.size(8.0, 4.0)
        cel, ses = _rounds(bench, template, delay, rounds, warmup, window)
        r_cel, r_ses = median([r["rate"] for r in cel]), median([r["rate"] for r in ses])
        ratio = r_ses / r_cel
        target = TARGETS.get(round(delay, 3))
        note = f"sesshud {r_ses:.0f} vs Celery {r_cel:.0f} jobs/s (median of {rounds}); both publish every result"
        if delay:
            per = [median([sum(r["requests"].values()) / max(1, r["jobs"]) for r in runs]) for runs in (ses, cel)]
            note += f"; requests per job: sesshud {per[0]:.2f}, Celery {per[1]:.2f}"
        ceiling: list[dict[str, Any]] = []
        if target and ratio < target:
            fastest = max(ses, key=lambda r: r["rate"])
            note += ". " + ceilings(fastest, target_rate=target * r_cel, server=bench.server_name)
            if delay:
                note += f"; the server's time per request in that run, in ms: {server_ms(fastest)}"
            ceiling = _ceiling(bench, delay, rounds, warmup, window)
            note += _ceiling_note(ceiling, ses, cel, target * r_cel, bench.server_name)
            note += _bound([*ses, *ceiling], cel, bench.server_name)
        section.figures.append(Figure(f"sesshud / Celery prefork -c 4 (kombu SQS), no-op + SNS publish{at(delay)}",
                                      f"{ratio:.2f}x", f">= {target:g}x" if target else "",
                                      check(ratio, at_least=target) if target else None, note))
        for label, runs in (("Celery", cel), ("sesshud", ses), (f"{CEILING_DAEMONS} sesshud daemons", ceiling)):
            for i, r in enumerate(runs):
                jobs = max(1, r["jobs"])
                cpu = ", ".join(f"{k} {1000 * v / jobs:.2f}" for k, v in r["cpu"].items())
                ops = ", ".join(f"{op} {n / jobs:.2f}" for op, n in sorted(r.get("requests", {}).items())) or "-"
                rows.append([f"{label}{at(delay)}, round {i + 1}", f"{r['rate']:.0f}", r["jobs"], ops, cpu,
                             f"{cores_used(r, bench.server_name):.2f}", host_took(r)])
    section.details.append(f"{_how()}\n\nWindows of {bench.size(12.0, 4.0):g} s on loopback and "
                           f"{bench.size(8.0, 4.0):g} s at a round trip, after {warmup:g} s warm-up.\n\n"
                           + table(["run", "jobs/s", "jobs in window", "requests per job (through the proxy)",
                                    "CPU ms per job, by process", "server cores used",
                                    "cores the host took (steal)"], rows))
    return section
