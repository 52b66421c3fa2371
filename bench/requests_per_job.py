"""SQS/SNS requests per completed job, counted on the wire by the proxy.

Saturation: 4 workers, default settings, a fixed number of no-op jobs fed
so that about :data:`BACKLOG` are always waiting (the same backlog as every
other saturation figure); every request the daemon makes over its whole
life (start-up and the last long poll included), as the proxy counted it,
is divided by the results the proxy saw it publish (``Publish`` plus the
entries of each ``PublishBatch``). The daemon's own counts (its exit line)
are shown beside, never used. The floor is 0.3 (receive 10, publish 10, delete 10:
three requests per ten jobs); handling each message alone costs 3.
Saturation is counted on loopback and again with the proxy adding the
bench's round trip (20 ms) to every request: requests that take longer must
not become more requests. Light load: one job at a time, 0.1 s apart.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.common import Bench, Figure, Section, at, check, progress, table, wait_until
from bench.feeder import VISIBLE, Feeder, client, depth, make_queue, make_topic, request
from bench.proxy import CountingProxy
from bench.sesshud import Sesshud, write_config

TARGET = 0.31
# Messages kept waiting at saturation: the feeder's usual ~50, as for the
# throughput, Celery and CPU figures, so that they all describe one load.
BACKLOG = VISIBLE


def _diff(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], key: str) -> dict[str, int]:
    a, b = after.get(key, {}), before.get(key, {})
    return {op: a[op] - b.get(op, 0) for op in a if a[op] - b.get(op, 0)}


def _daemon(bench: Bench, proxy: CountingProxy, name: str, **settings: Any) -> tuple[Sesshud, str]:
    queue = make_queue(bench.moto.url, f"{name}-{uuid.uuid4().hex[:6]}")
    topic = make_topic(bench.moto.url, f"{name}-results-{uuid.uuid4().hex[:6]}")
    config = write_config(bench.tmp / f"{name}.yaml", endpoint=proxy.url, queue=queue, topic=topic, **settings)
    daemon = Sesshud(config).start()
    daemon.wait_idle_workers(settings.get("workers", 4))
    return daemon, queue


def count_run(bench: Bench, proxy: CountingProxy, name: str, jobs: int, *, light: bool,
              **settings: Any) -> dict[str, Any]:
    """Run ``jobs`` no-op jobs through a fresh daemon; return its wire counts per job."""
    before = proxy.counts()
    daemon, queue = _daemon(bench, proxy, name, **settings)
    try:
        if light:
            sqs = client("sqs", bench.moto.url)
            for i in range(jobs):
                sqs.send_message(QueueUrl=queue, MessageBody=request("noop", f"n:64:{i}"))
                wait_until(lambda: depth(sqs, queue) == (0, 0), 30, "a light-load job", interval=0.005)
                time.sleep(0.1)
        else:
            feeder = Feeder(bench.moto.url, queue, lambda i: request("noop", f"n:64:{i}"),
                            visible=BACKLOG, total=jobs).start()
            try:
                feeder.wait_all_done(timeout=max(120.0, jobs / 5))
            finally:
                feeder.stop()
        summary = daemon.finish()
    finally:
        daemon.kill_all()
    after = proxy.counts()
    requests = _diff(after, before, "requests")
    entries = _diff(after, before, "entries")
    published = published_results(entries)
    total = sum(requests.values())
    return {"done": published, "daemon_done": summary["outcomes"].get("done", 0), "requests": requests,
            "entries": entries, "total": total, "per_job": total / published if published else float("nan"),
            "daemon_requests": summary["requests"]}


def published_results(entries: dict[str, int]) -> int:
    """Results published, as the proxy counted them: one per Publish, one per PublishBatch entry."""
    return entries.get("sns:Publish", 0) + entries.get("sns:PublishBatch", 0)


def _breakdown(label: str, r: dict[str, Any]) -> list[Any]:
    req, ent = r["requests"], r["entries"]

    def per(op: str) -> str:
        n = req.get(op, 0)
        return f"{n} ({ent.get(op, 0) / n:.1f}/req)" if n and op in ent else str(n)

    publishes = req.get("sns:Publish", 0) + req.get("sns:PublishBatch", 0)
    other = {k: v for k, v in req.items() if k not in ("sqs:ReceiveMessage", "sns:Publish", "sns:PublishBatch",
                                                       "sqs:DeleteMessageBatch")}
    return [label, f"{r['done']} ({r['daemon_done']})", f"{r['per_job']:.3f}", per("sqs:ReceiveMessage"),
            f"{publishes} ({req.get('sns:Publish', 0)} single)", per("sqs:DeleteMessageBatch"),
            ", ".join(f"{k}={v}" for k, v in sorted(other.items())) or "-"]


def _why(r: dict[str, Any]) -> str:
    req, ent = r["requests"], r["entries"]
    recv = ent.get("sqs:ReceiveMessage", 0) / max(1, req.get("sqs:ReceiveMessage", 1))
    pub = r["done"] / max(1, req.get("sns:PublishBatch", 0) + req.get("sns:Publish", 0))
    dele = ent.get("sqs:DeleteMessageBatch", 0) / max(1, req.get("sqs:DeleteMessageBatch", 1))
    return (f"measured {recv:.1f} messages per receive, {pub:.1f} results per publish, "
            f"{dele:.1f} messages per delete (10 each is the floor of 0.3)")


def run(bench: Bench) -> Section:
    section = Section("Requests per job")
    jobs = bench.size(3000, 600)
    sat: dict[float, dict[str, Any]] = {}
    for delay in bench.delays:
        with CountingProxy(bench.moto.url, delay) as proxy:
            progress(f"requests/job: saturation, 4 workers, defaults, {jobs} jobs{at(delay)}")
            sat[delay] = count_run(bench, proxy, f"rpj-sat-{1000 * delay:g}ms", jobs, light=False)
            progress(f"  -> {sat[delay]['per_job']:.3f} requests/job ({sat[delay]['requests']})")
            if delay:
                continue
            progress("requests/job: saturation, 4 workers, prefetch 6")
            pre = count_run(bench, proxy, "rpj-prefetch", jobs, light=False, prefetch=6)
            progress(f"  -> {pre['per_job']:.3f} requests/job")
            light_jobs = bench.size(60, 20)
            progress(f"requests/job: light load, {light_jobs} jobs one at a time")
            light = count_run(bench, proxy, "rpj-light", light_jobs, light=True)
            progress(f"  -> {light['per_job']:.3f} requests/job")
    for delay, r in sat.items():
        met = check(r["per_job"], at_most=TARGET)
        section.figures.append(Figure(f"Requests per job, saturation (4 workers, defaults){at(delay)}",
                                      f"{r['per_job']:.3f}", f"<= {TARGET} (floor 0.3, naive 3)", met,
                                      "" if met else _why(r)))
    section.figures += [
        Figure("Requests per job, saturation, prefetch 6", f"{pre['per_job']:.3f}", "", None,
               "not a default (10 is); shows what batching reaches with fewer messages held"),
        Figure("Requests per job, light load (1 job at a time)", f"{light['per_job']:.3f}", "", None,
               "naive is 3: receive, publish, delete per job"),
    ]
    runs = [(f"saturation, defaults{at(d)}", r) for d, r in sat.items()]
    runs += [("saturation, prefetch 6", pre), ("light load", light)]
    block = (f"Requests counted by the proxy (bench/proxy.py) over each daemon's whole life, over the results "
             f"it saw published; entries per request in brackets; ~{BACKLOG} messages kept waiting at saturation."
             "\n\n"
             + table(["run", "results published (the daemon's own count of jobs done)", "requests/job",
                      "ReceiveMessage", "Publish+PublishBatch", "DeleteMessageBatch", "other"],
                     [_breakdown(label, r) for label, r in runs]))
    own = [(label, r["daemon_requests"]) for label, r in runs if r["daemon_requests"]]
    if own:
        block += "\n\nThe daemon's own count (its exit log line), for comparison: " + "; ".join(
            f"{label}: {sum(c.values())} ({', '.join(f'{k}={v}' for k, v in sorted(c.items()))})"
            for label, c in own)
    section.details.append(block)
    return section
