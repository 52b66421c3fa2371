"""Faults, end to end: a real sesshud, a real moto server, real sockets and signals.

Network faults are played by a TCP proxy between the daemon and moto
(``tests.harness.proxy``), and AWS's own refusals (throttling, 503s) by an
HTTP proxy that answers some calls as AWS would (``tests.harness.awsfaults``).
Requests are published straight to moto, so producers keep working while the daemon's path to the bus is broken. The
guarantee under test is always the same: every request ends with its
result published, or in the dead-letter queue; none is lost, and a message
is never deleted without its result having been published.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sesshu.bus.api import SNS_MAX_BYTES, message_size, wire_attributes
from sesshu.jobs.failures import attributes
from tests.harness.aws import Deployment, Inbox, MotoServer, drain, poll, provision, publish, queue_depth
from tests.harness.awsfaults import UNAVAILABLE, AwsFaults
from tests.harness.daemon import Daemon, write_config
from tests.harness.proxy import TcpProxy

DONE = re.compile(r"INFO sesshu\.jobs\.outcomes: done: (\S+) (.+?): result published.*; message (\S+) deleted")
RETRIED = re.compile(r"WARNING sesshu\.jobs\.outcomes: retried: (\S+) (.+?): (.*); message (\S+) will be retried")


# -- helpers ----------------------------------------------------------------------


def fresh(moto: MotoServer, prefix: str, **kwargs: Any) -> Deployment:
    return provision(moto, f"{prefix}{uuid.uuid4().hex[:8]}", **kwargs)


def configure(path: Path, moto: MotoServer, dep: Deployment, *, endpoint: str | None = None,
              s3_bucket: str | None = None, **overrides: Any) -> Path:
    """write_config, with the bus pointed at ``endpoint`` (a proxy) and an optional S3 bucket."""
    output: dict[str, Any] = {"topic": dep.results_topic}
    if s3_bucket:
        output["s3_bucket"] = s3_bucket
    bus = {"region": "us-east-1", "endpoint_url": endpoint or moto.url,
           "input": {"queue": dep.queue_url}, "output": output}
    return write_config(path, moto, dep, bus=bus, **overrides)


def done_lines(*daemons: Daemon) -> list[tuple[str, str]]:
    """(target, message id) of every "done:" line in the daemons' logs."""
    return [(m.group(2), m.group(3)) for d in daemons for m in DONE.finditer(d.log())]


def let_the_fault_last_until(moment: float) -> None:
    """Sleep until ``moment`` (monotonic): a fault's length is the thing tested, not a condition to wait for."""
    time.sleep(max(0.0, moment - time.monotonic()))


def assert_all_accounted(moto: MotoServer, dep: Deployment, results: Inbox, expected: list[str],
                         daemons: list[Daemon]) -> None:
    """Every expected target has a result, the input queue is empty, and every
    "done:" line stands for a result that really arrived (none deleted unpublished)."""
    counts = results.refresh()
    assert set(expected) <= set(counts), sorted(set(expected) - set(counts))
    done = Counter(t for t, _ in done_lines(*daemons))
    for target in expected:
        assert counts[target] >= done[target] >= 1, (target, counts[target], done[target])
    assert queue_depth(moto, dep.queue_url) == 0


def outage_lines(d: Daemon) -> tuple[int, int]:
    log = d.log()
    return (log.count("ERROR sesshu.bus.lanes: bus outage: "),
            log.count("WARNING sesshu.bus.lanes: bus recovered after"))


# -- network faults -----------------------------------------------------------------


