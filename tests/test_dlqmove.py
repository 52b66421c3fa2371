"""``sesshu.ops.dlqmove`` with a fake SQS client: the failures a local server cannot be made to show.

A fake delete that fails, a send the target refuses, and a move task that
runs, completes or fails. The real-server behaviour is in ``tests/test_dlq.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from sesshu.bus.api import BusError
from sesshu.ops.dlqmove import DlqError, TaskRefused, move_by_hand, move_by_task, wait_for_task


class FakeSqs:
    """One source queue and one target. Every undeleted message comes back on every receive,
    as if its visibility timeout had run out at once: the harshest redelivery there is."""

    def __init__(self, bodies: list[str]) -> None:
        self.source = {f"m{i}": body for i, body in enumerate(bodies)}
        self.target: list[str] = []
        self.fail_deletes: Counter[str] = Counter()  # MessageId -> deletes still to fail
        self.refuse = ""  # a body the target refuses
        self.released: list[str] = []
        self.asked: list[int] = []  # MaxNumberOfMessages of each receive
        self.tasks: list[dict[str, Any]] = []  # what list_message_move_tasks answers, turn by turn
        self.start_error: BusError | None = None
        self.list_error: BusError | None = None
        self.turn = 0

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": f"arn:aws:sqs:r:1:{QueueUrl}"}}

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **kwargs: Any) -> dict[str, Any]:
        self.asked.append(MaxNumberOfMessages)
        self.turn += 1
        ids = list(self.source)[:MaxNumberOfMessages]
        return {"Messages": [{"MessageId": i, "ReceiptHandle": f"{i}#{self.turn}", "Body": self.source[i]}
                             for i in ids]}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        failed = []
        for entry in Entries:
            if entry["MessageBody"] == self.refuse:
                failed.append({"Id": entry["Id"], "Code": "InvalidMessageContents", "Message": "no"})
            else:
                self.target.append(entry["MessageBody"])
        return {"Failed": failed}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        failed = []
        for entry in Entries:
            message_id = entry["ReceiptHandle"].split("#")[0]
            if self.fail_deletes[message_id] > 0:
                self.fail_deletes[message_id] -= 1
                failed.append({"Id": entry["Id"], "Code": "InternalError", "Message": "try again"})
            else:
                del self.source[message_id]
        return {"Failed": failed}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.released.extend(e["ReceiptHandle"].split("#")[0] for e in Entries)
        return {}

    def start_message_move_task(self, SourceArn: str, DestinationArn: str) -> dict[str, Any]:
        if self.start_error is not None:
            raise self.start_error
        return {"TaskHandle": "handle-1"}

    def list_message_move_tasks(self, SourceArn: str, MaxResults: int) -> dict[str, Any]:
        if self.list_error is not None:
            raise self.list_error
        return {"Results": [self.tasks.pop(0) if len(self.tasks) > 1 else self.tasks[0]]}


BODIES = [f'{{"plugin": "chaos", "target": "t{i}"}}' for i in range(25)]


def test_every_message_is_sent_once_and_deleted() -> None:
    sqs = FakeSqs(BODIES)
    assert move_by_hand(sqs, "dlq", "queue").moved == 25
    assert sorted(sqs.target) == sorted(BODIES) and sqs.source == {}


def test_a_copy_whose_delete_failed_is_deleted_later_never_sent_again() -> None:
    sqs = FakeSqs(BODIES)
    sqs.fail_deletes["m3"] = 2  # the delete and its immediate retry both fail
    outcome = move_by_hand(sqs, "dlq", "queue")
    assert (outcome.moved, outcome.error) == (25, "")
    assert Counter(sqs.target) == Counter(BODIES)  # m3 came back, and was only deleted
    assert sqs.source == {}


def test_a_delete_that_never_succeeds_ends_the_move_and_is_reported() -> None:
    sqs = FakeSqs(BODIES)
    sqs.fail_deletes["m3"] = 10**6
    outcome = move_by_hand(sqs, "dlq", "queue")
    assert outcome.moved == 25
    assert Counter(sqs.target) == Counter(BODIES)
    assert list(sqs.source) == ["m3"]
    assert "1 message(s) were moved but are still in dlq" in outcome.error


def test_a_refused_send_stops_the_move_and_leaves_that_message() -> None:
    sqs = FakeSqs(BODIES)
    sqs.refuse = BODIES[12]
    outcome = move_by_hand(sqs, "dlq", "queue")
    # The first batch went; in the second, m12 was refused, given back, and the move stopped.
    assert outcome.moved == 19
    assert "1 message(s) not sent, left in dlq: InvalidMessageContents" in outcome.error
    assert BODIES[12] not in sqs.target and "m12" in sqs.source and sqs.released == ["m12"]
    assert len(sqs.target) == len(set(sqs.target)) == 19


def test_limit_is_honoured_and_never_overreached() -> None:
    sqs = FakeSqs(BODIES)
    assert move_by_hand(sqs, "dlq", "queue", limit=12).moved == 12
    assert sqs.asked == [10, 2]  # never receives more than it may move
    assert sorted(sqs.target) == sorted(BODIES[:12]) and len(sqs.source) == 13


def test_a_stop_request_ends_the_move_between_batches() -> None:
    sqs = FakeSqs(BODIES)
    outcome = move_by_hand(sqs, "dlq", "queue", stopped=lambda: len(sqs.target) >= 10)
    assert outcome.moved == 10 and len(sqs.source) == 15


def task(status: str, moved: int, handle: str | None = None, **more: Any) -> dict[str, Any]:
    entry = {"Status": status, "ApproximateNumberOfMessagesMoved": moved, "StartedTimestamp": 1, **more}
    if handle:
        entry["TaskHandle"] = handle
    return entry


def test_a_move_task_is_waited_for_and_its_count_reported() -> None:
    sqs = FakeSqs([])
    sqs.tasks = [task("RUNNING", 3, "handle-1"), task("RUNNING", 9, "handle-1"), task("COMPLETED", 25)]
    naps: list[float] = []
    assert move_by_task(sqs, "dlq", "queue", sleep=naps.append) == 25
    assert len(naps) == 2


def test_a_failed_move_task_is_one_error() -> None:
    sqs = FakeSqs([])
    sqs.tasks = [task("FAILED", 4, FailureReason="AccessDenied on the destination")]
    with pytest.raises(DlqError, match=r"failed after moving 4 message.*AccessDenied on the destination"):
        wait_for_task(sqs, "arn", "handle-1", sleep=lambda s: None)


def test_a_refused_move_task_falls_back() -> None:
    sqs = FakeSqs([])
    sqs.start_error = BusError("start_message_move_task: refused", "InvalidParameterValue", 400)
    sqs.list_error = BusError("list_message_move_tasks: none", "500", 500)
    with pytest.raises(TaskRefused, match="InvalidParameterValue"):
        move_by_task(sqs, "dlq", "queue")


def test_no_fallback_beside_a_running_task() -> None:
    sqs = FakeSqs([])
    sqs.start_error = BusError("start_message_move_task: busy", "InvalidParameterValue", 400)
    sqs.tasks = [task("RUNNING", 1, "other")]
    with pytest.raises(DlqError, match="already running"):
        move_by_task(sqs, "dlq", "queue")


def test_no_fallback_when_the_start_got_no_answer() -> None:
    # The task may have started: moving by hand beside it could move a message twice.
    sqs = FakeSqs([])
    sqs.start_error = BusError("start_message_move_task: read timeout", "ReadTimeoutError", None)
    with pytest.raises(DlqError, match="got no answer"):
        move_by_task(sqs, "dlq", "queue")
