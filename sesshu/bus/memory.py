"""An in-memory bus with SQS-like visibility semantics, for tests and benchmarks.

It is no broker: one process, no persistence. It lets the supervisor and pool
be exercised (and timed) without any network in between.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sesshu.bus.api import BATCH_MAX, BusError, Delete, Message, Publish, QueueInfo, Visibility


@dataclass
class _Stored:
    message_id: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    group_id: str | None = None
    visible_at: float = 0.0
    receives: int = 0
    receipt: str = ""


@dataclass
class MemoryBus:
    visibility_timeout: int = 30
    max_receive_count: int | None = None
    published: list[str] = field(default_factory=list)
    attributes: list[dict[str, str]] = field(default_factory=list)  # of each published document, in order
    failures: list[Publish] = field(default_factory=list)  # failure records, attributes and all
    dead: list[str] = field(default_factory=list)  # bodies moved by the "redrive policy"
    requests: Counter[str] = field(default_factory=Counter)
    objects: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._messages: dict[str, _Stored] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    def send(self, body: str, attributes: dict[str, str] | None = None, group_id: str | None = None) -> str:
        """Queue a message; ``group_id`` only labels it (this bus keeps no FIFO order of its own)."""
        with self._cond:
            mid = f"m-{next(self._ids)}"
            self._messages[mid] = _Stored(mid, body, dict(attributes or {}), group_id)
            self._cond.notify_all()
            return mid

    def depth(self) -> int:
        with self._cond:
            return len(self._messages)

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        self.requests["receive_message"] += 1
        deadline = time.monotonic() + wait_seconds
        with self._cond:
            while True:
                got = self._take(min(max_messages, BATCH_MAX))
                remaining = deadline - time.monotonic()
                if got or remaining <= 0:
                    return got
                self._cond.wait(min(remaining, 0.05))

    def _take(self, n: int) -> list[Message]:
        now = time.monotonic()
        out: list[Message] = []
        for stored in list(self._messages.values()):
            if len(out) >= n:
                break
            if stored.visible_at > now:
                continue
            if self.max_receive_count is not None and stored.receives >= self.max_receive_count:
                del self._messages[stored.message_id]
                self.dead.append(stored.body)
                continue
            stored.receives += 1
            stored.visible_at = now + self.visibility_timeout
            stored.receipt = f"{stored.message_id}#{stored.receives}"
            out.append(Message(stored.message_id, stored.receipt, stored.body, stored.receives, stored.attributes,
                               group_id=stored.group_id))
        return out

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        self.requests["publish_batch" if len(entries) > 1 else "publish"] += 1
        with self._cond:
            self.published.extend(e.document for e in entries)
            self.attributes.extend(dict(e.attributes) for e in entries)
        return {}

    def publish_failures(self, entries: list[Publish]) -> dict[str, str]:
        self.requests["publish_batch" if len(entries) > 1 else "publish"] += 1
        with self._cond:
            self.failures.extend(entries)
        return {}

    def delete(self, entries: list[Delete]) -> dict[str, str]:
        self.requests["delete_message_batch"] += 1
        return self._each(entries, lambda stored, e: self._messages.pop(stored.message_id))

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        self.requests["change_message_visibility_batch"] += 1

        def change(stored: _Stored, e: Visibility) -> None:
            stored.visible_at = time.monotonic() + e.seconds

        return self._each(entries, change)

    def _each(self, entries: Sequence[Delete | Visibility], act: Callable[[_Stored, Any], object]) -> dict[str, str]:
        """Apply ``act`` to each entry's message; report stale receipts per entry, as SQS does."""
        failed = {}
        with self._cond:
            for e in entries:
                stored = self._find(e.receipt_handle)
                if stored is None:
                    failed[e.entry_id] = "ReceiptHandleIsInvalid"
                else:
                    act(stored, e)
            self._cond.notify_all()
        return failed

    def put_object(self, bucket: str, key: str, body: str) -> None:
        self.requests["put_object"] += 1
        self.objects[(bucket, key)] = body

    def get_object(self, bucket: str, key: str, max_bytes: int) -> str:
        self.requests["get_object"] += 1
        body = self.objects.get((bucket, key))
        if body is None:
            raise BusError(f"get_object: no object {key} in {bucket}", "NoSuchKey")
        if len(body.encode()) > max_bytes:
            raise BusError(f"s3://{bucket}/{key} is {len(body.encode())} bytes, over {max_bytes}", "EntityTooLarge")
        return body

    def queue_info(self) -> QueueInfo:
        return QueueInfo(self.visibility_timeout, self.max_receive_count)

    def _find(self, receipt: str) -> _Stored | None:
        mid = receipt.split("#", 1)[0]
        stored = self._messages.get(mid)
        return stored if stored is not None and stored.receipt == receipt else None