def test_refused_connections_lose_nothing(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "refuse", visibility=5, max_receive=5)
    with TcpProxy(moto.port) as proxy:
        d = Daemon(configure(cfg_path, moto, dep, endpoint=proxy.url), moto)
        daemons.append(d.start())
        results = Inbox(moto, dep.results_queue_url)
        before = [f"chaos:echo:before-{i}" for i in range(10)]
        during = [f"chaos:echo:during-{i}" for i in range(10)]
        after = [f"chaos:echo:after-{i}" for i in range(10)]
        publish(moto, dep, "chaos", *before)
        poll(lambda: results.refresh(), 30, what="a first result")  # mid-run, not before it

        proxy.mode = "refuse"
        outage_ends = time.monotonic() + 5
        publish(moto, dep, "chaos", *during)
        d.wait_log(r"ERROR sesshu\.bus\.lanes: bus outage: ", timeout=30)
        let_the_fault_last_until(outage_ends)
        assert d.proc is not None and d.proc.poll() is None
        assert outage_lines(d) == (1, 0)
        proxy.mode = "pass"

        d.wait_log(r"bus recovered after \d+\.\d s", timeout=60)
        publish(moto, dep, "chaos", *after)
        results.wait_for(before + during + after, timeout=120)
        assert d.stop() == 0
    assert outage_lines(d) == (1, 1)
    assert_all_accounted(moto, dep, results, before + during + after, [d])
    assert drain(moto, dep.dlq_url) == []
    assert "outcomes: done=" in d.log()


def test_half_open_endpoint_loses_nothing_and_deadlines_hold(moto: MotoServer, cfg_path: Path,
                                                             daemons: list[Daemon]) -> None:
    dep = fresh(moto, "hang", visibility=30, max_receive=3)
    with TcpProxy(moto.port) as proxy:
        d = Daemon(configure(cfg_path, moto, dep, endpoint=proxy.url, workers={"timeout": 2}), moto)
        daemons.append(d.start())
        results = Inbox(moto, dep.results_queue_url)
        before = [f"chaos:echo:before-{i}" for i in range(10)]
        during = [f"chaos:echo:during-{i}" for i in range(10)]
        after = [f"chaos:echo:after-{i}" for i in range(10)]
        publish(moto, dep, "chaos", *before)
        results.wait_for(before, timeout=60)
        publish(moto, dep, "chaos", "chaos:hang")
        poll(lambda: "sesshud: worker chaos chaos:hang" in d.worker_titles(), 30, what="chaos:hang to start")

        proxy.mode = "hang"
        hang_began = time.monotonic()
        publish(moto, dep, "chaos", *during)
        # The loop keeps enforcing deadlines while every bus call is stuck: the
        # job's 2 s timeout fires while the bus still hangs (it does for 12 s).
        d.wait_log(r"timed out after 2 s on chaos:hang", timeout=10)
        assert proxy.mode == "hang"
        let_the_fault_last_until(hang_began + 12)
        assert d.proc is not None and d.proc.poll() is None
        proxy.mode = "pass"

        publish(moto, dep, "chaos", *after)
        results.wait_for(before + during + after, timeout=120)
        # chaos:hang keeps timing out until the redrive policy dead-letters it.
        dead = Inbox(moto, dep.dlq_url, envelope=True)
        assert dead.wait_for(["chaos:hang"], timeout=90) == Counter({"chaos:hang": 1})
        assert d.stop() == 0
    outages, recoveries = outage_lines(d)
    # A 12-second hang may end inside botocore's retries of one call: then no outage shows.
    assert outages <= 1 and recoveries == outages
    assert_all_accounted(moto, dep, results, before + during + after, [d])
    assert "chaos:hang" not in results.counts()


def test_parent_sigkill_takes_busy_children_along(moto: MotoServer, cfg_path: Path,
                                                  daemons: list[Daemon]) -> None:
    dep = fresh(moto, "orphan", visibility=5, max_receive=2)
    d = Daemon(configure(cfg_path, moto, dep, workers={"count": 2, "timeout": 60}), moto)
    daemons.append(d.start())
    publish(moto, dep, "chaos", "chaos:sleep:30")
    poll(lambda: "sesshud: worker chaos chaos:sleep:30" in d.worker_titles(), 30, what="the job to start")
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(10)
    # No worker (nor the fork server) outlives its master, busy or idle.
    poll(lambda: not d.leftovers(), 10, what=f"the killed daemon's children to exit: {d.leftovers()}")


