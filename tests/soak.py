"""The soak run: thousands of requests through two daemons while things break.

``make soak`` (``python -m tests.soak``) starts a moto server, a TCP proxy in
front of it (``tests.harness.proxy``), an HTTP proxy in front of that which
answers as AWS does when it throttles or is down (``tests.harness.awsfaults``),
and two ``sesshud`` daemons sharing one queue through both. A producer keeps about ``--outstanding`` requests in
the queue (moto's SQS costs O(depth) per request, so the depth stays
moderate) until ``--requests`` have been sent. Meanwhile the run:

* SIGKILLs a random worker child every ``--kill-every`` seconds;
* breaks the bus for ``--outage`` seconds (the proxy refuses, or hangs);
* throttles about half of the publishes, deletes and visibility changes for
  ``--throttling`` seconds;
* SIGKILLs one master, then starts it again (as systemd would);
* makes SNS answer 503 to every publish for ``--sns-outage`` seconds.

The mix holds quick jobs (echo, sleep 0.05 s), jobs with no data, and jobs
that can never succeed: a segfault, an exit, a hang past the timeout, a
result too large for SNS (no S3 bucket is set). At the end every request must
be accounted for: a result published (echo, sleep), deleted as empty (none:
found through the daemons' "empty:" log lines), or in the dead-letter queue.

The moto server locks each queue (``tests.harness.motoserver``), so every
anomaly the soak sees is Sesshu's. The counts are printed, and the exit status
is 1 on any of them: a lost request, a duplicate or an unlogged result that
neither the master's SIGKILL nor a publish whose answer the outage cut off
explains (``Soak.explained``), an orphan, a master that died by itself, an
outcome other than its kind's, or an HTTP 500 from moto.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sesshu.bus.pacing import RETRY_CAP
from tests.harness.aws import Deployment, MotoServer, provision, queue_depth
from tests.harness.awsfaults import UNAVAILABLE, AwsFaults
from tests.harness.daemon import Daemon, write_config
from tests.harness.proxy import TcpProxy

# kind: (weight, how the target is written, what must become of it)
MIX: dict[str, tuple[int, str, str]] = {
    "echo": (520, "chaos:echo:{n}", "result"),
    "sleep": (250, "chaos:sleep:0.05{n:05d}", "result"),
    "none": (60, "chaos:none:{n}", "empty"),
    "segv": (50, "chaos:segv:{n}", "dlq"),
    "exit": (50, "chaos:exit:{n}", "dlq"),
    "big": (50, "chaos:big:{big}", "dlq"),
    "hang": (10, "chaos:hang:{n}", "dlq"),
}
WORKERS = {"left": 4, "right": 3}  # daemon name -> worker children
PUBLISHES = {"sns:Publish", "sns:PublishBatch"}
THROTTLED = PUBLISHES | {"sqs:DeleteMessageBatch", "sqs:ChangeMessageVisibilityBatch"}
# A master SIGKILLed under load may have published results whose deletes were
# lingering for a fuller batch (docs/reliability.md: up to 1 s of them); those
# messages come back and are published again. A duplicate is explained by the
# kill when its first result was sent in this many seconds before it: the 1 s
# linger, plus the delete call in flight and the results batch's own 50 ms
# linger, with room for a loaded two-core machine. When the kill falls while
# deletes are throttled (or within the outbox's longest backoff after), a
# published result's delete may have been waiting out its backoff since the
# throttling began: the window then reaches back to that start.
KILL_WINDOW = 3.0
OUTCOME_LINE = re.compile(r"sesshu\.jobs\.outcomes: (done|empty|retried|rejected): \S+ (\S+): (.*?)"
                          r"(?:; message \S+ (?:will be retried|left for the dead-letter queue))?$")


@dataclass
class Refusal:
    """A phase of AWS's own refusals, begun once ``at`` of the requests were sent, lasting ``seconds``."""

    at: float
    what: str
    seconds: float
    begin: Callable[[], None]
    refuses_deletes: bool = False
    until: float | None = None  # monotonic, once begun
    over: bool = False
    began_at: float | None = None  # wall clock, to compare with SQS's SentTimestamp
    ended_at: float | None = None  # wall clock


