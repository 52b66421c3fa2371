"""The messages between the supervisor and a child, and their framing.

Each frame is one ``Connection.send_bytes`` call: a JSON header line, then
for results the plugin's already-serialised JSON. Nothing is pickled: the
parent must never unpickle bytes from a child running untrusted plugin code,
and JSON keeps the result bytes the child produced, so the parent can wrap
them into the published document without decoding them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Status = Literal["done", "empty", "rejected", "failed"]


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
    reason: str = ""  # for "failed": fetch_error, unserialisable, too_large, memory


ChildMessage = Ready | BootFailed | Result


class ProtocolError(Exception):
    """A frame that does not follow the protocol: the child is not trusted any more."""


def encode_job(job: Job) -> bytes:
    return json.dumps({"op": "job", "job": job.job_id, "plugin": job.plugin, "target": job.target}).encode()


def decode_job(frame: bytes) -> Job:
    doc = json.loads(frame)
    return Job(int(doc["job"]), str(doc["plugin"]), str(doc["target"]))


def encode_child(msg: ChildMessage) -> bytes:
    if isinstance(msg, Result):
        head = {"op": "result", "job": msg.job_id, "status": msg.status, "error": msg.error,
                "reason": msg.reason}
        return json.dumps(head).encode() + b"\n" + msg.payload
    if isinstance(msg, BootFailed):
        return json.dumps({"op": "boot_failed", "plugin": msg.plugin, "error": msg.error}).encode()
    return b'{"op": "ready"}'


def decode_child(frame: bytes) -> ChildMessage:
    head, _, payload = frame.partition(b"\n")
    try:
        doc = json.loads(head)
        op = doc["op"]
        if op == "result":
            status = doc["status"]
            if status not in ("done", "empty", "rejected", "failed"):
                raise ValueError(status)
            if status == "done":
                # The parent splices these bytes into the published document:
                # they must be the JSON the child claims, whatever the plugin did.
                if not payload.isascii():
                    raise ValueError("result payload is not ASCII JSON")
                json.loads(payload)
            return Result(int(doc["job"]), status, str(doc.get("error", "")), payload,
                          str(doc.get("reason", "")))
        if op == "ready":
            return Ready()
        if op == "boot_failed":
            return BootFailed(str(doc["plugin"]), str(doc["error"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed frame from child: {exc!r}") from None
    raise ProtocolError(f"unknown frame op {op!r}")
