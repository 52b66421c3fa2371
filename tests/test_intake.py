"""The intake: when a receive is worth its request, and when a second one may run beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sesshu.bus import Message
from sesshu.busio import BusHealth, Received
from sesshu.intake import Intake


class HeldBus:
    """Each receive waits until the test lets it return ``n`` messages (or as many as asked)."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.go = threading.Semaphore(0)
        self.count = 0

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        self.asked.append(max_messages)
        self.go.acquire(timeout=10)
        out = []
        for _ in range(max_messages):
            self.count += 1
            out.append(Message(f"m{self.count}", f"r{self.count}", "{}", 1))
        return out


@pytest.fixture
def make() -> Iterator[Callable[[int], tuple[HeldBus, Intake]]]:
    """An intake of so many receivers over a held bus; every receive is let go and joined at the end."""
    made: list[tuple[HeldBus, Intake]] = []

    def factory(receivers: int) -> tuple[HeldBus, Intake]:
        bus = HeldBus()
        made.append((bus, Intake(bus, receivers, 1, BusHealth(), lambda: None, time.monotonic)))
        return made[-1]

    yield factory
    for bus, i in made:
        for _ in i.lanes.lanes:
            bus.go.release()
        i.stop()
        assert i.join(5.0)


def take_all(i: Intake, n: int) -> list[Received]:
    got: list[Received] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        got += i.take()
        time.sleep(0.01)
    return got


def test_one_receive_at_a_time_until_the_queue_proves_deep(make: Callable[[int], tuple[HeldBus, Intake]]) -> None:
    bus, i = make(3)
    i.poll(room=40, held=0, full=40)
    assert bus.asked == [] or bus.asked == [10]  # one receive, whether or not its thread has begun
    deadline = time.monotonic() + 10
    while not bus.asked and time.monotonic() < deadline:
        time.sleep(0.01)
    i.poll(room=40, held=0, full=40)
    assert bus.asked == [10] and i.lanes.busy_count() == 1  # not deep yet: no second receive
    bus.go.release()
    (got,) = take_all(i, 1)
    assert len(got.messages) == 10 and i.deep  # a full batch: the queue holds more
    i.poll(room=40, held=0, full=40)
    assert i.lanes.busy_count() == 3  # three receives of ten, side by side, for 40 free places
    i.poll(room=25, held=0, full=40)
    assert i.lanes.busy_count() == 3


def test_a_second_receive_needs_room_for_a_full_batch(make: Callable[[int], tuple[HeldBus, Intake]]) -> None:
    _, i = make(2)
    i.deep = True
    i.poll(room=14, held=0, full=14)
    assert i.lanes.busy_count() == 1  # 14 - 10 asked leaves 4: not worth a request of its own


def test_held_messages_wait_for_a_full_batch(make: Callable[[int], tuple[HeldBus, Intake]]) -> None:
    _, i = make(1)
    i.poll(room=4, held=10, full=14)
    assert i.lanes.busy_count() == 0  # the workers have enough; a receive of 4 would waste a request
    i.poll(room=14, held=0, full=14)
    assert i.lanes.busy_count() == 1
