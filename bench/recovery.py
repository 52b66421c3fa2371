"""Crash recovery and hard timeouts, timed from outside the daemon.

*Replacement*: sesshud with one worker holds a job (``hold:``); the bench
queues a ``stamp:`` job behind it, SIGKILLs the worker and times until the
replacement child starts that job (the plugin writes CLOCK_MONOTONIC, which
is system-wide). With prefetch 0 this includes one ``ReceiveMessage`` round
trip, so a bare receive is timed beside it.

*Timeout overrun*: a job that never returns (``hold:``, which dies on
SIGTERM, and ``stubborn:``, which ignores it and needs the SIGKILL after the
grace) runs under a 1 s plugin timeout; the bench watches the worker through
a pidfd and reports how long after start + 1 s it was gone. The start is
read inside the plugin, a little after the parent set its deadline, so the
overrun is, if anything, understated by the dispatch time (well under 1 ms).
"""

from __future__ import annotations

import os
import select
import signal
import time
import uuid
from typing import Any

import psutil

from bench.common import Bench, Figure, Section, check, median, percentile, progress, table, wait_until
from bench.feeder import client, make_queue, make_topic, request
from bench.plugins.noop import read_stamp
from bench.sesshud import Sesshud, stop_all, write_config

TARGET_REPLACE = 0.100
TARGET_OVERRUN = 0.25
TIMEOUT = 1.0


def _retry_settings() -> dict[str, Any]:
    # Keep a killed job's retry out of the way of later rounds, where the
    # config offers it (workers.retry is newer than the core).
    from sesshu.config.schema import SCHEMA

    if "retry" in SCHEMA["workers"]["schema"]:
        return {"retry": {"delay": 600, "max_delay": 600}}
    return {}


def stop_cost(bench: Bench) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of an idle daemon's master from SIGTERM to exit."""
    daemon, _ = _daemon(bench, "rec-stop", ["noop"])
    try:
        proc = psutil.Process(daemon.pid)
        time.sleep(0.5)
        before = proc.cpu_times()
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        cpu = 0.0
        while daemon.proc is not None and daemon.proc.poll() is None:
            try:
                now = proc.cpu_times()
            except psutil.Error:
                break
            cpu = now.user + now.system - before.user - before.system
            time.sleep(0.02)
        return cpu, time.monotonic() - t0
    finally:
        stop_all([daemon])


def _daemon(bench: Bench, name: str, plugins: list[Any]) -> tuple[Sesshud, str]:
    tag = uuid.uuid4().hex[:6]
    queue = make_queue(bench.moto.url, f"{name}-{tag}", visibility=900)
    topic = make_topic(bench.moto.url, f"{name}-out-{tag}")
    # The jobs stamp files in the bench's directory, outside a worker's file view unless granted.
    config = write_config(bench.tmp / f"{name}-{tag}.yaml", endpoint=bench.moto.url, queue=queue, topic=topic,
                          plugins=plugins, workers=1, filesystem={"write": [str(bench.tmp)]}, **_retry_settings())
    daemon = Sesshud(config).start()
    daemon.wait_idle_workers(1)
    return daemon, queue


def _stamp(path: str, timeout: float = 30) -> tuple[int, float]:
    return wait_until(lambda: read_stamp(path), timeout, f"a job to stamp {path}", interval=0.001)  # type: ignore[no-any-return]


def replacement_times(bench: Bench, rounds: int) -> list[float]:
    daemon, queue = _daemon(bench, "rec-kill", ["noop"])
    sqs = client("sqs", bench.moto.url)
    out = []
    try:
        for r in range(rounds):
            hold, stamp = str(bench.tmp / f"kill-hold-{r}"), str(bench.tmp / f"kill-stamp-{r}")
            sqs.send_message(QueueUrl=queue, MessageBody=request("noop", f"hold:{hold}"))
            pid, _ = _stamp(hold)
            sqs.send_message(QueueUrl=queue, MessageBody=request("noop", f"stamp:{stamp}"))
            time.sleep(0.2)
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            new_pid, started = _stamp(stamp)
            if new_pid == pid:
                raise RuntimeError("the killed worker ran the next job")
            out.append(started - t0)
            daemon.wait_idle_workers(1)
    finally:
        stop_all([daemon])
    return out


