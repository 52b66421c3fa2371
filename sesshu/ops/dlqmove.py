"""Moving messages out of a dead-letter queue, each exactly once.

Two ways, chosen by ``sesshu dlq redrive``:

* :func:`move_by_task`: SQS's StartMessageMoveTask, which moves them on the
  server side; then wait for the task and report its count. Servers without
  it (moto) or refusing it (a source that is no queue's DLQ) answer with an
  error, and the caller falls back to
* :func:`move_by_hand`: receive, send a copy, and delete the original only
  once its copy was sent. A message whose copy was sent but whose delete
  failed comes back later in the same run: it is then deleted, never sent
  again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sesshu.bus.api import BATCH_MAX, BusError
from sesshu.ops.aws import EMPTY_RECEIVES, delete, queue_arn, release

MOVE_HIDE = 60  # s a received message stays hidden: ample for one send and one delete
TASK_POLL = 1.0  # s between looks at a running move task
ATTRIBUTE_KEYS = ("DataType", "StringValue", "BinaryValue")


class DlqError(Exception):
    """An operator-facing refusal or failure: printed as one line, exit status 1."""


class TaskRefused(Exception):
    """The server answered StartMessageMoveTask with an error: no task started; move by hand."""


@dataclass
class Moved:
    moved: int
    error: str = ""  # why the move stopped early, or what was left behind


def move_by_task(sqs: Any, source: str, target: str, *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Move everything with a message move task and return its count; TaskRefused if the server refuses one."""
    from sesshu.bus.sqs import call

    source_arn, target_arn = queue_arn(sqs, source), queue_arn(sqs, target)
    try:
        handle = str(call(sqs, "start_message_move_task", SourceArn=source_arn,
                          DestinationArn=target_arn)["TaskHandle"])
    except BusError as exc:
        if exc.status is None:
            # No answer at all: the task may have started. Moving by hand now
            # could race it, so stop and let the operator look.
            raise DlqError(f"StartMessageMoveTask got no answer ({exc.code}); see whether a move task "
                           f"runs from {source_arn} before trying again") from exc
        # An answer means no task of ours started. One may run already (a
        # retried request, or another operator): never move beside it.
        if _running(sqs, source_arn):
            raise DlqError(f"a message move task is already running from {source_arn}: wait for it, "
                           "or cancel it") from exc
        raise TaskRefused(exc.code if exc.code != str(exc.status) else f"HTTP {exc.status}") from exc
    return wait_for_task(sqs, source_arn, handle, sleep=sleep)


def _running(sqs: Any, source_arn: str) -> bool:
    from sesshu.bus.sqs import call

    try:
        tasks = call(sqs, "list_message_move_tasks", SourceArn=source_arn, MaxResults=10).get("Results", [])
    except BusError:
        return False  # a server without move tasks runs none
    return any(t.get("Status") == "RUNNING" for t in tasks)


