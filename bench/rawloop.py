"""The baseline worker: a plain batched boto3 worker, no isolation, no bookkeeping.

``python -m bench.rawloop --endpoint URL --queue URL --topic ARN
[--receivers N --senders M --workers K]`` is the "raw" side of the
throughput, large-result, latency and I/O comparisons. It has sesshud's
shape without its isolation: ``N`` receiver threads long-poll for up to ten
messages each, holding at most ``K`` + ``--prefetch`` + ``--lead`` messages
between them (a full batch at a time while any are held);
``K`` worker threads run the bench plugin (``bench.plugins.noop``) in this
process, so jobs that wait (an ``io:MS`` target) wait side by side; ``M``
sender threads take, in turn, what results are ready (up to ten, waiting up
to ``--linger`` for more while jobs still run, as sesshud's outbox does),
publish them (``PublishBatch``, or ``Publish`` for one) and delete their
messages ten at a time (a partial batch of deletes waits up to a second for
more, across sender turns, as sesshud's do). So receives, publishes and deletes are in flight at
once, as sesshud's are (it defaults to 2 receiver lanes and 4 sender lanes).

Its SNS client encodes request bodies with sesshud's own encoder
(``sesshu.bus.formbody``), so both sides pay the same for a publish. Like real
SNS, it never puts more than 256 KiB into one ``PublishBatch``: large
results go in smaller batches, or one ``Publish`` each. SIGTERM ends it at once.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from bench.feeder import client
from bench.plugins import noop

BATCH_BYTES = 256 * 1024  # SNS: the total of one PublishBatch's messages
BATCH_MAX = 10
LINGER = 0.05  # as sesshud's outbox: a partial batch of results may wait this long for more while jobs run
DELETE_LINGER = 1.0  # as sesshud's outbox: a partial batch of deletes may wait this long, across sender turns


def batches(docs: list[str], limit: int = BATCH_BYTES) -> Iterator[list[str]]:
    """``docs`` in order, in groups of at most 10 whose sizes add up to at most ``limit``."""
    group: list[str] = []
    size = 0
    for doc in docs:
        n = len(doc.encode())
        if group and (len(group) == BATCH_MAX or size + n > limit):
            yield group
            group, size = [], 0
        group.append(doc)
        size += n
    if group:
        yield group


def take(ready: queue.Queue[Any], busy: Callable[[], bool], linger: float, most: int = BATCH_MAX,
         first: float | None = None) -> list[Any]:
    """What a sender sends next: one item (waiting up to ``first`` for it, or for ever), then up to ``most``.

    Items already waiting are taken at once; for more it waits up to
    ``linger`` (from the first), and only while ``busy()`` says jobs still run.
    """
    try:
        got = [ready.get(timeout=first)]
    except queue.Empty:
        return []
    deadline = time.monotonic() + linger
    while len(got) < most:
        try:
            got.append(ready.get_nowait())
            continue
        except queue.Empty:
            pass
        left = deadline - time.monotonic()
        if left <= 0 or not busy():
            break
        try:
            got.append(ready.get(timeout=min(left, 0.005)))
        except queue.Empty:
            continue
    return got


class Slots:
    """How many more messages the receivers may hold: ``K`` running, prefetch waiting, and a lead.

    A message is held from its receive until its result is published, so
    results waiting for a sender hold back receives too.

    Like sesshud's intake, a receive asks for a full batch while messages
    are held (each receive is a request), and for what room there is only
    once every held message is done.
    """

    def __init__(self, n: int) -> None:
        self.size = self.free = n
        self._cond = threading.Condition()

    def acquire(self, most: int) -> int:
        """Wait for ``most`` free slots, or for any once nothing is held; take up to ``most``."""
        with self._cond:
            while self.free <= 0 or (self.free < most and self.free < self.size):
                self._cond.wait()
            n = min(most, self.free)
            self.free -= n
            return n

    def release(self, n: int) -> None:
        if n:
            with self._cond:
                self.free += n
                self._cond.notify_all()


class Deletes:
    """Receipt handles of published results, sent ten at a time or once the oldest has waited ``linger``."""

    def __init__(self, linger: float = DELETE_LINGER, clock: Callable[[], float] = time.monotonic) -> None:
        self.linger, self.clock = linger, clock
        self._pending: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def add(self, handles: list[str]) -> None:
        now = self.clock()
        with self._lock:
            self._pending += [(now, h) for h in handles]

    def due(self) -> list[str]:
        """The next batch to delete (up to ten), or nothing if it may wait for more."""
        with self._lock:
            if len(self._pending) < BATCH_MAX and (
                    not self._pending or self.clock() - self._pending[0][0] < self.linger):
                return []
            batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
        return [h for _, h in batch]


class RawLoop:
    """The threads of the raw worker; the clients are boto3's (or fakes, in the tests)."""

    def __init__(self, receiver: Any, sqs: Any, sns: Any, queue_url: str, topic: str, *, receivers: int = 2,
                 senders: int = 4, workers: int = 4, prefetch: int = 10, lead: int | None = None, wait: int = 1,
                 linger: float = LINGER, fetch: Callable[[str], Any] = noop.fetch) -> None:
        self.receiver, self.sqs, self.sns = receiver, sqs, sns
        self.queue_url, self.topic = queue_url, topic
        self.counts = (receivers, senders, workers)
        self.wait, self.linger, self.fetch = wait, linger, fetch
        # sesshud asks ahead for what its workers will start while a receive is on its way, up to a batch per lane.
        self.slots = Slots(workers + prefetch + (BATCH_MAX * receivers if lead is None else lead))
        self._gather = threading.Lock()  # one outbox: senders fill batches in turn, not a share of each
        self.deletes = Deletes()
        self.todo: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ready: queue.Queue[tuple[dict[str, Any], str]] = queue.Queue()
        self._running = 0
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self) -> RawLoop:
        receivers, senders, workers = self.counts
        for name, target, n in (("receive", self._receive, receivers), ("work", self._work, workers),
                                ("send", self._send, senders)):
            for i in range(n):
                t = threading.Thread(target=target, name=f"raw-{name}-{i}", daemon=True)
                t.start()
                self.threads.append(t)
        return self

    def _busy(self) -> bool:
        with self._lock:
            return self._running > 0 or not self.todo.empty()

    def _receive(self) -> None:
        while True:
            n = self.slots.acquire(BATCH_MAX)
            try:
                messages = self.receiver.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=n, WaitTimeSeconds=self.wait,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            except Exception:  # noqa: BLE001 - a failed receive is retried, as any worker would
                messages = []
                time.sleep(0.1)
            self.slots.release(n - len(messages))
            for m in messages:
                self.todo.put(m)

    def _work(self) -> None:
        while True:
            m = self.todo.get()
            with self._lock:
                self._running += 1
            try:
                req = json.loads(m["Body"])
                result = self.fetch(req["target"])
                doc = json.dumps({"target": req["target"], "plugin": req["plugin"], "message_id": m["MessageId"],
                                  "result": result}, separators=(",", ":"))
                self.ready.put((m, doc))
            except Exception:  # noqa: BLE001 - a failed job is left to come back, as any worker would
                self.slots.release(1)
            finally:
                with self._lock:
                    self._running -= 1

    def _send(self) -> None:
        while True:
            with self._gather:
                done = take(self.ready, self._busy, self.linger, first=0.1)
            try:
                if done:
                    try:
                        self.send(done)
                    except Exception:
                        self.slots.release(len(done))
                        raise
                while handles := self.deletes.due():
                    self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                        {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)])
            except Exception:  # noqa: BLE001 - the messages come back after their visibility timeout
                time.sleep(0.1)

    def send(self, done: list[tuple[dict[str, Any], str]]) -> None:
        """Publish the results of ``done`` within SNS's limits; their messages join the deletes."""
        for group in batches([doc for _, doc in done]):
            if len(group) == 1:
                self.sns.publish(TopicArn=self.topic, Message=group[0])
            else:
                self.sns.publish_batch(TopicArn=self.topic, PublishBatchRequestEntries=[
                    {"Id": str(i), "Message": d} for i, d in enumerate(group)])
        self.deletes.add([m["ReceiptHandle"] for m, _ in done])
        self.slots.release(len(done))  # held until published: results the senders lag behind count too