def receive_round_trips(bench: Bench, n: int) -> list[float]:
    sqs = client("sqs", bench.moto.url)
    queue = make_queue(bench.moto.url, f"rec-rtt-{uuid.uuid4().hex[:6]}")
    sqs.send_message(QueueUrl=queue, MessageBody="x")
    sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
    out = []
    for _ in range(n):
        sqs.send_message(QueueUrl=queue, MessageBody="x")
        t0 = time.monotonic()
        msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=0, VisibilityTimeout=0)
        out.append(time.monotonic() - t0)
        for m in msgs.get("Messages", []):
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return out


def _gone_at(pid: int, limit: float) -> float:
    """Monotonic time at which process ``pid`` exits (watched through a pidfd)."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(limit * 1000):
            raise TimeoutError(f"worker {pid} still alive {limit:g} s later")
        return time.monotonic()
    finally:
        os.close(fd)


def overruns(bench: Bench, kind: str, rounds: int) -> list[float]:
    daemon, queue = _daemon(bench, f"rec-{kind}", [{"name": "noop", "timeout": TIMEOUT}])
    sqs = client("sqs", bench.moto.url)
    out = []
    try:
        for r in range(rounds):
            path = str(bench.tmp / f"{kind}-{r}")
            sqs.send_message(QueueUrl=queue, MessageBody=request("noop", f"{kind}:{path}"))
            pid, started = _stamp(path)
            out.append(_gone_at(pid, TIMEOUT + 10) - (started + TIMEOUT))
            daemon.wait_idle_workers(1)
    finally:
        stop_all([daemon])
    return out


def _ms(x: float) -> str:
    return f"{1000 * x:.0f} ms"


def run(bench: Bench) -> Section:
    section = Section("Crash recovery and timeouts")
    rounds, t_rounds = bench.size(12, 4), bench.size(6, 3)
    progress(f"recovery: SIGKILL a busy worker, {rounds} rounds")
    kill = replacement_times(bench, rounds)
    rtt = receive_round_trips(bench, 20)
    progress(f"  -> median {_ms(median(kill))} (bare receive {_ms(median(rtt))})")
    over: dict[str, list[float]] = {}
    for kind in ("hold", "stubborn"):
        progress(f"recovery: {kind} job past a {TIMEOUT:g} s timeout, {t_rounds} rounds")
        over[kind] = overruns(bench, kind, t_rounds)
        progress(f"  -> median overrun {_ms(median(over[kind]))}, max {_ms(max(over[kind]))}")
    worst = max(max(v) for v in over.values())
    progress("recovery: CPU an idle daemon uses while it stops")
    stop_cpu, stop_wall = stop_cost(bench)
    progress(f"  -> {stop_cpu:.2f} CPU s in {stop_wall:.2f} s")
    section.figures += [
        Figure("SIGKILLed worker -> replacement starts a queued job (median)", _ms(median(kill)),
               f"<= {_ms(TARGET_REPLACE)}", check(median(kill), at_most=TARGET_REPLACE),
               f"includes one ReceiveMessage; a bare one took {_ms(median(rtt))} in the same run; "
               f"max {_ms(max(kill))}"),
        Figure("Timed-out job stopped after its deadline (worst of all rounds)", _ms(worst),
               f"<= {_ms(TARGET_OVERRUN)}", check(worst, at_most=TARGET_OVERRUN),
               f"median: dies on SIGTERM {_ms(median(over['hold']))}, ignores SIGTERM "
               f"{_ms(median(over['stubborn']))} (SIGKILL after the 0.2 s grace)"),
        Figure("Idle daemon stopping: master CPU / wall time", f"{stop_cpu:.2f} s / {stop_wall:.2f} s", "", None,
               "SIGTERM to exit; the master waits up to 2 s for its outstanding long poll"),
    ]
    rows = [["SIGKILL -> replacement starts next job", len(kill), _ms(median(kill)), _ms(percentile(kill, 90)),
             _ms(max(kill))],
            ["bare ReceiveMessage round trip", len(rtt), _ms(median(rtt)), _ms(percentile(rtt, 90)), _ms(max(rtt))]]
    rows += [[f"timeout overrun, job {'dies on' if k == 'hold' else 'ignores'} SIGTERM", len(v), _ms(median(v)),
              _ms(percentile(v, 90)), _ms(max(v))] for k, v in over.items()]
    section.details.append(f"One worker; plugin timeout {TIMEOUT:g} s for the overrun rounds.\n\n"
                           + table(["what", "rounds", "median", "p90", "max"], rows))
    return section
