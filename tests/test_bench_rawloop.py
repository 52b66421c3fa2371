"""The multi-threaded raw loop the daemon is compared with: its batching, and that its lanes overlap."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

from bench.rawloop import BATCH_BYTES, Deletes, RawLoop, Slots, take


def test_take_drains_what_is_ready_up_to_ten_without_waiting_when_idle() -> None:
    ready: queue.Queue[int] = queue.Queue()
    for i in range(13):
        ready.put(i)
    t0 = time.monotonic()
    assert take(ready, lambda: False, linger=5.0) == list(range(10))
    assert take(ready, lambda: False, linger=5.0) == [10, 11, 12]
    assert time.monotonic() - t0 < 1.0  # nothing running: no lingering


def test_take_lingers_for_more_while_jobs_run() -> None:
    ready: queue.Queue[int] = queue.Queue()
    ready.put(0)
    threading.Timer(0.05, ready.put, (1,)).start()
    assert take(ready, lambda: True, linger=2.0, most=2) == [0, 1]
    ready.put(2)
    t0 = time.monotonic()
    assert take(ready, lambda: True, linger=0.1) == [2]  # the linger ends it
    assert 0.08 < time.monotonic() - t0 < 1.0


def test_slots_bound_what_the_receivers_hold_and_ask_for_full_batches_while_any_are_held() -> None:
    slots = Slots(14)
    assert slots.acquire(10) == 10
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(slots.acquire(10)))
    t.start()
    time.sleep(0.05)
    assert not got  # 4 free while 10 are held: the receiver waits for a full batch
    slots.release(3)
    time.sleep(0.05)
    assert not got
    slots.release(3)
    t.join(5)
    assert got == [10]
    slots.release(14)
    assert slots.acquire(20) == 14  # nothing held: whatever room there is


class FakeBus:
    """SQS and SNS in memory; records every call and how many were in flight at once."""

    def __init__(self, n: int, size: int = 10) -> None:
        self.waiting = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": json.dumps(
            {"plugin": "noop", "target": f"n:{size}:{i}"})} for i in range(n)]
        self.published: list[str] = []
        self.deleted: list[str] = []
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def _enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _leave(self) -> None:
        time.sleep(0.02)  # a round trip
        with self.lock:
            self.in_flight -= 1

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:
        self._enter()
        with self.lock:
            got, self.waiting = self.waiting[:MaxNumberOfMessages], self.waiting[MaxNumberOfMessages:]
        self._leave()
        return {"Messages": got}

    def publish(self, TopicArn: str, Message: str) -> dict[str, Any]:
        self._enter()
        with self.lock:
            self.published.append(Message)
            self.calls.append(("publish", len(Message)))
        self._leave()
        return {}

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, str]]) -> dict[str, Any]:
        self._enter()
        assert len(PublishBatchRequestEntries) <= 10
        assert sum(len(e["Message"].encode()) for e in PublishBatchRequestEntries) <= BATCH_BYTES
        with self.lock:
            self.published += [e["Message"] for e in PublishBatchRequestEntries]
            self.calls.append(("publish_batch", len(PublishBatchRequestEntries)))
        self._leave()
        return {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self._enter()
        assert len(Entries) <= 10
        with self.lock:
            self.deleted += [e["ReceiptHandle"] for e in Entries]
        self._leave()
        return {}


def _run(bus: FakeBus, n: int, **kw: Any) -> None:
    RawLoop(bus, bus, bus, "q", "t", wait=0, **kw).start()
    deadline = time.monotonic() + 20
    while len(bus.deleted) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_every_message_is_published_once_then_deleted_once() -> None:
    bus = FakeBus(95)
    _run(bus, 95)
    assert sorted(bus.deleted) == sorted(f"r{i}" for i in range(95))
    ids = sorted(json.loads(d)["message_id"] for d in bus.published)
    assert ids == sorted(f"m{i}" for i in range(95))
    assert bus.most_in_flight >= 3  # receives, publishes and deletes overlap


def test_large_results_keep_within_the_publish_batch_limit() -> None:
    bus = FakeBus(12, size=100 * 1024)
    _run(bus, 12, workers=4, senders=1)
    assert len(bus.published) == 12 and sorted(bus.deleted) == sorted(f"r{i}" for i in range(12))
    assert all(kind == "publish" or n <= 2 for kind, n in bus.calls)


def test_jobs_that_wait_run_side_by_side_on_the_worker_threads() -> None:
    together = threading.Barrier(8, timeout=10)  # breaks unless eight jobs wait at once

    def fetch(target: str) -> dict[str, str]:
        together.wait()
        return {"target": target}

    bus = FakeBus(16)
    RawLoop(bus, bus, bus, "q", "t", workers=8, wait=0, fetch=fetch).start()
    deadline = time.monotonic() + 20
    while len(bus.deleted) < 16 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(bus.deleted) == 16


def test_deletes_go_in_tens_or_once_the_oldest_has_waited() -> None:
    now = [0.0]
    deletes = Deletes(linger=1.0, clock=lambda: now[0])
    deletes.add(["a", "b"])
    assert deletes.due() == []  # two, just now: they wait for more
    now[0] = 0.5
    deletes.add([str(i) for i in range(9)])
    assert deletes.due() == ["a", "b", *map(str, range(8))]
    assert deletes.due() == []  # one left, half a second old
    now[0] = 1.6
    assert deletes.due() == ["8"] and deletes.due() == []


def test_take_gives_nothing_when_no_result_comes() -> None:
    assert take(queue.Queue(), lambda: True, linger=1.0, first=0.01) == []
