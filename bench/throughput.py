"""End-to-end throughput and CPU per job: sesshud (4 workers, no-op plugin) versus a raw boto3 loop.

The raw loop (``bench.rawloop``) is threaded as sesshud's bus is: 2 receiver
threads, 4 sender threads, 4 worker threads, so receives, publishes and
deletes are in flight at once on both sides; its SNS client encodes request
bodies with sesshud's own encoder (``sesshu.bus.formbody``). Both run as
subprocesses against the same server (moto; then LocalStack), fed by the
same :class:`~bench.feeder.Feeder` (about 50 messages always waiting), and
are timed the same way: messages completed (sent and gone from the queue)
over a fixed window after a warm-up. Rounds alternate which side goes first.
CPU time of every process involved is read over each window; sesshud's is
also split into its master's loop thread, its bus threads, its keepers and
its runners (``bench.cpusplit``). It is measured on loopback, then with both
sides talking through the proxy at the bench's round trip per AWS request
(20 ms unless ``--delay-ms`` says otherwise); the feeder always talks to the
server directly.
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

from bench import cpusplit, rawloop
from bench.common import Bench, Figure, Section, at, check, cpu_ms, median, progress, quiet_env, table
from bench.feeder import Body, Feeder, make_queue, make_topic, request
from bench.proxy import CountingProxy
from bench.sesshud import Sesshud, stop_all, write_config

TARGET = 0.8
TARGET_CPU_RATIO = 1.4  # sesshud's whole-tree CPU per job over the raw loop's, no-op at saturation
TARGET_CHILDREN_MS = 0.15  # sesshud's keepers and runners, CPU ms per job, no-op at saturation
SESSHUD = ("sesshud master", "sesshud children")


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
             proxy: CountingProxy | None = None, split: cpusplit.ProcTree | None = None) -> dict[str, Any]:
    """Rate, jobs and CPU by process over one window; with ``split``, sesshud's CPU by part too (``split``)."""
    time.sleep(warmup)
    before = proxy.counts() if proxy else {}
    meter.begin()
    first = split.reading() if split else {}
    rate, jobs = feeder.rate(0.0, window)
    last = split.reading() if split else {}
    cpu = meter.end()
    out: dict[str, Any] = {"rate": rate, "jobs": jobs, "cpu": cpu, "stolen": meter.stolen}
    if split:
        out["split"] = cpusplit.window(first, last)
        out["detail"] = cpusplit.detail(first, last)
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
              body: Body | None = None, name: str = "tp-raw", workers: int = 4, visible: int = 50,
              receivers: int = 2, senders: int = 4) -> dict[str, Any]:
    """Throughput of the threaded raw boto3 loop; with ``proxy`` it talks through it, as :func:`sesshud_round`.

    ``workers`` should be sesshud's worker count in the comparison; the lanes default to sesshud's (2 and 4).
    """
    queue, topic = _fresh(bench, name)
    feeder = Feeder(bench.moto.url, queue, body or noop_body(), visible=visible).start()
    endpoint = proxy.url if proxy else bench.moto.url
    proc = subprocess.Popen([sys.executable, *rawloop.command(endpoint, queue, topic, receivers=receivers,
                                                               senders=senders, workers=workers)], env=quiet_env())
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
        result = _measure(feeder, meter, warmup, window, proxy, cpusplit.ProcTree(masters))
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