def test_parent_sigkill_loses_nothing(moto: MotoServer, tmp_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "kill", visibility=5, max_receive=3)
    first = Daemon(configure(tmp_path / "first.yaml", moto, dep, workers={"count": 3, "timeout": 60}), moto)
    daemons.append(first.start())
    long = ["chaos:sleep:30", "chaos:sleep:30.0"]
    quick = [f"chaos:sleep:0.5{i:03d}" for i in range(12)]
    publish(moto, dep, "chaos", *long)
    poll(lambda: sum("chaos:sleep:30" in t for t in first.worker_titles()) == 2, 60, what="both long jobs running")
    publish(moto, dep, "chaos", *quick)
    poll(lambda: any("chaos:sleep:0.5" in t for t in first.worker_titles()), 60, interval=0.02,
         what="a quick job running")
    assert first.proc is not None
    first.proc.kill()
    first.proc.wait(10)
    poll(lambda: not first.leftovers(), 10, what=f"the killed daemon's children to exit: {first.leftovers()}")

    # A new daemon on the same queue picks up what the dead one held, once its
    # visibility lapses. It gives long jobs 2 s: they time out into the DLQ.
    second = Daemon(configure(tmp_path / "second.yaml", moto, dep, workers={"count": 2, "timeout": 2}), moto)
    daemons.append(second.start())
    results = Inbox(moto, dep.results_queue_url)
    dead = Inbox(moto, dep.dlq_url, envelope=True)
    results.wait_for(quick, timeout=90)
    assert set(dead.wait_for(long, timeout=90)) == set(long)
    assert second.stop() == 0
    assert "stopped; outcomes" not in first.log()
    assert_all_accounted(moto, dep, results, quick, [first, second])
    assert not set(long) & set(results.counts())


def test_two_daemons_share_one_queue(moto: MotoServer, tmp_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "share", visibility=30)
    pair = [Daemon(configure(tmp_path / f"{name}.yaml", moto, dep, workers={"count": 2}), moto)
            for name in ("left", "right")]
    for d in pair:
        daemons.append(d.start())
    targets = [f"chaos:sleep:0.2{i:03d}" for i in range(40)]
    publish(moto, dep, "chaos", *targets)
    results = Inbox(moto, dep.results_queue_url)
    results.wait_for(targets, timeout=120)
    for d in pair:
        assert d.stop() == 0
    counts = results.refresh()
    notes = [line for d in pair for line in d.log().splitlines() if "WARNING" in line or "ERROR" in line]
    assert counts == Counter({t: 1 for t in targets}), notes
    per_daemon = [len(done_lines(d)) for d in pair]
    assert sum(per_daemon) == 40 and all(per_daemon), per_daemon
    assert sorted(t for t, _ in done_lines(*pair)) == sorted(targets)
    assert queue_depth(moto, dep.queue_url) == 0


def test_heartbeat_keeps_a_long_job_invisible(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "beat", visibility=3, max_receive=2)
    d = Daemon(configure(cfg_path, moto, dep, workers={"timeout": 20}), moto)
    daemons.append(d.start())
    publish(moto, dep, "chaos", "chaos:sleep:8")
    results = Inbox(moto, dep.results_queue_url)
    results.wait_for(["chaos:sleep:8"], timeout=60)
    assert d.stop() == 0
    assert results.refresh() == Counter({"chaos:sleep:8": 1})
    assert [t for t, _ in done_lines(d)] == ["chaos:sleep:8"]
    log = d.log()
    assert "retried:" not in log and "could not change its visibility" not in log
    assert "outcomes: done=1, empty=0, rejected=0, retried=0" in log
    assert drain(moto, dep.dlq_url) == []


