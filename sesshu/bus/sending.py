"""The sender calls: each runs one batch call in a sender lane and says what became of every entry.

There are five kinds, and each call carries one kind only, so that several
can be in flight at once (``sesshu.bus.outbox`` decides which may overlap):

| kind       | bus call                              | entries                                       |
|------------|---------------------------------------|-----------------------------------------------|
| visibility | ChangeMessageVisibilityBatch          | (ticket, seconds)                             |
| upload     | S3 PutObject (one result)             | (ticket, document, key, pointer, attributes)  |
| publish    | Publish / PublishBatch                | (ticket, document, attributes)                |
| failure    | the same, to the failures topic       | (ticket, record, attributes)                  |
| delete     | DeleteMessageBatch                    | (ticket, outcome)                             |

No call raises: a failure is a per-entry error (a :class:`~sesshu.bus.api.Fault`
where the bus gives a code, which says whether a retry may pass), and a
failure of the call as a whole also sets :attr:`Sent.error`, for the bus
health log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sesshu.bus.api import Bus, BusError, Delete, Fault, Publish, Visibility

Attributes = Mapping[str, str]  # a message's SNS attributes (sesshu.jobs.failures.attributes)

VISIBILITY, UPLOAD, PUBLISH, FAILURE, DELETE = "visibility", "upload", "publish", "failure", "delete"


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str


@dataclass
class Sent:
    """What became of one sender call, entry by entry (entries as the outbox queued them)."""

    kind: str
    entries: list[Any]
    failed: dict[int, str] = field(default_factory=dict)  # entry index -> error
    error: Fault | None = None  # set when the call failed as a whole

    def succeeded(self) -> list[Any]:
        return [e for i, e in enumerate(self.entries) if i not in self.failed]

    def failures(self) -> list[tuple[Any, str]]:
        return [(self.entries[i], err) for i, err in sorted(self.failed.items())]


def change_visibility(bus: Bus, entries: list[tuple[Any, int]]) -> Sent:
    sent = Sent(VISIBILITY, entries)
    calls = [Visibility(str(i), t.message.receipt_handle, s) for i, (t, s) in enumerate(entries)]
    sent.failed = _ids(_guard(sent, bus.change_visibility, calls))
    return sent


def upload(bus: Bus, s3: S3Target, entry: tuple[Any, str, str, str, Attributes]) -> Sent:
    """Store one result in S3; its pointer is published by a later publish call."""
    sent = Sent(UPLOAD, [entry])
    _, document, key, _, _ = entry
    try:
        bus.put_object(s3.bucket, key, document)
    except BusError as exc:
        sent.error = Fault(str(exc), exc.code)
        sent.failed = {0: Fault(f"S3 upload failed: {exc}", exc.code)}
    except Exception as exc:  # noqa: BLE001 - a bug in a bus must not kill the lane
        sent.error = Fault(f"unexpected {type(exc).__name__}: {exc}")
        sent.failed = {0: f"S3 upload failed: {sent.error}"}
    return sent


def publish(bus: Bus, entries: list[tuple[Any, str, Attributes]]) -> Sent:
    sent = Sent(PUBLISH, entries)
    sent.failed = _ids(_guard(sent, bus.publish, _publishes(entries)))
    return sent


def publish_failures(bus: Bus, entries: list[tuple[Any, str, Attributes]]) -> Sent:
    sent = Sent(FAILURE, entries)
    sent.failed = _ids(_guard(sent, bus.publish_failures, _publishes(entries)))
    return sent


def _publishes(entries: list[tuple[Any, str, Attributes]]) -> list[Publish]:
    return [Publish(str(i), doc, attrs) for i, (_, doc, attrs) in enumerate(entries)]


def delete(bus: Bus, entries: list[tuple[Any, str]]) -> Sent:
    sent = Sent(DELETE, entries)
    calls = [Delete(str(i), t.message.receipt_handle) for i, (t, _) in enumerate(entries)]
    sent.failed = _ids(_guard(sent, bus.delete, calls))
    return sent


def _ids(failed: dict[str, str]) -> dict[int, str]:
    return {int(k): v for k, v in failed.items()}


def _guard(sent: Sent, call: Callable[[list[Any]], dict[str, str]], entries: list[Any]) -> dict[str, str]:
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