def alternate(bench: Bench, delay: float, rounds: int, warmup: float, window: float, label: str, *,
              raw: dict[str, Any] | None = None,
              sesshud: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(raw loop, sesshud) results of alternating rounds, both through one proxy when ``delay`` is set.

    ``raw`` and ``sesshud`` are the settings of :func:`raw_round` and :func:`sesshud_round`.
    """
    raws: list[dict[str, Any]] = []
    ses: list[dict[str, Any]] = []
    proxy = CountingProxy(bench.moto.url, delay).start() if delay > 0 else None
    try:
        for i in range(rounds):
            for side in (("raw", "sesshud") if i % 2 == 0 else ("sesshud", "raw")):
                progress(f"{label}{at(delay)}, round {i + 1}/{rounds}: {side}")
                if side == "raw":
                    raws.append(raw_round(bench, warmup, window, proxy=proxy, **(raw or {})))
                    progress(f"  -> raw loop {raws[-1]['rate']:.0f} jobs/s")
                else:
                    ses.append(sesshud_round(bench, warmup, window, proxy=proxy, **(sesshud or {})))
                    progress(f"  -> sesshud {ses[-1]['rate']:.0f} jobs/s")
    finally:
        if proxy is not None:
            proxy.stop()
    return raws, ses


def tree_ms(r: dict[str, Any]) -> float:
    """CPU ms per job of the worker itself, whole tree: sesshud's master and children, or the raw loop."""
    return cpu_ms(r, *[k for k in (*SESSHUD, "raw loop") if k in r["cpu"]])


def children_ms(r: dict[str, Any]) -> float:
    """sesshud's keepers, runners (and any other child) in CPU ms per job, from the /proc split."""
    return 1000 * cpusplit.children(r["split"]) / max(1, r["jobs"])


def _kernel_cells(r: dict[str, Any]) -> list[str]:
    """Per part: ``41% kernel, 2.10 waits`` (a job's blocking waits), or ``-`` for a part that did nothing."""
    jobs = max(1, r["jobs"])
    cells = []
    for part in cpusplit.PARTS:
        cpu, (kernel, switches) = r["split"][part], r.get("detail", {}).get(part, (0.0, 0))
        cells.append(f"{100 * kernel / cpu:.0f}% kernel, {switches / jobs:.2f} waits" if cpu or switches else "-")
    return cells


def split_note(ses: list[dict[str, Any]], raw: list[dict[str, Any]] | None = None) -> str:
    """Where sesshud's CPU went, by thread and process, in each round (and the raw loop's, for comparison)."""
    said = "; ".join(f"round {i + 1}: {cpusplit.split_text(r['split'], r['jobs'])}" for i, r in enumerate(ses))
    out = f"sesshud CPU ms per job by part, {said}"
    if ses and "detail" in ses[0]:
        out += (" (round 1 per part: its CPU's share in the kernel, and the times it blocked per job: "
                + cpusplit.detail_text(ses[0]["split"], ses[0]["detail"], ses[0]["jobs"]) + ")")
    if raw:
        out += "; raw loop (one process): " + ", ".join(f"{cpu_ms(r, 'raw loop'):.3f}" for r in raw)
    return out


def run(bench: Bench) -> Section:
    section = Section("Throughput")
    rounds, warmup, window = bench.size(2, 1), bench.size(2.0, 1.5), bench.size(12.0, 4.0)
    for delay in bench.delays:
        win = bench.size(8.0, 4.0) if delay else window  # far rounds: shorter, as there are more of them
        raw, ses = alternate(bench, delay, rounds, warmup, win, "throughput")
        r_raw, r_ses = median([r["rate"] for r in raw]), median([r["rate"] for r in ses])
        ratio = r_ses / r_raw
        note = (f"sesshud {r_ses:.0f} jobs/s vs {rawloop.describe()} {r_raw:.0f} jobs/s (median of {rounds}); "
                "server CPU ms per job: sesshud "
                + ", ".join(f"{cpu_ms(r, bench.server_name):.2f}" for r in ses) + "; raw loop "
                + ", ".join(f"{cpu_ms(r, bench.server_name):.2f}" for r in raw))
        if delay:
            per = [median([sum(r["requests"].values()) / max(1, r["jobs"]) for r in runs]) for runs in (ses, raw)]
            note += f"; both through the proxy; requests per job: sesshud {per[0]:.3f}, raw loop {per[1]:.3f}"
        if not check(ratio, at_least=TARGET):
            note = "Missed. " + note + "; " + split_note(ses, raw)
        section.figures.append(Figure(f"sesshud / threaded raw boto3 loop, no-op, 4 workers{at(delay)}",
                                      f"{ratio:.2f}x", f">= {TARGET}x", check(ratio, at_least=TARGET), note))
        t_ses, t_raw = median([tree_ms(r) for r in ses]), median([tree_ms(r) for r in raw])
        cpu_ratio = t_ses / t_raw
        met = check(cpu_ratio, at_most=TARGET_CPU_RATIO)
        note = f"sesshud {t_ses:.3f} ms (master and children) vs raw loop {t_raw:.3f} ms per job (medians)"
        if not met:
            note += ". Missed; " + split_note(ses, raw)
        section.figures.append(Figure(f"CPU per job, sesshud whole tree / raw loop, no-op at saturation, 4 workers"
                                      f"{at(delay)}", f"{cpu_ratio:.2f}x", f"<= {TARGET_CPU_RATIO}x", met, note))
        kids = median([children_ms(r) for r in ses])
        met = check(kids, at_most=TARGET_CHILDREN_MS)
        note = ("keepers and runners, read from /proc by process title"
                + ("" if met else ". Missed; " + split_note(ses)))
        section.figures.append(Figure(f"CPU per job, sesshud children (keepers + runners), no-op at saturation"
                                      f"{at(delay)}", f"{kids:.3f} ms", f"<= {TARGET_CHILDREN_MS} ms", met, note))
        rows = [_cpu_row(f"raw loop, round {i + 1}", r) for i, r in enumerate(raw)]
        rows += [_cpu_row(f"sesshud, round {i + 1}", r) for i, r in enumerate(ses)]
        split_rows = [[f"sesshud, round {i + 1}", *(f"{1000 * r['split'][p] / max(1, r['jobs']):.3f}"
                                                    for p in cpusplit.PARTS)] for i, r in enumerate(ses)]
        split_rows += [[f"raw loop, round {i + 1} (one process)", f"{cpu_ms(r, 'raw loop'):.3f}", "-", "-", "-", "-"]
                       for i, r in enumerate(raw)]
        kernel_rows = [[f"sesshud, round {i + 1}", *_kernel_cells(r)] for i, r in enumerate(ses)]
        how = (f"through the proxy, {1000 * delay:g} ms per AWS request" if delay
               else "straight to the server")
        section.details.append(
            f"{how.capitalize()}: windows of {win:g} s after {warmup:g} s of warm-up; ~50 messages kept waiting. "
            f"The raw side is the {rawloop.describe()}, publishing with sesshud's SNS body encoding."
            "\n\n"
            + table(["run", "jobs/s", "jobs in window", "CPU ms per job, by process",
                     "server ms per request (through the proxy, its delay left out)",
                     "cores the host took (steal)"], rows)
            + "\n\nsesshud's CPU ms per job by part (from /proc: the master's main thread, its other threads, "
            "children titled `sesshud: keeper`, children titled `sesshud: worker`):\n\n"
            + table(["run", *cpusplit.PARTS], split_rows)
            + "\n\nThe same parts, per job: the share of their CPU spent in the kernel (`stime`), and the "
            "times they blocked and were woken (`voluntary_ctxt_switches`):\n\n"
            + table(["run", *cpusplit.PARTS], kernel_rows))
    return section
