"""The sender: the outbox's calls carried out by real sender lanes, completions handed back to the loop.

A memory bus and real threads; only the clock is the test's, so that a
lingering delete falls due when the loop would wake for it, not a second later.
"""

from __future__ import annotations

import threading

from sesshu.bus.lanes import BusHealth
from sesshu.bus.memory import MemoryBus
from sesshu.bus.sender import Sender
from sesshu.bus.sending import Completion, Deleted
from sesshu.jobs.ticket import Ticket
from tests.harness.aws import poll
from tests.harness.clock import FakeClock


def test_a_result_is_published_then_its_message_deleted() -> None:
    bus = MemoryBus()
    bus.send('{"target":"t"}')
    (message,) = bus.receive(1, 0)
    t = Ticket(message)
    clock = FakeClock()
    woken = threading.Event()
    sender: Sender[Ticket] = Sender(bus, None, 2, BusHealth(clock), woken.set, clock)
    done: list[Completion[Ticket]] = []

    def turn() -> bool:
        """One turn of the supervisor's loop, as far as sending goes."""
        woken.clear()
        done.extend(sender.take())
        sender.send(more_coming=False)
        if not done and not sender.busy and (wake := sender.wake_at()) is not None:
            assert wake > clock.now  # a wake-up already past would spin the loop
            clock.now = wake  # the loop sleeps until then
        return bool(done) and not sender.busy and len(sender) == 0

    try:
        sender.publish(t, '{"result":1}')
        assert sender.waiting() == [t]
        poll(turn, timeout=30.0, interval=0.01, what="the result's delete")
    finally:
        sender.stop()
        assert sender.join(10.0)
    (deleted,) = done
    assert isinstance(deleted, Deleted)
    assert (deleted.ticket, deleted.outcome, deleted.error) == (t, "done", None)
    assert bus.published == ['{"result":1}'] and bus.depth() == 0  # published, and the message gone
    assert bus.requests["publish"] == 1 and bus.requests["delete_message_batch"] == 1
    assert sender.waiting() == []
