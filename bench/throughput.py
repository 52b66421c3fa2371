"""End-to-end throughput: sesshud (4 workers, no-op plugin) versus a raw boto3 loop.

Both run as subprocesses against the same server (moto; then LocalStack),
fed by the same :class:`~bench.feeder.Feeder` (about 50 messages always waiting), and are
timed the same way: messages completed (sent and gone from the queue) over a
fixed window after a warm-up. Rounds alternate which side goes first. CPU
time of every process involved is sampled over each window, to show where
the time goes. It is measured on loopback, then with both sides talking
through the proxy at the bench's round trip per AWS request (20 ms unless
``--delay-ms`` says otherwise); the feeder always talks to the server directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.common import Bench, Figure, Section, at, check, median, progress, quiet_env, table
from bench.feeder import Body, Feeder, make_queue, make_topic, request
from bench.proxy import CountingProxy
from bench.sesshud import Sesshud, stop_all, write_config

TARGET = 0.8


class CpuMeter:
    """CPU seconds used by processes (and, optionally, their descendants) over a window.

    It also reads how much CPU the hypervisor gave to other guests meanwhile
    (``steal``): on these shared machines that swings from nothing to a
    fifth of the cores within minutes, and it is what makes one round slower
    than the next with nothing changed.
    """

    def __init__(self, roots: dict[str, tuple[int | list[int], bool]]) -> None:
        self.roots = roots
        self.start: dict[str, float] = {}
        self._steal = 0.0
        self.stolen = 0.0  # CPU seconds the host took from this machine over the last window

    def _sample(self) -> dict[str, float]:
        out = {}
        for name, (pids, tree) in self.roots.items():
            total = 0.0
            procs = []
            for pid in [pids] if isinstance(pids, int) else pids:
                try:
                    root = psutil.Process(pid)
                    procs += [root, *(root.children(recursive=True) if tree else [])]
                except psutil.Error:
                    pass
            for proc in procs:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            out[name] = total
        return out

    def begin(self) -> None:
        self.start = self._sample()
        self._steal = _steal()

    def end(self) -> dict[str, float]:
        now = self._sample()
        self.stolen = _steal() - self._steal
        return {k: now[k] - self.start.get(k, 0.0) for k in now}


def _steal() -> float:
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def host_took(r: dict[str, Any]) -> str:
    """Cores the host gave to other guests over a measuring window, beside this machine's cores."""
    return f"{r['stolen'] * r['rate'] / max(1, r['jobs']):.2f} of {os.cpu_count()}"