def _on_term(signum: int, frame: FrameType | None) -> None:
    # Leave at once, even from inside a 20 s long poll: the measurement is over.
    os._exit(0)


def command(endpoint: str, queue_url: str, topic: str, *, receivers: int = 2, senders: int = 4, workers: int = 4,
            wait: int = 1) -> list[str]:
    """The arguments (after ``python``) that run the raw loop so."""
    return ["-m", "bench.rawloop", "--endpoint", endpoint, "--queue", queue_url, "--topic", topic,
            "--receivers", str(receivers), "--senders", str(senders), "--workers", str(workers),
            "--wait", str(wait)]


def describe(receivers: int = 2, senders: int = 4, workers: int = 4) -> str:
    return f"raw loop ({receivers} receivers, {senders} senders, {workers} worker threads)"


def main() -> None:
    p = argparse.ArgumentParser(description="raw batched boto3 worker, threaded like sesshud's lanes")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--receivers", type=int, default=2, help="threads long-polling at once (sesshud: 2 lanes)")
    p.add_argument("--senders", type=int, default=4, help="threads publishing and deleting (sesshud: 4 lanes)")
    p.add_argument("--workers", type=int, default=4, help="threads running jobs (sesshud's worker count)")
    p.add_argument("--prefetch", type=int, default=10, help="messages held beyond the running ones")
    p.add_argument("--lead", type=int, default=None,
                   help="messages asked for ahead (default: a batch of 10 per receiver, sesshud's most)")
    p.add_argument("--wait", type=int, default=1, help="long-poll seconds")
    p.add_argument("--linger", type=float, default=LINGER, help="seconds a partial batch waits for more")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    from sesshu.bus import formbody  # sesshud's own SNS body encoding

    receiver = client("sqs", args.endpoint, pool=max(10, args.receivers + 1))
    sqs = client("sqs", args.endpoint, pool=max(10, args.senders + 1))
    sns = formbody.install(client("sns", args.endpoint, pool=max(10, args.senders + 1)))
    RawLoop(receiver, sqs, sns, args.queue, args.topic, receivers=args.receivers, senders=args.senders,
            workers=args.workers, prefetch=args.prefetch, lead=args.lead, wait=args.wait, linger=args.linger).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
