"""The intake: when a receive is worth its request, and when a second one may run beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sesshu.bus.api import Message
from sesshu.bus.intake import Intake
from sesshu.bus.lanes import BusHealth, Received
from tests.harness.clock import FakeClock


class HeldBus:
    """Each receive waits until the test lets it return ``n`` messages (or as many as asked)."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.go = threading.Semaphore(0)
        self.count = 0
        self.limit = 10  # messages the queue can give one receive

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        self.asked.append(max_messages)
        self.go.acquire(timeout=10)
        out = []
        for _ in range(min(max_messages, self.limit)):
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


def timed_intake(bus: HeldBus, clock: FakeClock, receivers: int = 2) -> Intake:
    """An intake whose last receive, sent to a queue known deep, came back full after 40 ms, as on AWS."""
    i = Intake(bus, receivers, 1, BusHealth(), lambda: None, clock)
    for asked in ([10], [10, 10]):
        i.poll(room=14, held=0, full=14)
        assert bus_asked_soon(bus, asked)  # sent (the clock is read as it goes), not only submitted
        clock.now += 0.040
        bus.go.release()
        (got,) = take_all(i, 1)
        assert len(got.messages) == 10 and i.deep
    return i


def run_flow(i: Intake, clock: FakeClock, per_second: int, seconds: float = 4.0) -> None:
    """Workers start ``per_second`` messages a second, one at a time."""
    for _ in range(int(per_second * seconds)):
        clock.now += 1 / per_second
        i.started(1)


@pytest.mark.parametrize("per_second, lead", [(300, 11), (1000, 20), (4, 0)])
def test_the_lead_is_what_workers_start_during_one_round_trip(per_second: int, lead: int) -> None:
    bus, clock = HeldBus(), FakeClock()
    i = timed_intake(bus, clock)
    try:
        run_flow(i, clock, per_second)
        # Little's law: the flow times 40 ms (1000/s would be 39, capped at what two pollers carry).
        assert i.lead() == lead
        clock.now += 5.0  # the workers stopped starting anything: the lead fades
        assert i.lead() == 0
    finally:
        i.stop()
        assert i.join(5.0)


def test_quick_jobs_keep_a_receive_on_its_way_while_slow_ones_wait() -> None:
    bus, clock = HeldBus(), FakeClock()
    i = timed_intake(bus, clock)
    try:
        run_flow(i, clock, 4)  # slow jobs: the held six keep four workers busy for a second and more
        i.poll(room=4, held=6, full=14)
        assert i.lanes.busy_count() == 0
        run_flow(i, clock, 300)  # quick jobs: the six are gone in 20 ms, long before a receive is back
        i.poll(room=4, held=6, full=14)
        assert i.lanes.busy_count() == 1
        # Four idle workers and nothing held: a second full receive joins the first.
        i.poll(room=14, held=0, full=14)
        assert i.lanes.busy_count() == 2 and bus_asked_soon(bus, [10, 10, 10, 10])
    finally:
        for _ in range(3):
            bus.go.release()
        i.stop()
        assert i.join(5.0)


def bus_asked_soon(bus: HeldBus, asked: list[int]) -> bool:
    deadline = time.monotonic() + 10
    while bus.asked != asked and time.monotonic() < deadline:
        time.sleep(0.01)
    return bus.asked == asked


def test_receives_side_by_side_that_come_back_short_pause_the_second_one() -> None:
    """Two receives that split a shallow queue's messages cost a request each for one batch: wait a while."""
    bus, clock = HeldBus(), FakeClock()
    i = timed_intake(bus, clock)
    try:
        i.poll(room=40, held=0, full=40)
        assert i.lanes.busy_count() == 2 and bus_asked_soon(bus, [10, 10, 10, 10])
        bus.limit = 6  # the queue holds twelve: each receive gets six
        bus.go.release()
        bus.go.release()
        got = take_all(i, 2)
        assert [len(r.messages) for r in got] == [6, 6] and not i.deep
        bus.limit = 10
        i.poll(room=40, held=0, full=40)
        clock.now += 0.040
        bus.go.release()
        take_all(i, 1)
        assert i.deep  # a lone receive came back full again...
        i.poll(room=40, held=0, full=40)
        assert i.lanes.busy_count() == 1  # ...yet for a second the receives go one at a time
        clock.now += 1.0
        i.poll(room=40, held=0, full=40)
        assert i.lanes.busy_count() == 2
        bus.limit = 6  # they split again: now two seconds of one at a time
        bus.go.release()
        bus.go.release()
        assert [len(r.messages) for r in take_all(i, 2)] == [6, 6]
        bus.limit = 10
        i.poll(room=40, held=0, full=40)
        bus.go.release()
        take_all(i, 1)
        clock.now += 1.5
        i.poll(room=40, held=0, full=40)
        assert i.lanes.busy_count() == 1
        clock.now += 0.5
        i.poll(room=40, held=0, full=40)
        assert i.lanes.busy_count() == 2
    finally:
        for _ in range(3):
            bus.go.release()
        i.stop()
        assert i.join(5.0)


def test_a_long_poll_that_waited_then_filled_is_no_round_trip() -> None:
    """Only a receive sent to a queue already deep times the round trip: one that waited would swell the lead."""
    bus, clock = HeldBus(), FakeClock()
    i = Intake(bus, 2, 1, BusHealth(), lambda: None, clock)
    try:
        i.poll(room=14, held=0, full=14)  # the queue is not known deep: this one may wait
        assert bus_asked_soon(bus, [10])
        clock.now += 15.0  # a long poll that waited 15 s, then came back full
        bus.go.release()
        take_all(i, 1)
        run_flow(i, clock, 300)
        assert i.lead() == 0  # no round trip measured yet
        i.poll(room=14, held=0, full=14)  # now the queue is known deep
        assert bus_asked_soon(bus, [10, 10])
        clock.now += 0.040
        bus.go.release()
        take_all(i, 1)
        run_flow(i, clock, 300)
        assert i.lead() == 12  # 300 a second times 40 ms, not times 15 s (capped at 20)
    finally:
        for _ in range(2):
            bus.go.release()
        i.stop()
        assert i.join(5.0)
