"""sesshu.bus.memory: the in-memory bus keeps SQS's visibility and redrive rules, which the pool tests rely on."""

from __future__ import annotations

from sesshu.bus.api import Delete, Publish, Visibility
from sesshu.bus.memory import MemoryBus


def test_a_received_message_is_hidden_until_released_and_counts_its_receives() -> None:
    bus = MemoryBus(visibility_timeout=300)
    mid = bus.send("a")
    (first,) = bus.receive(10, 0)
    assert (first.message_id, first.body, first.receive_count) == (mid, "a", 1)
    assert bus.receive(10, 0) == []  # hidden while its visibility lasts
    assert bus.change_visibility([Visibility("0", first.receipt_handle, 0)]) == {}
    (again,) = bus.receive(10, 0)
    assert again.receive_count == 2 and again.receipt_handle != first.receipt_handle


def test_a_stale_receipt_fails_that_entry_alone() -> None:
    bus = MemoryBus(visibility_timeout=0)
    bus.send("a")
    bus.send("b")
    got = bus.receive(10, 0)
    stale = got[0].receipt_handle
    fresh = bus.receive(10, 0)  # received again: the first handles are stale now
    failed = bus.delete([Delete("0", stale), Delete("1", fresh[1].receipt_handle)])
    assert failed == {"0": "ReceiptHandleIsInvalid"} and bus.depth() == 1


def test_the_redrive_policy_moves_a_message_after_max_receives() -> None:
    bus = MemoryBus(visibility_timeout=0, max_receive_count=2)
    bus.send("poison")
    assert len(bus.receive(10, 0)) == 1 and len(bus.receive(10, 0)) == 1
    assert bus.receive(10, 0) == [] and bus.dead == ["poison"] and bus.depth() == 0


def test_publishes_are_kept_with_their_attributes_and_counted() -> None:
    bus = MemoryBus()
    assert bus.publish([Publish("0", "doc", {"plugin": "chaos"})]) == {}
    assert bus.publish([Publish("0", "x"), Publish("1", "y")]) == {}
    assert bus.published == ["doc", "x", "y"] and bus.attributes[0] == {"plugin": "chaos"}
    assert bus.requests["publish"] == 1 and bus.requests["publish_batch"] == 1
