"""The messages between the supervisor and a worker, and how a frame's body is coded.

A frame body is a JSON header line, then, for results, the plugin's
already-serialised JSON. Nothing is pickled: the parent must never unpickle
bytes from a process running untrusted plugin code, and keeping the result
bytes as the child produced them lets the parent splice them into the
published document without decoding them again.

The parent trusts nothing a worker sends (nginx's master and OpenSSH's
monitor are the model): :func:`decode_child` bounds the size and the nesting
depth before any JSON parser sees the bytes, and turns every way a frame can
be wrong into :class:`ProtocolError`, so no frame can raise anything else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from sesshu import nesting
from sesshu.plugin import MAX_RETRY_SECONDS

Status = Literal["done", "empty", "rejected", "failed"]
STATUSES = ("done", "empty", "rejected", "failed")
# Why a job failed, as the runner says it. The master counts outcomes by
# reason (a metric label), so a frame may name these and no other: a plugin
# that forges its own frames cannot grow that label set.
FAILURE_REASONS = frozenset({"fetch_error", "retry_later", "unserialisable", "too_large", "memory",
                             "limit_processes", "limit_open_files", "limit_file_size"})
MAX_HEADER_BYTES = 16 * 1024  # error texts are clipped to 500 characters by the child
MAX_DEPTH = 64  # results nested deeper are refused before they are parsed
MAX_TEXT = 2048  # longest error, reason or plugin name a header may carry


@dataclass(frozen=True)
class Job:
    job_id: int
    plugin: str
    target: str


@dataclass(frozen=True)
class Ready:
    pass


@dataclass(frozen=True)
class BootFailed:
    plugin: str
    error: str


@dataclass(frozen=True)
class Result:
    job_id: int
    status: Status
    error: str = ""
    payload: bytes = b""  # the plugin's result as JSON, for status "done"
    reason: str = ""  # for "failed": fetch_error, retry_later, unserialisable, too_large, memory, limit_*
    delay: int | None = None  # for reason retry_later: seconds before the message may come back
    # Whether the job may have left a process behind, so the keeper must sweep
    # before the next job (sesshu.worker.leftovers). A runner that lies to skip
    # it only spares processes it could as well have been a thread of.
    sweep: bool = True


ChildMessage = Ready | BootFailed | Result


class ProtocolError(Exception):
    """A frame that does not follow the protocol: the worker is not trusted any more."""


def encode_job(job: Job) -> bytes:
    return json.dumps({"op": "job", "job": job.job_id, "plugin": job.plugin, "target": job.target}).encode()


def decode_job(frame: bytes) -> Job:
    doc = json.loads(frame)
    return Job(int(doc["job"]), str(doc["plugin"]), str(doc["target"]))


def encode_child(msg: ChildMessage) -> bytes:
    if isinstance(msg, Result):
        head: dict[str, Any] = {"op": "result", "job": msg.job_id, "status": msg.status, "error": msg.error,
                                "reason": msg.reason}
        if msg.delay is not None:
            head["delay"] = msg.delay
        if not msg.sweep:
            head["sweep"] = False
        return json.dumps(head).encode() + b"\n" + msg.payload
    if isinstance(msg, BootFailed):
        return json.dumps({"op": "boot_failed", "plugin": msg.plugin, "error": msg.error}).encode()
    return b'{"op": "ready"}'


def decode_child(frame: bytes) -> ChildMessage:
    """Decode one frame from a worker; anything amiss is a :class:`ProtocolError`."""
    try:
        return _decode(frame)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - a frame may fail in any way; the child pays, never us
        raise ProtocolError(f"malformed frame from child: {type(exc).__name__}") from None


def _decode(frame: bytes) -> ChildMessage:
    head, _, payload = frame.partition(b"\n")
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header is {len(head)} bytes, over {MAX_HEADER_BYTES}")
    if not head.isascii():
        raise ProtocolError("frame header is not ASCII JSON")
    check_depth(head, 4)
    doc = json.loads(head)
    if not isinstance(doc, dict):
        raise ProtocolError("frame header is not a JSON object")
    op = doc.get("op")
    if op == "result":
        status = doc.get("status")
        if status not in STATUSES:
            raise ProtocolError("result frame with an unknown status")
        job_id = doc.get("job")
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise ProtocolError("result frame without an integer job id")
        if status == "done":
            # The parent splices these bytes into the published document:
            # they must be the JSON the child claims, whatever the plugin did.
            if not payload.isascii():
                raise ProtocolError("result payload is not ASCII JSON")
            check_depth(payload, MAX_DEPTH)
            json.loads(payload)
        elif payload:
            raise ProtocolError("a payload on a result that is not done")
        reason = _text(doc, "reason", "")
        if (reason not in FAILURE_REASONS) if status == "failed" else reason != "":
            raise ProtocolError("a result's reason is not one the runner gives")
        delay = doc.get("delay")
        if delay is not None and (status != "failed" or reason != "retry_later" or not isinstance(delay, int)
                                  or isinstance(delay, bool) or not 0 <= delay <= MAX_RETRY_SECONDS):
            raise ProtocolError("a result's delay is not whole seconds of a retry_later within 12 hours")
        sweep = doc.get("sweep", True)
        if not isinstance(sweep, bool):
            raise ProtocolError("a result's sweep is not true or false")
        return Result(job_id, status, _text(doc, "error", ""), payload if status == "done" else b"", reason, delay,
                      sweep)
    if op == "ready" and not payload:
        return Ready()
    if op == "boot_failed" and not payload:
        return BootFailed(_text(doc, "plugin"), _text(doc, "error"))
    raise ProtocolError("unknown frame op")


def _text(doc: dict[str, Any], key: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ProtocolError(f"frame field {key!r} is not a short string")
    return value


def check_depth(data: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` before a recursive parser sees it."""
    if nesting.deeper_than(data, limit):
        raise ProtocolError(f"JSON nested deeper than {limit} levels")
