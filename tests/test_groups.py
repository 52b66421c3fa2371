"""FIFO message groups: which held message may start."""

from __future__ import annotations

from collections import deque

from sesshu.bus.api import Message
from sesshu.jobs.groups import take_group, take_startable
from sesshu.jobs.ticket import Ticket


def ticket(name: str, group: str | None) -> Ticket:
    return Ticket(Message(name, "r", "{}", 1, group_id=group))


def names(held: deque[Ticket]) -> list[str]:
    return [t.message_id for t in held]


def test_the_first_of_each_free_group_starts_in_order_and_ungrouped_messages_never_wait() -> None:
    held = deque([ticket("a1", "a"), ticket("a2", "a"), ticket("b1", "b"), ticket("x", None)])
    busy: set[str] = set()
    first = take_startable(held, busy)
    assert first is not None and first.message_id == "a1"
    busy.add("a")
    second = take_startable(held, busy)
    assert second is not None and second.message_id == "b1"
    busy.add("b")
    third = take_startable(held, busy)
    assert third is not None and third.message_id == "x"
    assert take_startable(held, busy) is None and names(held) == ["a2"]
    busy.discard("a")
    fourth = take_startable(held, busy)
    assert fourth is not None and fourth.message_id == "a2"


def test_a_busy_group_holds_back_all_of_its_messages() -> None:
    held = deque([ticket("a2", "a"), ticket("a3", "a")])
    assert take_startable(held, {"a"}) is None and names(held) == ["a2", "a3"]


def test_a_group_is_taken_out_whole_in_order() -> None:
    held = deque([ticket("a2", "a"), ticket("b1", "b"), ticket("a3", "a")])
    assert [t.message_id for t in take_group(held, "a")] == ["a2", "a3"] and names(held) == ["b1"]
    assert take_group(held, "c") == [] and names(held) == ["b1"]
