"""The bus lanes' side of sending: one sender turn against a fake bus, in order and per entry."""

from __future__ import annotations

from typing import Any

import pytest

from sesshu.bus import BusError, Delete, Message, Publish, Visibility
from sesshu.busio import Lane, S3Target, send_batch
from sesshu.ticket import Ticket


class FakeBus:
    """Records every call; fails the entries (or whole calls) it is told to."""

    def __init__(self, publish_fails: dict[str, str] | None = None,
                 delete_fails: dict[str, str] | None = None, raise_on: str = "") -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.publish_fails = publish_fails or {}
        self.delete_fails = delete_fails or {}
        self.raise_on = raise_on

    def _call(self, name: str, entries: list[Any], fails: dict[str, str]) -> dict[str, str]:
        self.calls.append((name, list(entries)))
        if self.raise_on == name:
            raise BusError("throttled", "Throttling")
        return dict(fails)

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        return self._call("publish", entries, self.publish_fails)

    def delete(self, entries: list[Delete]) -> dict[str, str]:
        return self._call("delete", entries, self.delete_fails)

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        return self._call("change_visibility", entries, {})

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        raise AssertionError("the sender never receives")

    def queue_info(self) -> Any:
        raise AssertionError("the sender never asks")

    def put_object(self, bucket: str, key: str, body: str) -> None:
        self.calls.append(("put_object", [bucket, key, body]))
        if self.raise_on == "put_object":
            raise BusError("access denied", "AccessDenied")

    def deleted(self) -> list[str]:
        return [e.receipt_handle for name, entries in self.calls if name == "delete" for e in entries]


def tickets(*names: str) -> list[Ticket]:
    return [Ticket(Message(f"id-{n}", f"rh-{n}", "{}", 1)) for n in names]


def test_a_failed_publish_entry_is_not_deleted() -> None:
    bus = FakeBus(publish_fails={"1": "InternalError"})
    a, b, c = tickets("a", "b", "c")
    sent = send_batch(bus, [], [(a, "doc-a"), (b, "doc-b"), (c, "doc-c")], [])
    assert sent.published == [a, c]
    assert sent.publish_failed == [(b, "InternalError")]
    assert bus.deleted() == ["rh-a", "rh-c"]
    assert sent.deleted == [] and sent.delete_failed == [] and sent.error is None
    assert [name for name, _ in bus.calls] == ["publish", "delete"]


def test_releases_then_publishes_then_deletes_in_one_turn() -> None:
    bus = FakeBus()
    r, p, e = tickets("r", "p", "e")
    sent = send_batch(bus, [(r, 0)], [(p, "doc-p")], [e])
    assert [name for name, _ in bus.calls] == ["change_visibility", "publish", "delete"]
    assert bus.calls[0][1] == [Visibility("0", "rh-r", 0)]
    assert bus.calls[1][1] == [Publish("0", "doc-p")]
    assert bus.deleted() == ["rh-p", "rh-e"]
    assert sent.published == [p] and sent.deleted == [e]


def test_delete_failures_are_reported() -> None:
    bus = FakeBus(delete_fails={"0": "ReceiptHandleIsInvalid", "2": "InternalError"})
    p, e1, e2 = tickets("p", "e1", "e2")
    sent = send_batch(bus, [], [(p, "doc")], [e1, e2])
    assert sent.published == [p]  # published even though its delete failed
    assert sent.delete_failed == [(p, "ReceiptHandleIsInvalid"), (e2, "InternalError")]
    assert sent.deleted == [e1]


def test_a_publish_call_failing_as_a_whole_deletes_nothing() -> None:
    bus = FakeBus(raise_on="publish")
    a, b, e = tickets("a", "b", "e")
    sent = send_batch(bus, [], [(a, "doc-a"), (b, "doc-b")], [e])
    assert sent.published == []
    assert sent.publish_failed == [(a, "throttled"), (b, "throttled")]
    assert bus.deleted() == ["rh-e"]  # an empty result's delete does not depend on any publish
    assert sent.error == "throttled"


def test_a_delete_call_failing_as_a_whole_is_reported_per_ticket() -> None:
    bus = FakeBus(raise_on="delete")
    p, e = tickets("p", "e")
    sent = send_batch(bus, [], [(p, "doc")], [e])
    assert sent.published == [p]
    assert sent.delete_failed == [(p, "throttled"), (e, "throttled")]
    assert sent.deleted == [] and sent.error == "throttled"


@pytest.mark.parametrize("fails", [False, True])
def test_an_upload_is_published_as_a_pointer_only_once_stored(fails: bool) -> None:
    bus = FakeBus(raise_on="put_object" if fails else "")
    (big,) = tickets("big")
    sent = send_batch(bus, [], [], [], [(big, "huge-doc", "sesshu/id-big.json", "pointer-doc")],
                      S3Target("bucket", "sesshu/"))
    assert bus.calls[0] == ("put_object", ["bucket", "sesshu/id-big.json", "huge-doc"])
    if fails:
        assert sent.publish_failed == [(big, "S3 upload failed: access denied")]
        assert [name for name, _ in bus.calls] == ["put_object"]  # no publish, no delete
    else:
        assert bus.calls[1] == ("publish", [Publish("0", "pointer-doc")])
        assert sent.published == [big] and bus.deleted() == ["rh-big"]


def test_a_bus_bug_does_not_escape_the_sender() -> None:
    class Broken(FakeBus):
        def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
            raise KeyError("oops")

    (r,) = tickets("r")
    sent = send_batch(Broken(), [(r, 5)], [], [])
    assert sent.visibility_failed == [(r, "unexpected KeyError: 'oops'")]
    assert sent.error == "unexpected KeyError: 'oops'"


def test_a_lane_owns_its_busy_flag() -> None:
    woken: list[int] = []
    lane = Lane("test-lane", lambda: woken.append(1))
    try:
        assert not lane.busy
        lane.submit(lambda: 42)
        assert lane.busy
        import time

        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lane.take() == [42]
        assert not lane.busy  # taking the result frees it; nobody else writes the flag
    finally:
        lane.stop()