def test_a_throttled_heartbeat_lets_no_long_job_lapse(moto: MotoServer, cfg_path: Path,
                                                       daemons: list[Daemon]) -> None:
    """Every other visibility change refused on all of its tries, while jobs run twice the visibility timeout.

    An extension that waited out botocore's backoffs (seconds) would come
    after its message lapsed, and a spare worker would run the job again.
    """
    dep = fresh(moto, "slowbeat", visibility=6, max_receive=5)
    with AwsFaults(moto.port) as faults:
        d = Daemon(configure(cfg_path, moto, dep, endpoint=faults.url, workers={"count": 8, "timeout": 60}), moto)
        daemons.append(d.start())
        faults.fail({"sqs:ChangeMessageVisibilityBatch"}, run=1, calls=True)
        targets = [f"chaos:sleep:12.{i:04d}" for i in range(4)]
        publish(moto, dep, "chaos", *targets)
        results = Inbox(moto, dep.results_queue_url)
        results.wait_for(targets, timeout=120)
        poll(lambda: queue_depth(moto, dep.queue_url) == 0, 60, what="the input queue to empty")
        assert d.stop() == 0
    assert faults.refused["sqs:ChangeMessageVisibilityBatch"] >= 2, faults.refused
    assert results.refresh() == Counter({t: 1 for t in targets})
    assert {t: kinds for t, kinds in outcomes_by_target(d).items() if kinds != ["done"]} == {}
    assert "ReceiptHandleIsInvalid" not in d.log()


# -- results too large for SNS ----------------------------------------------------------


def test_large_result_goes_to_s3(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "s3")
    bucket = f"sesshu-{uuid.uuid4().hex[:10]}"
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    d = Daemon(configure(cfg_path, moto, dep, s3_bucket=bucket), moto)
    daemons.append(d.start())
    publish(moto, dep, "chaos", "chaos:big:400000", "chaos:echo:small")
    results = Inbox(moto, dep.results_queue_url)
    results.wait_for(["chaos:big:400000", "chaos:echo:small"], timeout=60)
    docs = {doc["target"]: doc for doc in results.docs}
    # The big one as AWS's extended clients store a payload: a pointer to the whole document.
    (pointer,) = results.pointers()
    assert pointer[1]["s3BucketName"] == bucket
    stored = s3.get_object(Bucket=bucket, Key=pointer[1]["s3Key"])["Body"].read()
    assert json.loads(stored) == docs["chaos:big:400000"]
    assert set(docs["chaos:big:400000"]) == {"target", "plugin", "message_id", "result"}
    assert docs["chaos:big:400000"]["result"] == "x" * 400000
    # Small results still go out inline.
    assert set(docs["chaos:echo:small"]) == {"target", "plugin", "message_id", "result"}
    assert d.stop() == 0
    assert "outcomes: done=2, empty=0, rejected=0, retried=0" in d.log()


MESSAGE_ID = "00000000-0000-0000-0000-000000000000"  # as long as every SQS MessageId


def exact_document_target(size: int, pause: float) -> str:
    """A chaos:big target whose result document is exactly ``size`` bytes."""
    n = size
    while True:
        target = f"chaos:big:{n}:{pause:g}"
        doc = {"target": target, "plugin": "chaos", "message_id": MESSAGE_ID, "result": "x" * n}
        length = len(json.dumps(doc, separators=(",", ":")))
        if length == size:
            return target
        n -= length - size


def unsent_bytes(pid: int) -> int:
    """Bytes ``pid`` wrote to its unix sockets that no reader has taken yet (Send-Q of ``ss -xnp``)."""
    table = subprocess.run(["ss", "-xnp"], capture_output=True, text=True, check=True, timeout=30).stdout
    return sum(int(line.split()[3]) for line in table.splitlines()
               if line.startswith("u_str") and f"pid={pid}," in line)