@dataclass
class Ledger:
    """What was sent, and what has become of it so far."""

    kinds: dict[str, str] = field(default_factory=dict)  # target -> kind
    results: Counter[str] = field(default_factory=Counter)  # target -> results published
    first_sent: dict[str, float] = field(default_factory=dict)  # target -> when its first result was sent
    dead: Counter[str] = field(default_factory=Counter)  # target -> dead letters
    empty: set[str] = field(default_factory=set)  # targets logged "empty:"
    done_logged: Counter[str] = field(default_factory=Counter)  # target -> "done:" lines
    retried: dict[str, list[str]] = field(default_factory=dict)  # target -> why retried or rejected, each time

    def accounted(self) -> set[str]:
        return set(self.results) | set(self.dead) | self.empty

    def lost(self) -> set[str]:
        return set(self.kinds) - self.accounted()


class LogReader:
    """Reads the outcome lines each daemon log gained since the last look."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def read(self, ledger: Ledger) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            m = OUTCOME_LINE.search(line.decode(errors="replace"))
            if m is None:
                continue
            if m.group(1) == "empty":
                ledger.empty.add(m.group(2))
            elif m.group(1) == "done":
                ledger.done_logged[m.group(2)] += 1
            else:
                ledger.retried.setdefault(m.group(2), []).append(f"{m.group(1)}: {m.group(3)[:70]}")


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.rng = random.Random(args.seed)
        self.ledger = Ledger()
        self.started = time.monotonic()
        self.counter = 0  # request serial number, to keep targets unique
        self.kills = 0
        self.master_killed_at: float | None = None  # wall clock, to compare with SQS's SentTimestamp
        self.refusals: list[Refusal] = []
        self.epoch = time.time()  # wall clock at the start, for SQS timestamps
        self.dead_attrs: dict[str, dict[str, str]] = {}  # dead-lettered target -> its SQS attributes
        self.sqs: Any = None  # moto clients, once the server runs
        self.faults: Any = None  # the AWS-faults proxy, once it runs
        self.sns: Any = None

    # -- the parts -------------------------------------------------------------

    def note(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def make_targets(self, n: int) -> list[tuple[str, str]]:
        kinds = list(MIX)
        weights = [MIX[k][0] for k in kinds]
        out = []
        for kind in self.rng.choices(kinds, weights, k=n):
            self.counter += 1
            target = MIX[kind][1].format(n=self.counter, big=300000 + self.counter)
            out.append((kind, target))
        return out

    def publish(self, moto: MotoServer, dep: Deployment, batch: list[tuple[str, str]]) -> None:
        entries = [{"Id": str(i), "Message": json.dumps({"plugin": "chaos", "target": t})}
                   for i, (_, t) in enumerate(batch)]
        reply = self.sns.publish_batch(TopicArn=dep.requests_topic, PublishBatchRequestEntries=entries)
        failed = {int(f["Id"]) for f in reply.get("Failed", [])}
        for i, (kind, target) in enumerate(batch):
            if i not in failed:
                self.ledger.kinds[target] = kind

    def collect(self, queue_url: str, into: Counter[str], envelope: bool, wait: int = 0) -> None:
        """Receive and delete everything visible on a queue; the first receive may long-poll."""
        while True:
            reply = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                             MessageSystemAttributeNames=["All"])
            wait = 0
            msgs = reply.get("Messages", [])
            if not msgs:
                return
            for m in msgs:
                body = json.loads(m["Body"])
                target = (json.loads(body["Message"]) if envelope else body)["target"]
                into[target] += 1
                if envelope:
                    self.dead_attrs[target] = m.get("Attributes", {})
                else:
                    sent = int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000
                    self.ledger.first_sent[target] = min(sent, self.ledger.first_sent.get(target, sent))
            self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])

    # -- the run ------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        with MotoServer(log_path=self.workdir / "moto.log") as moto, \
                TcpProxy(moto.port, max_connections=128) as proxy, AwsFaults(proxy.port) as faults:
            self.faults = faults
            self.sqs, self.sns = moto.client("sqs"), moto.client("sns")
            dep = provision(moto, f"soak{uuid.uuid4().hex[:8]}", visibility=args.visibility, max_receive=3)
            daemons = [self.start_daemon(moto, dep, proxy, name) for name in WORKERS]
            readers = {d.log_path: LogReader(d.log_path) for d in daemons}
            try:
                code = self.drive(moto, dep, proxy, daemons, readers)
            finally:
                for d in daemons:
                    d.kill_all()
        return code

    def start_daemon(self, moto: MotoServer, dep: Deployment, proxy: TcpProxy, name: str) -> Daemon:
        bus = {"region": "us-east-1", "endpoint_url": self.faults.url,
               "input": {"queue": dep.queue_url}, "output": {"topic": dep.results_topic}}
        config = write_config(self.workdir / f"{name}.yaml", moto, dep, plugin=["chaos"], bus=bus, workers={
            "count": WORKERS[name], "timeout": 2, "retry": {"delay": 1, "max_delay": 2},
            "polling": {"interval": 1}, "shutdown_timeout": 10})
        return Daemon(config, moto).start()

    def drive(self, moto: MotoServer, dep: Deployment, proxy: TcpProxy, daemons: list[Daemon],
              readers: dict[Path, LogReader]) -> int:
        args, ledger = self.args, self.ledger
        deadline = self.started + args.deadline
        next_kill = time.monotonic() + args.kill_every
        next_report = time.monotonic() + 10
        outage_at, outage_until = args.requests * 0.3, None  # by requests sent
        restart_at, restarted = args.requests * 0.6, False
        refusals = self.refusals = [
            Refusal(0.45, "throttling of publishes, deletes and visibility changes", args.throttling,
                    lambda: self.faults.fail(THROTTLED, run=6), refuses_deletes=True),
            Refusal(0.75, "SNS outage: every publish answered 503", args.sns_outage,
                    lambda: self.faults.fail(PUBLISHES, UNAVAILABLE))]
        orphans = crashes = 0
        idle_since: float | None = None  # all sent, and the input queue empty, since then
        while time.monotonic() < deadline:
            now = time.monotonic()
            sent = len(ledger.kinds)
            # Producer: top the queue up to the outstanding level.
            if sent < args.requests:
                room = min(args.outstanding - queue_depth(moto, dep.queue_url), args.requests - sent)
                for i in range(0, max(room, 0), 10):
                    self.publish(moto, dep, self.make_targets(min(10, room - i)))
            # Collectors: results, dead letters, and outcomes from the logs. The
            # results' long poll (1 s at most) paces the loop when nothing happens.
            self.collect(dep.results_queue_url, ledger.results, envelope=False, wait=1)
            self.collect(dep.dlq_url, ledger.dead, envelope=True)
            for reader in readers.values():
                reader.read(ledger)
            # Chaos.
            if now >= next_kill:
                next_kill = now + args.kill_every
                self.kill_a_worker(daemons)
            if outage_until is None and sent >= outage_at:
                proxy.mode = args.outage_mode
                outage_until = now + args.outage
                self.note(f"bus outage begins: proxy {args.outage_mode} for {args.outage:g} s")
            elif outage_until is not None and proxy.mode != "pass" and now >= outage_until:
                proxy.mode = "pass"
                self.note("bus outage ends")
            under_way = next((r for r in refusals if r.until is not None and not r.over), None)
            if under_way is not None and under_way.until is not None and now >= under_way.until:
                self.faults.clear()
                under_way.over = True
                under_way.ended_at = time.time()
                self.note(f"{under_way.what}: over; refused so far: {dict(self.faults.refused)}")
            elif under_way is None:  # one at a time, in order
                due = next((r for r in refusals if r.until is None and r.seconds > 0), None)
                if due is not None and sent >= args.requests * due.at:
                    due.begin()
                    due.until = now + due.seconds
                    due.began_at = time.time()
                    self.note(f"{due.what}, for {due.seconds:g} s")
            if not restarted and sent >= restart_at:
                restarted = True
                orphans += self.kill_and_restart(moto, dep, proxy, daemons, readers)
            # A master that died by itself is a bug; restart it as systemd would.
            for i, d in enumerate(daemons):
                if d.proc is not None and d.proc.poll() is not None:
                    crashes += 1
                    self.note(f"BUG: master {d.pid} ({d.config.stem}) exited by itself with "
                              f"{d.proc.returncode}; restarting it. Its last words:\n{last_words(d.log())}")
                    d.kill_all()
                    daemons[i] = self.start_daemon(moto, dep, proxy, d.config.stem)
            if now >= next_report:
                next_report = now + 10
                self.note(f"sent {sent}, accounted {len(ledger.accounted())}, "
                          f"queue depth {queue_depth(moto, dep.queue_url)}")
            if sent >= args.requests and proxy.mode == "pass" \
                    and all(r.over or r.seconds <= 0 for r in refusals):
                if not ledger.lost():
                    break
                # Nothing left anywhere for a while: what is missing will not come.
                # The results queue and the DLQ count too: what our collectors
                # received but had not deleted stays hidden for its visibility timeout.
                if any(queue_depth(moto, url) for url in (dep.queue_url, dep.results_queue_url, dep.dlq_url)):
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since > args.quiet:
                    self.note(f"queue empty for {args.quiet:g} s with requests unaccounted for")
                    break
        self.note("stopping the daemons")
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop(signal.SIGTERM, timeout=60)
        # Collect until nothing is left, hidden or not, in the results queue and the DLQ.
        settle_by = time.monotonic() + 60
        while True:
            self.collect(dep.results_queue_url, ledger.results, envelope=False, wait=1)
            self.collect(dep.dlq_url, ledger.dead, envelope=True)
            for reader in readers.values():
                reader.read(ledger)
            hidden = queue_depth(moto, dep.results_queue_url) + queue_depth(moto, dep.dlq_url)
            if not ledger.lost() or not hidden or time.monotonic() > settle_by:
                break
        return self.report(moto, dep, daemons, orphans, crashes)

    def kill_a_worker(self, daemons: list[Daemon]) -> None:
        live = [d for d in daemons if d.proc is not None and d.proc.poll() is None]
        pids = [pid for d in live for pid in d.workers()]
        if pids:
            try:
                os.kill(self.rng.choice(pids), signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass

    def kill_and_restart(self, moto: MotoServer, dep: Deployment, proxy: TcpProxy, daemons: list[Daemon],
                         readers: dict[Path, LogReader]) -> int:
        """SIGKILL one master, check its children follow, start it again; return orphans found."""
        victim = daemons[0]
        assert victim.proc is not None
        self.note(f"SIGKILL master {victim.pid} ({victim.config.stem})")
        self.master_killed_at = time.time()
        victim.proc.kill()
        victim.proc.wait(10)
        give_up = time.monotonic() + 10
        while victim.leftovers() and time.monotonic() < give_up:
            self.collect(dep.results_queue_url, self.ledger.results, envelope=False)
        orphans = victim.leftovers()
        if orphans:
            self.note(f"BUG: {len(orphans)} process(es) outlived their master by 10 s: "
                      + "; ".join(title[:60] for _, title in orphans))
            victim.kill_all()
        daemons[0] = self.start_daemon(moto, dep, proxy, victim.config.stem)
        self.note(f"restarted it as {daemons[0].pid}")
        return len(orphans)

    def describe_dead(self, target: str) -> str:
        attrs = self.dead_attrs.get(target)
        if not attrs:
            return ""
        def at(key: str) -> str:
            return f"{int(attrs.get(key, 0)) / 1000 - self.epoch:.1f} s" if key in attrs else "?"
        return (f", received {attrs.get('ApproximateReceiveCount', '?')} times, sent at {at('SentTimestamp')}, "
                f"first received at {at('ApproximateFirstReceiveTimestamp')}")

    def lost_answers(self) -> Counter[str]:
        """Target -> publishes carrying its result that SNS may have carried out, though the daemon saw them fail.

        The outage resets every open connection, a publish in flight with
        them; the daemon publishes that result again, as at-least-once
        delivery must (docs/reliability.md).
        """
        lost: Counter[str] = Counter()
        for op, body in self.faults.unanswered:
            if op not in PUBLISHES:
                continue
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10_000)
            for key, values in form.items():
                if key == "Message" or (key.startswith("PublishBatchRequestEntries.member.")
                                        and key.endswith(".Message")):
                    try:
                        lost[json.loads(values[0])["target"]] += 1
                    except (ValueError, KeyError, TypeError):
                        pass  # not a result document (an S3 pointer): its target is not in the body
        return lost

    def explained(self, target: str, lost_answers: Counter[str]) -> bool:
        """Whether the target's extra results are explained by lost answers, or else by the master's SIGKILL."""
        results = self.ledger.results[target]
        extra = max(results - 1, results - self.ledger.done_logged[target])
        return extra <= lost_answers[target] or self.explained_by_the_kill(target)

    def explained_by_the_kill(self, target: str) -> bool:
        """Whether the target's first result was sent in the window before the master's SIGKILL (KILL_WINDOW)."""
        killed, sent = self.master_killed_at, self.ledger.first_sent.get(target)
        if killed is None or sent is None:
            return False
        since = killed - KILL_WINDOW
        for r in self.refusals:
            if r.refuses_deletes and r.began_at is not None and r.began_at <= killed \
                    and (r.ended_at is None or killed <= r.ended_at + RETRY_CAP):
                since = min(since, r.began_at - KILL_WINDOW)
        return since <= sent <= killed + 0.1

    def report(self, moto: MotoServer, dep: Deployment, daemons: list[Daemon], orphans: int, crashes: int) -> int:
        ledger = self.ledger
        wall = time.monotonic() - self.started
        sent = set(ledger.kinds)
        lost = ledger.lost()
        expected = {k: MIX[k][2] for k in MIX}
        surprises: Counter[str] = Counter()
        odd: list[str] = []
        for target, kind in ledger.kinds.items():
            if ledger.results[target]:
                got = "result"
            elif target in ledger.empty:
                got = "empty"
            elif ledger.dead[target]:
                got = "dlq"
            else:
                continue
            if got != expected[kind]:
                surprises[f"{kind}->{got}"] += 1
                odd.append(f"  {target} ({got}{self.describe_dead(target)}); retried or rejected because: "
                           f"{ledger.retried.get(target, ['-'])}")
        unlogged = [t for t in ledger.results if ledger.results[t] > ledger.done_logged[t]]
        duplicated = [t for t in sent if ledger.results[t] > 1]
        lost_answers = self.lost_answers()
        unexplained = sorted(t for t in set(duplicated) | set(unlogged) if not self.explained(t, lost_answers))
        print()
        print(f"soak: seed {self.args.seed}; logs in {self.workdir} (removed unless the run failed "
              "or --workdir was given)")
        by_kind = ", ".join(f"{k} {n}" for k, n in Counter(ledger.kinds.values()).items())
        print(f"sent:          {len(sent)}  ({by_kind})")
        print(f"done:          {sum(1 for t in sent if ledger.results[t])}  (distinct targets with a result)")
        print(f"duplicated:    {len(duplicated)}  (targets with more than one result); results without a "
              f"'done:' line: {len(unlogged)}; publishes whose answer the outage cut off: "
              f"{sum(1 for op, _ in self.faults.unanswered if op in PUBLISHES)}, carrying {len(lost_answers)} "
              f"results; not explained by these or the master's SIGKILL: {len(unexplained)}"
              + (f" {unexplained[:10]}" if unexplained else ""))
        print(f"empty:         {len(ledger.empty & sent)}  (deleted with no result, from the daemons' logs)")
        print(f"dead-lettered: {sum(1 for t in sent if ledger.dead[t])}")
        print(f"lost:          {len(lost)}")
        print(f"other:         {dict(surprises) or 'none'} (outcome differs from the kind's usual one)")
        for line in odd[:10]:
            print(line)
        print(f"chaos:         {self.kills} workers SIGKILLed, 1 master SIGKILLed and "
              f"restarted, {self.args.outage:g} s outage ({self.args.outage_mode}), {self.args.throttling:g} s "
              f"throttling, {self.args.sns_outage:g} s SNS outage (refused: {dict(self.faults.refused)}); "
              "orphans after the master's "
              f"SIGKILL: {orphans}; masters that died by themselves: {crashes}")
        print(f"input queue depth at the end: {queue_depth(moto, dep.queue_url)}")
        moto_log = (self.workdir / "moto.log").read_text(errors="replace")
        moto_errors = moto_log.count("Error on request")
        print(f"moto errors:   {moto_errors} HTTP 500s")
        for d in daemons:
            summary = [ln for ln in d.log().splitlines() if "stopped; outcomes" in ln]
            print(f"{d.config.stem}: {summary[-1].split('INFO ')[-1] if summary else 'no summary'}")
        if lost:
            print(f"LOST (first 20): {sorted(lost)[:20]}")
        print(f"wall time:     {wall:.1f} s")
        failures = {"lost requests": len(lost), "unexplained duplicates or unlogged results": len(unexplained),
                    "orphans": orphans, "masters that died by themselves": crashes,
                    "unexpected outcomes": len(odd), "moto HTTP 500s": moto_errors}
        failed = {why: n for why, n in failures.items() if n}
        print(f"FAILED: {', '.join(f'{n} {why}' for why, n in failed.items())}" if failed else "soak: OK")
        return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--outstanding", type=int, default=100, help="input queue depth the producer keeps")
    # Longer than the outage by more than the heartbeat's margin (a third of it):
    # a lock that cannot be extended while the bus is down lapses, in SQS too.
    p.add_argument("--visibility", type=int, default=45)
    p.add_argument("--kill-every", type=float, default=2.0, help="seconds between worker SIGKILLs")
    p.add_argument("--outage", type=float, default=10.0, help="seconds the bus is unreachable")
    p.add_argument("--outage-mode", choices=["refuse", "hang"], default="refuse")
    p.add_argument("--throttling", type=float, default=20.0,
                   help="seconds half of the publishes, deletes and visibility changes are throttled")
    p.add_argument("--sns-outage", type=float, default=60.0, help="seconds every publish is answered 503")
    p.add_argument("--deadline", type=float, default=420.0, help="give up (and count the rest lost) after this")
    p.add_argument("--quiet", type=float, default=30.0,
                   help="stop once everything is sent and the queue stayed empty this long")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="where configs and logs go (default: a temp dir)")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sesshu-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, workdir)
    code = soak.run()
    if code == 0 and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)  # logs are kept when something went wrong
    return code


def last_words(log: str, lines: int = 30) -> str:
    """The end of a log, from its last traceback if it has one."""
    tail = log[log.rfind("Traceback (most recent call last)"):] if "Traceback" in log else log
    return "\n".join("    " + line for line in tail.splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
