"""The supervisor's record of one received message, from receive to outcome."""

from __future__ import annotations

from dataclasses import dataclass

from sesshu.bus.api import Message
from sesshu.jobs.requests import Request
from sesshu.jobs.trace import TraceContext


@dataclass(eq=False)
class Ticket:
    """One received message until its outcome; compared by identity, never by value."""

    message: Message
    request: Request | None = None
    duration: float | None = None  # plugin run time, once it ran
    pid: int | None = None  # the worker that ran it
    visible_until: float = 0.0  # monotonic: when SQS may hand the message to someone else
    # What a rejected request named, for its log line (never trusted for anything else).
    named_plugin: str | None = None
    named_target: str | None = None
    trace: TraceContext | None = None  # the request's trace context, if it carried a valid one
    received_ns: int = 0  # wall clock (time.time_ns) of the receive: where its OpenTelemetry span starts

    @property
    def message_id(self) -> str:
        return self.message.message_id
