"""The outbox: what waits for the sender, and when a batch is due (a fake clock, in milliseconds)."""

from __future__ import annotations

import json

from sesshu.bus import Message
from sesshu.membus import MemoryBus
from sesshu.outbox import LINGER, Outbox
from sesshu.ticket import Ticket


def ticket(n: int) -> Ticket:
    return Ticket(Message(f"m-{n}", f"r-{n}", "{}", 1))


def test_light_load_sends_at_once() -> None:
    box = Outbox()
    box.publish(ticket(1), "{}")
    box.note_waiting(100.0)
    assert box.due(100.0, more_coming=False)


def test_a_partial_batch_lingers_while_more_results_are_coming() -> None:
    box = Outbox()
    box.publish(ticket(1), "{}")
    box.note_waiting(100.0)
    assert not box.due(100.0, more_coming=True)
    assert box.linger_until() == 100.0 + LINGER
    assert not box.due(100.0 + LINGER * 0.9, more_coming=True)
    assert box.due(100.0 + LINGER, more_coming=True)
    assert box.linger_until() is None  # the clock starts afresh with the next result


def test_a_full_batch_never_lingers() -> None:
    box = Outbox()
    for n in range(10):
        box.publish(ticket(n), "{}")
    box.note_waiting(5.0)
    assert box.due(5.0, more_coming=True)


def test_visibility_changes_never_linger() -> None:
    box = Outbox()
    box.publish(ticket(1), "{}")
    box.release(ticket(2), 0)
    box.note_waiting(5.0)
    assert box.due(5.0, more_coming=True)


def test_backlog_is_two_batches() -> None:
    box = Outbox()
    for n in range(19):
        box.publish(ticket(n), "{}")
    assert not box.backlogged()
    box.delete(ticket(99))
    assert box.backlogged()


def test_queuing_an_outcome_drops_the_pending_extension() -> None:
    """An extension must never reach SQS after (or beside) the release or delete of its message."""
    bus = MemoryBus()
    for queue_outcome in ("release", "delete", "publish", "upload"):
        outbox = Outbox()
        bus.send(json.dumps({"plugin": "chaos", "target": f"chaos:echo:{queue_outcome}"}))
        ticket = Ticket(bus.receive(1, 0)[0])
        outbox.extend(ticket, 30)
        if queue_outcome == "release":
            outbox.release(ticket, 0)
        elif queue_outcome == "delete":
            outbox.delete(ticket)
        elif queue_outcome == "publish":
            outbox.publish(ticket, "{}")
        else:
            outbox.upload(ticket, "{}", "key", "{}")
        assert not outbox.extending(ticket), queue_outcome
