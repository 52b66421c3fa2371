"""Queues, topics and a producer that keeps the input queue topped up.

Stock moto pays O(queue depth) for every SQS request, and even a patched one
still scans the queue, so the benchmarks never pre-fill a queue with the
whole run: :class:`Feeder` keeps about ``visible`` messages waiting and
counts what it sent. Messages completed so far are what it sent minus what
is still in the queue (visible or in flight), read in one
``GetQueueAttributes`` call: the same measure for sesshud and for the raw
boto3 loop it is compared with.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from bench.common import REGION

Body = Callable[[int], str]

VISIBLE = 50
# Top-up batches sent side by side: one at a time, the feeder fell behind a
# daemon at full speed (the queue read empty at most of its turns), and what
# was measured was the feeder.
SENDERS = 4


def client(service: str, endpoint: str, pool: int = 10) -> Any:
    config = BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=pool,
                        read_timeout=60)
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name=REGION).client(service, endpoint_url=endpoint, config=config)


def make_queue(endpoint: str, name: str, visibility: int = 60) -> str:
    sqs = client("sqs", endpoint)
    return str(sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"])


def make_topic(endpoint: str, name: str, results_queue: str | None = None) -> str:
    """A topic; with ``results_queue``, subscribed to it with raw delivery."""
    sns = client("sns", endpoint)
    arn = str(sns.create_topic(Name=name)["TopicArn"])
    if results_queue is not None:
        sqs = client("sqs", endpoint)
        qarn = sqs.get_queue_attributes(QueueUrl=results_queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn["Attributes"]["QueueArn"],
                      Attributes={"RawMessageDelivery": "true"})
    return arn


def request(plugin: str, target: str) -> str:
    return json.dumps({"plugin": plugin, "target": target})


def depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


class Feeder:
    """A thread keeping ``visible`` messages waiting in a queue, up to ``total`` sent."""

    def __init__(self, endpoint: str, queue_url: str, body: Body, *, visible: int = VISIBLE,
                 total: int | None = None, interval: float = 0.02, senders: int = SENDERS) -> None:
        self.queue_url = queue_url
        self.body = body
        self.visible = visible
        self.total = total
        self.interval = interval
        self.sent = 0
        self.error: BaseException | None = None
        self._sqs = client("sqs", endpoint, pool=max(10, senders + 2))
        self._senders = ThreadPoolExecutor(senders, thread_name_prefix="bench-feeder-send")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)
        self._senders.shutdown(wait=True)

    def completed(self) -> tuple[float, int]:
        """(monotonic time, messages sent and no longer in the queue)."""
        with self._lock:
            visible, in_flight = depth(self._sqs, self.queue_url)
            return time.monotonic(), self.sent - visible - in_flight

    def rate(self, warmup: float, window: float) -> tuple[float, int]:
        """Completed messages a second over ``window`` seconds, after ``warmup``."""
        time.sleep(warmup)
        t0, c0 = self.completed()
        time.sleep(window)
        t1, c1 = self.completed()
        self.raise_error()
        return (c1 - c0) / (t1 - t0), c1 - c0

    def wait_all_done(self, timeout: float) -> None:
        assert self.total is not None
        deadline = time.monotonic() + timeout
        while True:
            self.raise_error()
            _, done = self.completed()
            if self.sent >= self.total and done >= self.total:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done} of {self.total} messages completed in {timeout:g} s")
            time.sleep(0.05)

    def raise_error(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"feeder failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    visible, _ = depth(self._sqs, self.queue_url)
                    self._top_up(visible)
                self._stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - reported by raise_error()
            self.error = exc

    def _top_up(self, visible: int) -> None:
        """Send what is missing, in batches of ten side by side."""
        need = min(self.visible - visible, (self.total - self.sent) if self.total is not None else self.visible)
        batches = [(self.sent + start, min(10, need - start)) for start in range(0, max(0, need), 10)]
        for _ in self._senders.map(self._send, batches):
            pass
        self.sent += max(0, need)

    def _send(self, batch: tuple[int, int]) -> None:
        first, n = batch
        entries = [{"Id": str(i), "MessageBody": self.body(first + i)} for i in range(n)]
        reply = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        if reply.get("Failed"):
            raise RuntimeError(f"send_message_batch failed: {reply['Failed']}")
