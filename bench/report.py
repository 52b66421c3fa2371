"""Writing docs/benchmarks.md from the sections of one run."""

from __future__ import annotations

from pathlib import Path

from bench.common import Section, table

METHOD = """\
- **Counting requests**: `bench/proxy.py`, a counting HTTP proxy between sesshud and the server, counts every
  request that goes over the wire (retries included) by its `X-Amz-Target` header (SQS, JSON protocol) or
  `Action=` field (SNS, query protocol). The daemon's own count, from its exit line, is shown beside it.
- **Feeding**: stock moto pays for every SQS request in proportion to the queue's depth, so no queue is ever
  pre-filled: a feeder keeps about 50 messages waiting at saturation (requests per job included; more for
  many workers), sending its top-ups four batches side by side so that it keeps pace with a daemon at full
  speed, and a job counts as completed once its message is gone from the queue (sent minus visible minus in
  flight), the same measure for every contender. Requests per job divide the proxy's count of requests by the
  results the proxy saw published.
- **Server**: moto's threaded werkzeug server closes every HTTP connection after one request, so every request
  of every client pays a TCP connect and a server thread; this weighs on both sides of each comparison alike
  (real SQS keeps connections alive). `bench/motoserver.py` patches four moto hot spots with code computing the
  same values (a datetime-based clock called twice per queued message per scan; all queue attributes recomputed
  per received message and per requested name; the dispatcher listing moto's package directory on disk, under a
  lock, for every request); `--stock-moto` runs it unpatched. Stock or not, moto's SQS delete is made to hold
  the queue's lock: without it two deletes at once (several senders) put back a batch the other removed, which
  then came back after its visibility timeout and was done twice.
- **Raw loop**: `bench/rawloop.py` is a plain boto3 worker with sesshud's shape and none of its isolation: 2
  receiver threads, 4 sender threads (sesshud's default lanes) and as many worker threads as sesshud has workers
  in that comparison, the plugin run in-process; it asks for full batches while it holds messages, lingers
  results 50 ms and deletes up to a second for fuller batches as sesshud's outbox does, keeps each
  `PublishBatch` within SNS's 256 KiB, and encodes SNS request bodies with sesshud's own encoder
  (`sesshu.bus.formbody`), so a publish costs both sides the same.
- **Processes and CPU**: sesshud, the raw loop, Celery and the server each run as their own process; CPU per
  job is read from `/proc` over each measuring window (psutil for whole processes). sesshud's is also split:
  the master's loop thread (its main thread, tid == pid), its other threads (the bus), its keepers (children
  titled `sesshud: keeper`) and its runners (`sesshud: worker ...`), from `/proc/<pid>/task/<tid>/stat` and
  `/proc/<pid>/stat`.
- **Steal**: this machine is a guest whose host lends its two cores to others too. The CPU the host took over
  each window (`steal` in `/proc/stat`) is shown beside the figures: it swings from nothing to a fifth of the
  cores within minutes, and the same round can then run twice as fast or slow. That is why every figure is a
  ratio of rounds run side by side, alternating.
- **Round trips**: on loopback a request costs well under a millisecond, against tens of milliseconds to real
  SQS or SNS, which hides what having one request in flight at a time costs. Figures marked "20 ms per AWS
  request" (`--delay-ms`) were measured with every request of every contender (sesshud, the raw loop, Celery)
  going through the proxy, which holds each for that long, half on the way in and half on the way out; each
  connection has its own thread, so concurrent requests wait side by side, not in turn. The feeder and the
  probes of the latency measurement talk to the server directly.
- **Celery**: Celery 5 runs the same no-op and publishes each result as one SNS message (stock boto3) through the
  same endpoint, twice: with the prefork pool at sesshud's worker count, and with the thread pool at sesshud's
  bus concurrency (6: 2 receiver and 4 sender lanes); its settings are listed in the Peers section.
- **Newer daemon keys**: a measurement sets keys such as `bus.output.s3_threshold` only if `sesshud --check`
  accepts them, so the bench runs on daemons with and without them.
- **LocalStack column**: the figures that depend on the server (requests per job, throughput against the raw
  loop, latency) are measured again, by the same code, against LocalStack (the tests' second server), with moto
  stopped. Each ratio compares sesshud and the raw loop on the same server. Targets are judged on moto's figures."""


def _met(value: bool | None) -> str:
    if value is None:
        return "-"
    return "yes" if value else "**no**"


def render(sections: list[Section], facts: dict[str, str], server: str, command: str,
           total_seconds: float, failures: list[str], second: list[Section] | None = None,
           second_server: str = "") -> str:
    """The whole report; ``second`` holds the same measurements made on ``second_server``."""
    second = second or []
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`); do not edit by hand. Everything runs on "
        "loopback: sesshud as a subprocess against a moto SQS/SNS server (and LocalStack, for its column), "
        "plugins from `bench/plugins/`. "
        "The machine is shared and noisy, so each figure is a ratio against something measured side "
        "by side in the same run, or is shown next to such a baseline.",
        "",
        "## Run",
        "",
        table(["", ""], [
            ["date", facts["date"]],
            ["command", f"`{command}` ({total_seconds:.0f} s)"],
            ["machine", f"{facts['nproc']} CPUs, {facts['cpu']}, {facts['os']}"],
            ["load average", facts["load"]],
            ["Python", facts["python"]],
            ["versions", f"boto3 {facts['boto3']}, botocore {facts['botocore']}, moto {facts['moto']}, "
                         f"pebble {facts['pebble']}, psutil {facts['psutil']}, celery {facts['celery']}, "
                         f"sesshu {facts['sesshu']}"],
            ["server", server],
            *([["second server", second_server]] if second else []),
        ]),
        "",
        "## How",
        "",
        METHOD,
        "",
        "## Summary",
        "",
    ]
    again = {(s.title, f.name): f.measured for s in second for f in s.figures}
    rows = []
    for s in sections:
        for f in s.figures:
            row = [f"{s.title}: {f.name}", f.measured, f.target or "-", _met(f.met), f.note]
            if second:
                row.insert(2, again.get((s.title, f.name), "-"))
            rows.append(row)
    header = ["figure", "measured", "target", "met?", "notes"]
    if second:
        header[1:2] = ["moto", "LocalStack"]
    out.append(table(header, rows))
    if failures:
        out += ["", "Measurements that failed in this run:", ""]
        out += [f"- {f}" for f in failures]
    for s in sections:
        if s.details:
            out += ["", f"## {s.title}", "", f"({s.seconds:.0f} s)", ""]
            for block in s.details:
                out += [block, ""]
    for s in second:
        out += ["", f"## {s.title}, on LocalStack", "", f"({s.seconds:.0f} s)", ""]
        out += [table(["figure", "measured", "notes"], [[f.name, f.measured, f.note] for f in s.figures]), ""]
        for block in s.details:
            out += [block, ""]
    return "\n".join(out).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
