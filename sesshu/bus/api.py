"""The message bus the supervisor talks to: what it needs, as a protocol.

``sesshu.bus.sqs`` implements it over SQS and SNS with boto3; tests and the
pool benchmark use the in-memory ``sesshu.bus.memory``. Batch calls take at most
:data:`BATCH_MAX` entries and report failures per entry, keyed by entry id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing import Self

from sesshu.bus.payloads import SIZE_ATTRIBUTE

BATCH_MAX = 10
FIFO_SUFFIX = ".fifo"  # what the name of every FIFO queue and topic ends with
DEFAULT_GROUP = "sesshu"  # the MessageGroupId of a publish to a FIFO topic for a request that had none
NUMBER_ATTRIBUTES = frozenset({SIZE_ATTRIBUTE})  # every other attribute Sesshu sends is a String
# SNS caps one message, and all the messages of one PublishBatch together, at
# 256 KiB. SQS has allowed 1 MiB since 2025, but 256 KiB is what every
# SQS-compatible server accepts, so Sesshu keeps SendMessageBatch under it too.
SNS_MAX_BYTES = 256 * 1024
SQS_MAX_BYTES = 256 * 1024

# The one classification of AWS error codes, by what they say; every set is
# spelled as error_name() spells a code (no service prefix, no "Exception").
#
# Codes that say "too many requests": the service is up and asks for fewer.
# Transient, but not an outage (``sesshu.bus.lanes.BusHealth``).
THROTTLING_CODES = frozenset({
    "Throttling", "Throttled", "RequestThrottled", "TooManyRequests", "RequestLimitExceeded", "SlowDown",
    "KMSThrottling",
})
# Codes of a server that failed to answer this time: retrying may well pass.
SERVER_CODES = frozenset({"ServiceUnavailable", "InternalError", "InternalFailure", "RequestTimeout"})
DENIED_CODES = frozenset({"AccessDenied", "AuthorizationError"})  # IAM says no: grant the permission
MISSING_QUEUE_CODES = frozenset({"NonExistentQueue", "QueueDoesNotExist"})
MISSING_TOPIC_CODES = frozenset({"NotFound"})
# botocore's own names for "no credentials at all": nothing to retry.
NO_CREDENTIALS_CODES = frozenset({"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"})
# Codes that no retry of the same request can cure: the request, the
# permissions or the resource must change. A client error, not an outage.
PERMANENT_CODES = frozenset({
    "BatchRequestTooLong", "TooManyEntriesInBatchRequest", "BatchEntryIdsNotDistinct", "InvalidBatchEntryId",
    "EmptyBatchRequest", "InvalidParameter", "InvalidParameterValue", "ParameterValueInvalid",
    "ValidationError", "InvalidMessageContents", "NoSuchBucket", "NoSuchKey", "EntityTooLarge",
}) | DENIED_CODES | MISSING_QUEUE_CODES | MISSING_TOPIC_CODES
# The permanent errors a batch earns as a whole although its entries, sent one
# by one, may pass: the batch is too long or too big, or one entry is bad.
SPLIT_CODES = frozenset({
    "BatchRequestTooLong", "TooManyEntriesInBatchRequest", "InvalidParameter", "InvalidParameterValue",
    "ParameterValueInvalid", "ValidationError", "InvalidMessageContents",
})


def message_size(body: str, attributes: Mapping[str, Mapping[str, str | bytes]] | None = None) -> int:
    """The bytes SNS and SQS count against their size limits for one message.

    The body in UTF-8, plus every message attribute's name, data type and
    value. Entry ids and the request's own encoding do not count: the limit of
    a batch is on "the total aggregate size of all messages" in it.
    """
    size = len(body.encode())
    for name, attribute in (attributes or {}).items():
        size += len(name.encode())
        size += sum(len(v.encode() if isinstance(v, str) else v) for v in attribute.values())
    return size


def batches(sizes: Sequence[int], max_bytes: int, max_entries: int = BATCH_MAX) -> list[range]:
    """Cut messages of these sizes, in order, into batches of at most ``max_entries``
    messages and ``max_bytes`` together; a message bigger than that goes alone."""
    out: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start == max_entries or total + size > max_bytes):
            out.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out


def is_permanent(code: str) -> bool:
    """No retry of the same request can cure an error with this code: not an outage."""
    return error_name(code) in PERMANENT_CODES


def is_throttling(code: str) -> bool:
    """The service refused for the request rate: it is up, and asks for fewer requests."""
    return error_name(code) in THROTTLING_CODES


def is_later(code: str) -> bool:
    """An answer that says "not now" (throttling, a server error): the same request may pass later."""
    return error_name(code) in THROTTLING_CODES | SERVER_CODES


def is_denied(code: str) -> bool:
    return error_name(code) in DENIED_CODES


def denied(error: str) -> bool:
    """A failure (a :class:`Fault`, or a plain reason) that IAM denied."""
    return isinstance(error, Fault) and is_denied(error.code)


def error_name(code: str) -> str:
    """An AWS error code without its service prefix or "Exception" suffix.

    Servers spell the same error differently: ``AWS.SimpleQueueService.NonExistentQueue``
    and ``QueueDoesNotExist``, ``InvalidParameterValue`` and ``InvalidParameterValueException``.
    """
    name = code.rsplit(".", 1)[-1]
    return name.removesuffix("Exception") or name


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    # Its message attributes of data type String or Number, by name (Binary ones are left out).
    attributes: Mapping[str, str] = field(default_factory=dict)
    trace_header: str | None = None  # the AWSTraceHeader system attribute (X-Ray's trace context)
    group_id: str | None = None  # the MessageGroupId, on a FIFO queue
    # Why its payload, stored in S3 by an extended client, could not be read
    # (a Fault where S3 gave a code); the body is then still the pointer.
    unreadable: str | None = None


@dataclass(frozen=True)
class QueueInfo:
    visibility_timeout: int | None  # seconds; None when it could not be read
    max_receive_count: int | None  # from the redrive policy; None without a DLQ


@dataclass(frozen=True)
class Publish:
    entry_id: str
    document: str
    # SNS message attributes, by name (``wire_attributes`` gives their data
    # types): what subscription filter policies match on (``sesshu.jobs.failures.attributes``).
    attributes: Mapping[str, str] = field(default_factory=dict)
    # For a FIFO topic only (a standard topic refuses both): the request's
    # MessageGroupId, and its SQS MessageId, so that SNS drops a republished copy.
    group_id: str | None = None
    deduplication_id: str | None = None

    def size(self) -> int:
        """The bytes SNS counts for this message, its attributes included."""
        return message_size(self.document, wire_attributes(self.attributes))


def wire_attributes(attributes: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Message attributes as SNS and SQS take them: each a String, but ExtendedPayloadSize a Number."""
    return {name: {"DataType": "Number" if name in NUMBER_ATTRIBUTES else "String", "StringValue": value}
            for name, value in attributes.items()}


