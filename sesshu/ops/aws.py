"""AWS clients for the operator CLI, queues and topics looked up by name, and
the SQS calls and signal handling its commands share.

Separate from ``sesshu.ops.cli`` so that the command line stays about commands;
nothing here imports boto3 at module level, for the same reason as there.
"""

from __future__ import annotations

import argparse
import re
import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from sesshu.bus import formbody
from sesshu.bus.api import BATCH_MAX, BusError

if TYPE_CHECKING:
    from typing import Self

LONG_POLL = 20
EMPTY_RECEIVES = 3  # short polls sample servers: one empty answer proves little
TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}(\.fifo)?$")


class LookupFailed(Exception):
    """A queue or topic given by name that cannot be found: one line for the operator."""


def client(service: str, args: argparse.Namespace, resource: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # SNS wants the client in the topic's own region, so the region written in
    # the ARN beats boto3's default; an explicit --region wins.
    region = args.region or (region_of(resource) if resource and resource.startswith("arn:") else None)
    config = Config(connect_timeout=5, read_timeout=LONG_POLL + 10, retries={"max_attempts": 3, "mode": "standard"})
    made = boto3.session.Session().client(service, region_name=region, endpoint_url=args.endpoint_url,
                                          config=config)
    return formbody.install(made) if service == "sns" else made


def topic_arn(sns: Any, topic: str) -> str:
    """``topic`` itself if it is an ARN; else the ARN of the topic of that name, or a clear refusal."""
    if topic.startswith("arn:"):
        if len(topic.split(":")) != 6:
            raise LookupFailed(f"{topic!r} is not a topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        return topic
    if not TOPIC_NAME_RE.match(topic):
        raise LookupFailed(f"{topic!r} is neither a topic ARN nor a topic name")
    # SNS has no GetTopicByName: the ARN's last part is the name.
    for page in sns.get_paginator("list_topics").paginate():
        for entry in page.get("Topics", []):
            arn = str(entry.get("TopicArn", ""))
            if arn.rsplit(":", 1)[-1] == topic:
                return arn
    raise LookupFailed(f"no topic named {topic!r} in {sns.meta.region_name} (give its ARN, or the right --region)")


def queue_url(sqs: Any, queue: str) -> str:
    """``queue`` itself if it is a URL; else the URL of the queue of that name, or a clear refusal."""
    if queue.startswith(("http://", "https://")):
        return queue
    try:
        return str(sqs.get_queue_url(QueueName=queue)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        where = sqs.meta.region_name
        raise LookupFailed(f"no queue named {queue!r} in {where} (give its URL, or the right --region)") from None


def open_queue(args: argparse.Namespace, queue: str) -> tuple[Any, str]:
    """An SQS client for ``queue`` (a URL, or a name), and the queue's URL."""
    sqs = client("sqs", args, queue)
    return sqs, queue_url(sqs, queue)


def queue_arn(sqs: Any, url: str) -> str:
    from sesshu.bus.sqs import call

    reply = call(sqs, "get_queue_attributes", QueueUrl=url, AttributeNames=["QueueArn"])
    return str(reply["Attributes"]["QueueArn"])


def region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


def delete(sqs: Any, url: str, handles: list[str]) -> dict[int, str]:
    """Delete up to ten received messages; ``{index: error}`` of those still there.

    A call that fails as a whole raises its BusError: the caller knows whether
    to stop or to count every message as left behind.
    """
    from sesshu.bus.sqs import batch_failures, call

    entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
    reply = call(sqs, "delete_message_batch", QueueUrl=url, Entries=entries)
    return {int(k): v for k, v in batch_failures(reply).items()}


def release(sqs: Any, url: str, handles: list[str]) -> dict[int, str]:
    """Make received messages visible again now; ``{index: error}`` of those that stay hidden.

    Every batch is tried even after one failed as a whole: each message
    released is one less hidden until its visibility timeout.
    """
    from sesshu.bus.sqs import batch_failures, call

    failed: dict[int, str] = {}
    for start in range(0, len(handles), BATCH_MAX):
        entries = [{"Id": str(start + i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                   for i, h in enumerate(handles[start:start + BATCH_MAX])]
        try:
            reply = call(sqs, "change_message_visibility_batch", QueueUrl=url, Entries=entries)
        except BusError as exc:
            failed.update((start + i, str(exc)) for i in range(len(entries)))
            continue
        failed.update((int(k), v) for k, v in batch_failures(reply).items())
    return failed


class Stop(BaseException):
    """Cuts a long poll short; a BaseException so no ``except Exception`` in botocore swallows it."""


class StopSignals:
    """SIGINT and SIGTERM, recorded for a loop of SQS calls while in a ``with``; the old handlers after.

    A signal only records, so a batch that was printed or sent is always
    deleted before the loop stops. A long poll can block for 20 s, though, so
    while ``interruptible`` is set (around a receive, and only there) it raises
    :class:`Stop`: the messages that receive had fetched simply become visible
    again later.
    """

    def __init__(self) -> None:
        self.requested = False
        self.interruptible = False
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def __enter__(self) -> Self:
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.interruptible:
            raise Stop