def test_two_big_results_finishing_together(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    """A document of exactly 256 KiB and an S3 pointer must not share a PublishBatch.

    The master is stopped while both jobs finish, so it reads both results in
    one turn and both are queued for the same sender batch. Together they are
    over what SNS takes in one PublishBatch (moto takes it all the same).
    """
    if os.geteuid() != 0:
        pytest.skip("workers are not dumpable, so only root's ss sees their sockets (CI runs as root)")
    dep = fresh(moto, "pair", visibility=30, max_receive=2)
    bucket = f"sesshu-{uuid.uuid4().hex[:10]}"
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    d = Daemon(configure(cfg_path, moto, dep, s3_bucket=bucket, workers={"count": 2, "timeout": 30}), moto)
    daemons.append(d.start())
    # What fits one message: 256 KiB, less the attributes that go with it.
    fits = SNS_MAX_BYTES - message_size("", wire_attributes(attributes("chaos", "done")))
    exact, oversized = exact_document_target(fits, 3), "chaos:big:400000:3"
    publish(moto, dep, "chaos", exact, oversized)
    poll(lambda: sum("chaos:big:" in t for t in d.worker_titles()) == 2, 30, what="both jobs running")
    workers = d.workers()
    assert d.proc is not None
    d.send_signal(signal.SIGSTOP)
    try:
        # Each result is bigger than a socket buffer: a worker that finished
        # its job waits, part of its result unsent, for the master to read it.
        poll(lambda: all(unsent_bytes(pid) for pid in workers), 30, interval=0.2,
             what="both workers to be done and waiting for the master to read their results")
    finally:
        d.send_signal(signal.SIGCONT)
    results = Inbox(moto, dep.results_queue_url)
    results.wait_for([exact, oversized], timeout=60)
    assert d.stop() == 0
    by_target = {doc["target"]: doc for doc in results.docs}
    inline = [body for body in results.raw if isinstance(doc := json.loads(body), dict) and doc["target"] == exact]
    assert [len(body.encode()) for body in inline] == [fits]
    (pointer,) = results.pointers()
    stored = json.loads(s3.get_object(Bucket=bucket, Key=pointer[1]["s3Key"])["Body"].read())
    assert stored["result"] == "x" * 400000 == by_target[oversized]["result"]
    log = d.log()
    assert "outcomes: done=2, empty=0, rejected=0, retried=0" in log
    assert "put_object=1" in log  # stored once
    assert "bus outage" not in log and "not an outage" not in log  # nothing was refused
    assert drain(moto, dep.dlq_url) == []


def test_large_result_without_s3_is_dead_lettered(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "big", visibility=30, max_receive=2)
    d = Daemon(configure(cfg_path, moto, dep), moto)
    daemons.append(d.start())
    # 400000 is over the child's own limit; 262100 fits it, but not once wrapped in the document.
    targets = ["chaos:big:400000", "chaos:big:262100"]
    publish(moto, dep, "chaos", *targets)
    dead = Inbox(moto, dep.dlq_url, envelope=True)
    assert dead.wait_for(targets, timeout=90) == Counter(dict.fromkeys(targets, 1))
    assert d.stop() == 0
    retried = [(m.group(2), m.group(3)) for m in RETRIED.finditer(d.log())]
    for target in targets:
        reasons = [why for t, why in retried if t == target]
        assert len(reasons) == 2 and all("bytes, over the" in why for why in reasons), retried
    assert not Inbox(moto, dep.results_queue_url).refresh()
    assert "done:" not in d.log()


# -- worker limits ------------------------------------------------------------------------


def test_memory_limit_fails_only_the_hog(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "mem", visibility=30, max_receive=1)
    d = Daemon(configure(cfg_path, moto, dep, plugin=["chaos", "hog"],
                         workers={"count": 2, "memory_limit": 200, "timeout": 30}), moto)
    daemons.append(d.start())
    poll(lambda: len(d.workers()) == 2, 30, what="2 workers")
    before = set(d.workers())
    publish(moto, dep, "hog", "hog:grow")
    d.wait_log(r"retried: hog hog:grow: ", timeout=60)
    # The hog's worker leaves (or was killed); the other one was never touched.
    poll(lambda: len(d.workers()) == 2 and len(before & set(d.workers())) == 1, 30,
         what="the pool back at full strength, with one original worker")
    dead = Inbox(moto, dep.dlq_url, envelope=True)
    assert dead.wait_for(["hog:grow"], timeout=60) == Counter({"hog:grow": 1})
    publish(moto, dep, "chaos", "chaos:echo:after")
    results = Inbox(moto, dep.results_queue_url)
    results.wait_for(["chaos:echo:after"], timeout=60)
    assert d.stop() == 0
    assert "outcomes: done=1, empty=0, rejected=0, retried=1" in d.log()


def test_memory_failure_takes_no_other_job_down(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "memnext", visibility=30, max_receive=5)
    d = Daemon(configure(cfg_path, moto, dep, plugin=["chaos", "hog"],
                         workers={"count": 1, "prefetch": 1, "memory_limit": 200, "timeout": 30}), moto)
    daemons.append(d.start())
    publish(moto, dep, "hog", "hog:grow:2")
    poll(lambda: "sesshud: worker hog hog:grow:2" in d.worker_titles(), 30, what="the hog to start")
    # Prefetched while the hog runs: it waits in the parent for the only worker.
    publish(moto, dep, "chaos", "chaos:echo:next")
    d.wait_log(r"done: chaos chaos:echo:next", timeout=60)  # fails at once if the daemon dies
    log = d.log()
    assert "retried: chaos chaos:echo:next" not in log
    assert "idle worker" not in log


def test_max_jobs_recycles_the_worker(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = fresh(moto, "recycle")
    d = Daemon(configure(cfg_path, moto, dep, workers={"count": 1, "max_jobs": 2}), moto)
    daemons.append(d.start())
    targets = [f"chaos:echo:{i}" for i in range(5)]
    publish(moto, dep, "chaos", *targets)
    results = Inbox(moto, dep.results_queue_url)
    results.wait_for(targets, timeout=60)
    assert d.stop() == 0
    pids = Counter(doc["result"]["pid"] for doc in results.docs)
    # One worker at a time, two jobs each: three workers served five jobs.
    assert sorted(pids.values()) == [1, 2, 2], pids


# -- AWS answering "too many requests" or "unavailable" ------------------------------

OUTCOME = re.compile(r"sesshu\.jobs\.outcomes: (done|empty|retried|rejected): \S+ (\S+): ")


def outcomes_by_target(d: Daemon) -> dict[str, list[str]]:
    """Every outcome line's kind, by target: a job done twice shows up here twice."""
    seen: dict[str, list[str]] = {}
    for m in OUTCOME.finditer(d.log()):
        seen.setdefault(m.group(2), []).append(m.group(1))
    return seen


def run_through_a_bus_fault(moto: MotoServer, cfg_path: Path, daemons: list[Daemon], prefix: str,
                            operations: set[str], code: str | None, run: int, lasting: float,
                            jobs: int = 120) -> tuple[Daemon, AwsFaults]:
    """Publish ``jobs`` requests, refuse ``operations`` mid-run for ``lasting`` seconds, then check the rule.

    The rule: every request ends with exactly one result and one outcome
    (no job runs twice because of the bus), nothing reaches the DLQ, and no
    message is left on the input queue, visible or in flight.
    """
    dep = fresh(moto, prefix, visibility=20, max_receive=3)
    with AwsFaults(moto.port) as faults:
        d = Daemon(configure(cfg_path, moto, dep, endpoint=faults.url,
                             workers={"count": 4, "timeout": 10}), moto)
        daemons.append(d.start())
        results = Inbox(moto, dep.results_queue_url)
        # Jobs of 50 ms: the fault meets a daemon at work, with results and deletes in every state.
        targets = [f"chaos:sleep:0.05{i:05d}" for i in range(jobs)]
        publish(moto, dep, "chaos", *targets[:jobs // 3])
        poll(lambda: results.refresh(), 30, what="a first result")
        faults.fail(operations, code, run=run)
        fault_ends = time.monotonic() + lasting
        publish(moto, dep, "chaos", *targets[jobs // 3:])
        poll(lambda: sum(faults.refused.values()) > 0, 30, what="a refused call")
        let_the_fault_last_until(fault_ends)
        faults.clear()
        results.wait_for(targets, timeout=180)
        poll(lambda: queue_depth(moto, dep.queue_url) == 0, 60, what="the input queue to empty")
        assert d.stop() == 0
    counts = results.refresh()
    # Shown with -s, and with a failure: what the fault refused, and what the daemon did about it.
    print(f"{prefix}: {jobs} requests; refused {dict(faults.refused)}; relayed {dict(faults.relayed)}; "
          f"results {sum(counts.values())} for {len(counts)} targets; {d.log().count(' WARNING ')} warnings, "
          f"{d.log().count(' ERROR ')} errors logged")
    assert [t for t in targets if counts[t] != 1] == []  # each result exactly once
    outcomes = outcomes_by_target(d)
    assert {t: kinds for t, kinds in outcomes.items() if kinds != ["done"]} == {}  # each job ran once
    assert sorted(outcomes) == sorted(targets)
    assert drain(moto, dep.dlq_url) == []
    return d, faults


def log_lines(d: Daemon, level: str) -> list[str]:
    return [line for line in d.log().splitlines() if f" {level} " in line]


def test_a_throttling_storm_redoes_no_job_and_duplicates_no_result(moto: MotoServer, cfg_path: Path,
                                                                   daemons: list[Daemon]) -> None:
    """About half of publishes, deletes and visibility changes refused for 20 s under load.

    In runs of six calls (``tests.harness.awsfaults``): six fail after all of
    botocore's tries (the daemon's own retry is under test), six pass on a
    later try, as when AWS throttles a busy account.
    """
    ops = {"sns:Publish", "sns:PublishBatch", "sqs:DeleteMessageBatch", "sqs:ChangeMessageVisibilityBatch"}
    d, faults = run_through_a_bus_fault(moto, cfg_path, daemons, "throttle", ops, None, run=6, lasting=20)
    assert faults.refused.keys() & {"sns:Publish", "sns:PublishBatch"}, faults.refused
    assert faults.refused["sqs:DeleteMessageBatch"], faults.refused
    # Readable: throttling is no outage, and is logged once a minute per kind of call at most.
    assert "bus outage" not in d.log()
    throttling = [line for line in log_lines(d, "WARNING") if "bus throttling" in line]
    assert 1 <= len(throttling) <= 8, throttling
    assert log_lines(d, "ERROR") == []
    assert len(log_lines(d, "WARNING")) <= len(throttling) + 1, log_lines(d, "WARNING")  # + workers.user unset


def test_an_sns_outage_of_a_minute_dead_letters_nothing(moto: MotoServer, cfg_path: Path,
                                                        daemons: list[Daemon]) -> None:
    """Publish answers 503 for 60 s while requests keep arriving; maxReceiveCount is 3."""
    d, faults = run_through_a_bus_fault(moto, cfg_path, daemons, "snsdown", {"sns:Publish", "sns:PublishBatch"},
                                        UNAVAILABLE, run=0, lasting=60, jobs=100)
    assert sum(faults.refused.values()) >= 2, faults.refused
    assert outage_lines(d) == (0, 0)  # receiving never failed
    # Readable: one line when publishing stops, one when it works again.
    assert d.log().count("bus outage while sending") == d.log().count("sending recovered after") == 1
    assert len(log_lines(d, "ERROR")) == 1, log_lines(d, "ERROR")


def test_a_delete_outage_redoes_no_job(moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    """DeleteMessageBatch answers 503 for 20 s under load: the deletes wait, and go out once it ends."""
    d, faults = run_through_a_bus_fault(moto, cfg_path, daemons, "deldown", {"sqs:DeleteMessageBatch"},
                                        UNAVAILABLE, run=0, lasting=20)
    assert faults.refused["sqs:DeleteMessageBatch"] >= 2, faults.refused
    assert "delete failed" not in d.log()
    assert d.log().count("bus outage while sending") == d.log().count("sending recovered after") == 1
    assert len(log_lines(d, "ERROR")) == 1, log_lines(d, "ERROR")
