"""The message bus the supervisor talks to: what it needs, as a protocol.

``sesshu.sqsbus`` implements it over SQS and SNS with boto3; tests and the
pool benchmark use the in-memory ``sesshu.membus``. Batch calls take at most
:data:`BATCH_MAX` entries and report failures per entry, keyed by entry id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

BATCH_MAX = 10
SNS_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


@dataclass(frozen=True)
class QueueInfo:
    visibility_timeout: int | None  # seconds; None when it could not be read
    max_receive_count: int | None  # from the redrive policy; None without a DLQ


@dataclass(frozen=True)
class Publish:
    entry_id: str
    document: str


@dataclass(frozen=True)
class Delete:
    entry_id: str
    receipt_handle: str


@dataclass(frozen=True)
class Visibility:
    entry_id: str
    receipt_handle: str
    seconds: int


class BusError(Exception):
    """A bus call failed as a whole (network, throttling, permissions)."""

    def __init__(self, message: str, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the AWS error code, or the exception's name
        self.status = status  # the HTTP status of an answer; None when none came


class Bus(Protocol):
    requests: Counter[str]  # calls made, by operation: for the exit summary and the benchmark

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]: ...

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        """Publish up to BATCH_MAX documents; return ``{entry_id: error}`` for failures."""
        ...

    def delete(self, entries: list[Delete]) -> dict[str, str]: ...

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]: ...

    def queue_info(self) -> QueueInfo: ...

    def put_object(self, bucket: str, key: str, body: str) -> None:
        """Store an oversized result document (S3); raise BusError on failure."""
        ...
