"""The sender calls: each runs one batch call in a sender lane and says what became of every entry.

There are five kinds, and each call carries one kind only, so that several
can be in flight at once (``sesshu.bus.outbox`` decides which may overlap):

| kind       | bus call                              | entries         |
|------------|---------------------------------------|-----------------|
| visibility | ChangeMessageVisibilityBatch          | :class:`Change` |
| upload     | S3 PutObject (one result)             | :class:`Upload` |
| publish    | Publish / PublishBatch                | :class:`Post`   |
| failure    | the same, to the failures topic       | :class:`Post`   |
| delete     | DeleteMessageBatch                    | :class:`Drop`   |

How a queue of results is cut into PublishBatch calls is here too
(:func:`take_posts`). The outbox turns a call's return into completions,
also defined here:
:class:`Deleted`, :class:`Unsent` and :class:`Unchanged`.

Every entry carries the ticket of its message (anything with a
``message``), by which the outbox knows it. No call raises: a failure is a
per-entry error (a :class:`~sesshu.bus.api.Fault` where the bus gives a
code, which says whether a retry may pass), and a failure of the call as a
whole also sets :attr:`Sent.error`, for the bus health log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sesshu.bus.api import (
    BATCH_MAX,
    DEFAULT_GROUP,
    SNS_MAX_BYTES,
    Bus,
    BusError,
    Delete,
    Fault,
    Message,
    Publish,
    Visibility,
    message_size,
    wire_attributes,
)

Attributes = Mapping[str, str]  # a message's SNS attributes (sesshu.jobs.failures.attributes)

VISIBILITY, UPLOAD, PUBLISH, FAILURE, DELETE = "visibility", "upload", "publish", "failure", "delete"


class Carrier(Protocol):
    """What the send side needs of a ticket: its message; tickets compare by identity."""

    @property
    def message(self) -> Message: ...


T = TypeVar("T", bound=Carrier)


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str


@dataclass(eq=False)
class Post(Generic[T]):
    """A document to publish (a result, a result's S3 pointer, or a failure record)."""

    ticket: T
    document: str
    attributes: Attributes
    size: int  # what SNS counts, measured once: a 200 KiB document costs its encoding each time

    @classmethod
    def measured(cls, ticket: T, document: str, attributes: Attributes, size: int | None = None) -> Post[T]:
        """A document to publish, measured as SNS counts it unless ``size`` is known."""
        if size is None:
            size = message_size(document, wire_attributes(attributes))
        return cls(ticket, document, attributes, size)


def take_posts(queue: deque[Post[T]]) -> tuple[list[Post[T]], int]:
    """The first PublishBatch's worth of ``queue``, taken off it, and its size.

    One PublishBatch carries at most ten messages and 256 KiB of them all
    together (what SNS counts: bodies and attributes). A lone message always
    goes (the settler made sure that it fits on its own).
    """
    size = 0
    batch: list[Post[T]] = []
    while queue and len(batch) < BATCH_MAX:
        n = queue[0].size
        if batch and size + n > SNS_MAX_BYTES:
            break
        size += n
        batch.append(queue.popleft())
    return batch, size


@dataclass(eq=False)
class Upload(Generic[T]):
    """A result to store in S3, then to announce by publishing ``pointer``."""

    ticket: T
    document: str
    key: str
    pointer: Post[T]


@dataclass(frozen=True, eq=False)
class Drop(Generic[T]):
    """A delete, and the outcome it confirms (done or empty)."""

    ticket: T
    outcome: str


@dataclass(frozen=True, eq=False)
class Change(Generic[T]):
    """A visibility change: an extension by the heartbeat, or a release (seconds until it reappears)."""

    ticket: T
    seconds: int


@dataclass
class Sent(Generic[T]):
    """What became of one sender call, entry by entry."""

    kind: str
    entries: list[Any]  # of the kind's entry class, as the outbox queued them
    failed: dict[int, str] = field(default_factory=dict)  # entry index -> error
    error: Fault | None = None  # set when the call failed as a whole

    def succeeded(self) -> list[Any]:
        return [e for i, e in enumerate(self.entries) if i not in self.failed]

    def failures(self) -> list[tuple[Any, str]]:
        return [(self.entries[i], err) for i, err in sorted(self.failed.items())]


# What a call's entries became, for the settler (``Outbox.completed`` makes them).


@dataclass(frozen=True, eq=False)
class Deleted(Generic[T]):
    """A delete came back: the ``outcome`` it confirms holds; ``error`` if the message may come back."""

    ticket: T
    outcome: str
    error: str | None = None


@dataclass(frozen=True, eq=False)
class Unsent(Generic[T]):
    """A result that could not be published or stored, for good: its message must be retried."""

    ticket: T
    error: str


@dataclass(frozen=True, eq=False)
class Unchanged(Generic[T]):
    """A visibility change (extension or release) that failed; the outbox does not send it again."""

    ticket: T
    error: str


Completion = Deleted[T] | Unsent[T] | Unchanged[T]


def change_visibility(bus: Bus, entries: list[Change[T]]) -> Sent[T]:
    sent: Sent[T] = Sent(VISIBILITY, entries)
    calls = [Visibility(str(i), e.ticket.message.receipt_handle, e.seconds) for i, e in enumerate(entries)]
    sent.failed = _ids(_guard(sent, bus.change_visibility, calls))
    return sent


def upload(bus: Bus, s3: S3Target, entry: Upload[T]) -> Sent[T]:
    """Store one result in S3; its pointer is published by a later publish call."""
    sent: Sent[T] = Sent(UPLOAD, [entry])
    try:
        bus.put_object(s3.bucket, entry.key, entry.document)
    except BusError as exc:
        sent.error = Fault(str(exc), exc.code)
        sent.failed = {0: Fault(f"S3 upload failed: {exc}", exc.code)}
    except Exception as exc:  # noqa: BLE001 - a bug in a bus must not kill the lane
        sent.error = Fault(f"unexpected {type(exc).__name__}: {exc}")
        sent.failed = {0: f"S3 upload failed: {sent.error}"}
    return sent


def publish(bus: Bus, entries: list[Post[T]], kind: str = PUBLISH) -> Sent[T]:
    """Publish results (``kind`` PUBLISH) or failure records (FAILURE), each to its topic."""
    sent: Sent[T] = Sent(kind, entries)
    call = bus.publish if kind == PUBLISH else bus.publish_failures
    posts = [Publish(str(i), e.document, e.attributes, e.ticket.message.group_id or DEFAULT_GROUP,
                     e.ticket.message.message_id) for i, e in enumerate(entries)]
    sent.failed = _ids(_guard(sent, call, posts))
    return sent


def delete(bus: Bus, entries: list[Drop[T]]) -> Sent[T]:
    sent: Sent[T] = Sent(DELETE, entries)
    calls = [Delete(str(i), e.ticket.message.receipt_handle) for i, e in enumerate(entries)]
    sent.failed = _ids(_guard(sent, bus.delete, calls))
    return sent


def _ids(failed: dict[str, str]) -> dict[int, str]:
    return {int(k): v for k, v in failed.items()}


def _guard(sent: Sent[T], call: Callable[[list[Any]], dict[str, str]], entries: list[Any]) -> dict[str, str]:
    """``call(entries)``; a failure of the call as a whole fails every entry (and is kept in ``sent.error``)."""
    try:
        return call(entries)
    except BusError as exc:
        if exc.splittable and len(entries) > 1:
            # Refused for what the batch holds, not for where it goes: each
            # entry alone may pass, and the one at fault fails by itself.
            sent.error = Fault(f"{exc}; sent its {len(entries)} entries one by one", exc.code)
            failed: dict[str, str] = {}
            for entry in entries:
                failed.update(_guard(sent, call, [entry]))
            return failed
        sent.error = Fault(str(exc), exc.code)
        return {e.entry_id: sent.error for e in entries}
    except Exception as exc:  # noqa: BLE001 - a bug in a bus must not kill the lane
        sent.error = Fault(f"unexpected {type(exc).__name__}: {exc}")
        return {e.entry_id: str(sent.error) for e in entries}