def _fresh(bench: Bench, name: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    return make_queue(bench.moto.url, f"{name}-{tag}"), make_topic(bench.moto.url, f"{name}-out-{tag}")


def _measure(feeder: Feeder, meter: CpuMeter, warmup: float, window: float,
             proxy: CountingProxy | None = None) -> dict[str, Any]:
    time.sleep(warmup)
    before = proxy.counts() if proxy else {}
    meter.begin()
    rate, jobs = feeder.rate(0.0, window)
    cpu = meter.end()
    out: dict[str, Any] = {"rate": rate, "jobs": jobs, "cpu": cpu, "stolen": meter.stolen}
    if proxy:
        after = proxy.counts()
        for key in ("requests", "entries", "upstream_us"):
            a, b = after.get(key, {}), before.get(key, {})
            out[key] = {op: n - b.get(op, 0) for op, n in a.items() if n - b.get(op, 0)}
    return out


def server_ms(r: dict[str, Any]) -> str:
    """Milliseconds the server took per request, by operation, in a window measured through the proxy."""
    spent, made = r.get("upstream_us", {}), r.get("requests", {})
    return ", ".join(f"{op.split(':')[1]} {spent[op] / made[op] / 1000:.1f}" for op in sorted(spent) if made.get(op))


def raw_round(bench: Bench, warmup: float, window: float, *, proxy: CountingProxy | None = None,
              body: Body | None = None, name: str = "tp-raw") -> dict[str, Any]:
    """Throughput of the raw boto3 loop; with ``proxy`` it talks through it, as :func:`sesshud_round`."""
    queue, topic = _fresh(bench, name)
    feeder = Feeder(bench.moto.url, queue, body or noop_body()).start()
    endpoint = proxy.url if proxy else bench.moto.url
    proc = subprocess.Popen([sys.executable, "-m", "bench.rawloop", "--endpoint", endpoint,
                             "--queue", queue, "--topic", topic], env=quiet_env())
    try:
        roots: dict[str, tuple[int | list[int], bool]] = {bench.server_name: (bench.moto.pid(), False),
                                                          "raw loop": (proc.pid, False)}
        if proxy is not None and proxy.proc is not None:
            roots["proxy"] = (proxy.proc.pid, False)
        return _measure(feeder, CpuMeter(roots), warmup, window, proxy)
    finally:
        proc.terminate()
        proc.wait(30)
        feeder.stop()


def noop_body(size: int = 64) -> Body:
    return lambda i: request("noop", f"n:{size}:{i}")


def sesshud_round(bench: Bench, warmup: float, window: float, *, proxy: CountingProxy | None = None,
                  workers: int = 4, plugins: list[Any] | None = None, body: Body | None = None,
                  visible: int = 50, name: str = "tp-sesshud",
                  launch: Callable[[Path], Sesshud] = Sesshud, bus: dict[str, Any] | None = None,
                  start_timeout: float = 60, during: Callable[[Sesshud], Any] | None = None,
                  meter_self: bool = False, daemons: int = 1, **settings: Any) -> dict[str, Any]:
    """Throughput of one fresh daemon; also used by the scaling and I/O measurements.

    With ``proxy`` the daemon talks through it (and the requests it made in
    the window are reported) while the feeder still talks to moto directly.
    ``bus`` adds keys to the config's ``bus:`` section; ``during(daemon)``
    runs right after the window, with the daemon still busy, and what it
    returns is the result's ``during``. ``meter_self`` also meters this
    process (the feeder, and a fixture site if one runs here). ``daemons``
    runs that many alike on the one queue, as hosts of a fleet would, with
    as many more messages kept waiting; their CPU is metered together.
    """
    queue, topic = _fresh(bench, name)
    launched: list[Sesshud] = []
    feeder: Feeder | None = None
    try:
        for _ in range(daemons):
            config = write_config(bench.tmp / f"{name}-{uuid.uuid4().hex[:6]}.yaml",
                                  endpoint=proxy.url if proxy else bench.moto.url,
                                  queue=queue, topic=topic, plugins=plugins, workers=workers, bus=bus, **settings)
            launched.append(launch(config).start())
        for daemon in launched:
            daemon.wait_idle_workers(workers, start_timeout)
        feeder = Feeder(bench.moto.url, queue, body or noop_body(), visible=visible * daemons).start()
        masters = [d.pid for d in launched]
        roots: dict[str, tuple[int | list[int], bool]] = {
            bench.server_name: (bench.moto.pid(), False), "sesshud master": (masters, False),
            "sesshud children": (masters, True)}
        if proxy is not None and proxy.proc is not None:
            roots["proxy"] = (proxy.proc.pid, False)
        if meter_self:
            roots["bench (feeder, site)"] = (os.getpid(), False)
        meter = CpuMeter(roots)
        result = _measure(feeder, meter, warmup, window, proxy)
        result["cpu"]["sesshud children"] -= result["cpu"]["sesshud master"]
        if during is not None:
            result["during"] = during(launched[0])
        return result
    finally:
        if feeder is not None:
            feeder.stop()
        stop_all(launched)


def _cpu_row(label: str, r: dict[str, Any]) -> list[Any]:
    jobs = max(1, r["jobs"])
    parts = ", ".join(f"{k} {1000 * v / jobs:.2f}" for k, v in r["cpu"].items())
    return [label, f"{r['rate']:.0f}", r["jobs"], parts, server_ms(r) or "-", host_took(r)]


def _rounds(bench: Bench, delay: float, rounds: int, warmup: float,
            window: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(raw loop, sesshud) results of alternating rounds, both through one proxy when ``delay`` is set."""
    raw: list[dict[str, Any]] = []
    ses: list[dict[str, Any]] = []
    proxy = CountingProxy(bench.moto.url, delay).start() if delay > 0 else None
    try:
        for i in range(rounds):
            order = ("raw", "sesshud") if i % 2 == 0 else ("sesshud", "raw")
            for side in order:
                progress(f"throughput{at(delay)}, round {i + 1}/{rounds}: {side}")
                if side == "raw":
                    raw.append(raw_round(bench, warmup, window, proxy=proxy))
                    progress(f"  -> raw loop {raw[-1]['rate']:.0f} jobs/s")
                else:
                    ses.append(sesshud_round(bench, warmup, window, proxy=proxy))
                    progress(f"  -> sesshud {ses[-1]['rate']:.0f} jobs/s")
    finally:
        if proxy is not None:
            proxy.stop()
    return raw, ses


def run(bench: Bench) -> Section:
    section = Section("Throughput")
    rounds, warmup, window = bench.size(2, 1), bench.size(2.0, 1.5), bench.size(12.0, 4.0)
    for delay in bench.delays:
        win = bench.size(8.0, 4.0) if delay else window  # far rounds: shorter, as there are more of them
        raw, ses = _rounds(bench, delay, rounds, warmup, win)
        r_raw, r_ses = median([r["rate"] for r in raw]), median([r["rate"] for r in ses])
        ratio = r_ses / r_raw
        note = f"sesshud {r_ses:.0f} jobs/s vs raw loop {r_raw:.0f} jobs/s (median of {rounds})"
        moto_ses = median([1000 * r["cpu"][bench.server_name] / max(1, r["jobs"]) for r in ses])
        moto_raw = median([1000 * r["cpu"][bench.server_name] / max(1, r["jobs"]) for r in raw])
        if not check(ratio, at_least=TARGET) and not delay:
            note += (f". The server is the bottleneck: it spends {moto_ses:.1f} ms of CPU per sesshud job vs "
                     f"{moto_raw:.1f} ms per raw job ({moto_ses / moto_raw:.1f}x), because sesshud sends more "
                     f"requests per job (see Requests per job)")
        if delay:
            per_job = median([sum(r["requests"].values()) / max(1, r["jobs"]) for r in ses])
            note += (f"; both through the proxy; sesshud made {per_job:.3f} requests per job. The raw loop has "
                     "one request in flight at a time: three round trips per batch of 10")
        section.figures.append(Figure(f"sesshud / raw batched boto3 loop, no-op, 4 workers{at(delay)}",
                                      f"{ratio:.2f}x", f">= {TARGET}x", check(ratio, at_least=TARGET), note))
        rows = [_cpu_row(f"raw loop, round {i + 1}", r) for i, r in enumerate(raw)]
        rows += [_cpu_row(f"sesshud, round {i + 1}", r) for i, r in enumerate(ses)]
        how = (f"through the proxy, {1000 * delay:g} ms per AWS request" if delay
               else "straight to the server")
        section.details.append(
            f"{how.capitalize()}: windows of {win:g} s after {warmup:g} s of warm-up; ~50 messages kept waiting."
            "\n\n"
            + table(["run", "jobs/s", "jobs in window", "CPU ms per job, by process",
                     "server ms per request (through the proxy, its delay left out)",
                     "cores the host took (steal)"], rows))
    return section