def wait_for_task(sqs: Any, source_arn: str, handle: str, *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until the task ends; the number it moved, or a DlqError when it failed or was cancelled."""
    from sesshu.bus.sqs import call

    while True:
        tasks = call(sqs, "list_message_move_tasks", SourceArn=source_arn, MaxResults=10).get("Results", [])
        # Only a running task shows its handle; one source runs one task at a
        # time, so once ours has ended it is the most recently started.
        ours = next((t for t in tasks if t.get("TaskHandle") == handle), None)
        if ours is None and tasks:
            ours = max(tasks, key=lambda t: int(t.get("StartedTimestamp", 0)))
        if ours is None:
            raise DlqError(f"the message move task from {source_arn} is not listed; look at the queues")
        status = str(ours.get("Status", ""))
        moved = int(ours.get("ApproximateNumberOfMessagesMoved", 0))
        if status == "COMPLETED":
            return moved
        if status in ("FAILED", "CANCELLED", "CANCELLING"):
            reason = ours.get("FailureReason") or "no reason given"
            raise DlqError(f"the message move task {status.lower()} after moving {moved} message(s): {reason}")
        sleep(TASK_POLL)


def move_by_hand(sqs: Any, source: str, target: str, *, limit: int | None = None,
                 stopped: Callable[[], bool] = lambda: False) -> Moved:
    """Receive, send, then delete; at most ``limit`` messages, each moved once."""
    from sesshu.bus.sqs import call

    sent: set[str] = set()  # MessageIds whose copy reached the target
    undeleted: dict[str, str] = {}  # sent, but still in the source: MessageId -> why
    empty = 0
    while empty < EMPTY_RECEIVES and not stopped() and (limit is None or len(sent) < limit):
        want = BATCH_MAX if limit is None else min(BATCH_MAX, limit - len(sent))
        reply = call(sqs, "receive_message", QueueUrl=source, MaxNumberOfMessages=want, WaitTimeSeconds=0,
                     VisibilityTimeout=MOVE_HIDE, MessageAttributeNames=["All"])
        messages = reply.get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in sent]
        # Only copies already sent (their delete failed) is no progress either:
        # a delete that keeps failing must not keep the move going for ever.
        empty = 0 if fresh else empty + 1
        if not messages:
            continue
        unsent = _send(sqs, target, fresh)
        ok = [m for i, m in enumerate(fresh) if i not in unsent]
        sent.update(m["MessageId"] for m in ok)
        # Copies already sent in an earlier turn whose delete failed are only deleted now.
        done = ok + [m for m in messages if m["MessageId"] in sent and m not in ok]
        failed = _delete(sqs, source, done)
        if failed:  # once more: a receipt handle stays good for a while, and a copy is already out
            failed = _delete(sqs, source, [m for m in done if m["MessageId"] in failed])
        for m in done:
            if m["MessageId"] in failed:
                undeleted[m["MessageId"]] = failed[m["MessageId"]]
            else:
                undeleted.pop(m["MessageId"], None)
        if unsent:
            # Give them back at once rather than spin on what the target refuses.
            release(sqs, source, [m["ReceiptHandle"] for i, m in enumerate(fresh) if i in unsent])
            return Moved(len(sent), f"{len(unsent)} message(s) not sent, left in {source}: "
                         f"{next(iter(unsent.values()))}" + _left(undeleted, source))
    return Moved(len(sent), _left(undeleted, source).lstrip("; "))


def _left(undeleted: dict[str, str], source: str) -> str:
    if not undeleted:
        return ""
    return (f"; {len(undeleted)} message(s) were moved but are still in {source} (delete failed: "
            f"{next(iter(undeleted.values()))}): delete them there, or a later redrive sends them again")


def _send(sqs: Any, target: str, messages: list[dict[str, Any]]) -> dict[int, str]:
    """Send copies, body exactly and message attributes kept; ``{index: error}`` of those not sent."""
    from sesshu.bus.api import SQS_MAX_BYTES, batches, message_size
    from sesshu.bus.sqs import batch_failures, call

    entries = []
    for i, m in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(i), "MessageBody": m.get("Body", "")}
        attributes = {name: {k: v for k, v in value.items() if k in ATTRIBUTE_KEYS}
                      for name, value in m.get("MessageAttributes", {}).items()}
        if attributes:
            entry["MessageAttributes"] = attributes
        entries.append(entry)
    failed: dict[int, str] = {}
    sizes = [message_size(e["MessageBody"], e.get("MessageAttributes")) for e in entries]
    for part in batches(sizes, SQS_MAX_BYTES):
        chunk = entries[part.start:part.stop]
        try:
            reply = call(sqs, "send_message_batch", QueueUrl=target, Entries=chunk)
        except BusError as exc:
            failed.update((int(e["Id"]), str(exc)) for e in chunk)
            continue
        failed.update((int(k), v) for k, v in batch_failures(reply).items())
    return failed


def _delete(sqs: Any, source: str, messages: list[dict[str, Any]]) -> dict[str, str]:
    """Delete from the source; ``{MessageId: error}`` of those still there."""
    if not messages:
        return {}
    try:
        failed = delete(sqs, source, [m["ReceiptHandle"] for m in messages])
    except BusError as exc:
        return {m["MessageId"]: str(exc) for m in messages}
    return {messages[i]["MessageId"]: error for i, error in failed.items()}