@dataclass(frozen=True)
class Delete:
    entry_id: str
    receipt_handle: str


@dataclass(frozen=True)
class Visibility:
    entry_id: str
    receipt_handle: str
    seconds: int


class Fault(str):
    """Why a bus call, or one entry of a batch call, failed: the text to log, with the AWS error code.

    A str, so whatever only logs or compares it needs to know nothing more.
    ``transient``: the same request may pass if sent again (throttling, a
    server error, a timeout, a lost connection). By default that is any
    failure with a code that is not a permanent refusal; a failure with no
    code (our own bug in a bus) is not, so that it is never retried blindly.
    """

    code: str
    transient: bool

    def __new__(cls, text: str, code: str = "", transient: bool | None = None) -> Self:
        fault = super().__new__(cls, text)
        fault.code = code
        fault.transient = bool(code) and not is_permanent(code) if transient is None else transient
        return fault

    @property
    def permanent(self) -> bool:
        return is_permanent(self.code)

    @property
    def throttling(self) -> bool:
        return is_throttling(self.code)


def transient(error: str) -> bool:
    """Whether a failure (a :class:`Fault`, or a plain reason from a bus that gives no code) may pass if retried."""
    return isinstance(error, Fault) and error.transient


class BusError(Exception):
    """A bus call failed as a whole (network, throttling, permissions)."""

    def __init__(self, message: str, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the AWS error code, or the exception's name
        self.status = status  # the HTTP status of an answer; None when none came

    @property
    def permanent(self) -> bool:
        """Retrying the same request cannot help: not an outage."""
        return is_permanent(self.code)

    @property
    def splittable(self) -> bool:
        """The batch failed as a whole, but its entries one by one may pass."""
        return error_name(self.code) in SPLIT_CODES


class Bus(Protocol):
    requests: Counter[str]  # calls made, by operation: for the exit summary and the benchmark

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]: ...

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        """Publish up to BATCH_MAX documents; return ``{entry_id: error}`` for failures."""
        ...

    def publish_failures(self, entries: list[Publish]) -> dict[str, str]:
        """As :meth:`publish`, to the failures topic (``bus.output.failures_topic``)."""
        ...

    def delete(self, entries: list[Delete]) -> dict[str, str]: ...

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]: ...

    def queue_info(self) -> QueueInfo: ...

    def put_object(self, bucket: str, key: str, body: str) -> None:
        """Store an oversized result document (S3); raise BusError on failure."""
        ...

    def get_object(self, bucket: str, key: str, max_bytes: int) -> str:
        """Read a payload stored in S3 (UTF-8 text) of at most ``max_bytes``; raise BusError on failure.

        An object over ``max_bytes`` is refused before it is read (code
        ``EntityTooLarge``), one that is no UTF-8 text after it (``InvalidMessageContents``).
        """
        ...
