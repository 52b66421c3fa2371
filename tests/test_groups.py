"""FIFO message groups: which held message may start, and which go back behind a released one."""

from __future__ import annotations

from collections import deque

from sesshu.bus.api import Message, QueueInfo
from sesshu.config.model import from_mapping
from sesshu.jobs.groups import busy, release_behind, take_group, take_startable
from sesshu.jobs.settle import Settler
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


def test_the_busy_groups_are_those_of_grouped_tickets_only() -> None:
    assert busy([ticket("a1", "a"), ticket("x", None), ticket("b1", "b"), ticket("a2", "a")]) == {"a", "b"}


def test_a_released_message_sends_its_groups_held_messages_back_behind_it_and_no_others() -> None:
    config = from_mapping({"plugin": ["chaos"], "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    settler = Settler(lambda: config, QueueInfo(visibility_timeout=30, max_receive_count=3), clock=lambda: 0.0)
    held = deque([ticket("a2", "a"), ticket("b1", "b"), ticket("a3", "a"), ticket("x", None)])
    release_behind(ticket("a1", "a"), held, settler)
    assert names(held) == ["b1", "x"]
    assert settler.outcomes.reasons == {"retried:group_order": 2}
    release_behind(ticket("y", None), held, settler)
    assert names(held) == ["b1", "x"] and settler.outcomes.reasons == {"retried:group_order": 2}
