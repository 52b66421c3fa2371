"""An OpenTelemetry consumer span per message, where ``opentelemetry-api`` is installed (optional).

Nothing here is needed for the propagation of trace context
(``sesshu.jobs.trace``): this only reports the daemon's own work to
whatever OpenTelemetry SDK the host configured. Without the package, or
with the API alone (its tracer then does nothing), no span is made.

Each span covers one message from its receive to its outcome, is of kind
CONSUMER, follows OpenTelemetry's messaging conventions (``process``, with
``messaging.system`` ``aws_sqs``), and is linked, not parented, to the
request's creation context, as those conventions ask of a consumer.
"""

from __future__ import annotations

import logging
from typing import Any

from sesshu.jobs.ticket import Ticket

log = logging.getLogger(__name__)

try:
    from opentelemetry import trace as otel
except ImportError:  # optional: no spans
    otel = None  # type: ignore[assignment]


class JobSpans:
    def __init__(self, queue: str, provider: Any = None) -> None:
        """``queue``: the input queue as configured; ``provider``: a TracerProvider (else the global one)."""
        self._queue = queue.rstrip("/").rsplit("/", 1)[-1]  # a URL's last part is the queue's name
        self._tracer = otel.get_tracer("sesshu", tracer_provider=provider) if otel is not None else None

    def record(self, ticket: Ticket, outcome: str, reason: str, ended_ns: int) -> None:
        """The span of one message, from its receive (``ticket.received_ns``) to ``ended_ns``."""
        if self._tracer is None:
            return
        try:
            self._record(ticket, outcome, reason, ended_ns)
        except Exception:  # a tracing SDK's bug must not touch the message
            log.warning("message %s: OpenTelemetry span not recorded", ticket.message_id, exc_info=True)

    def _record(self, ticket: Ticket, outcome: str, reason: str, ended_ns: int) -> None:
        assert otel is not None and self._tracer is not None
        links = []
        if ticket.trace is not None:
            context = otel.SpanContext(int(ticket.trace.trace_id, 16), int(ticket.trace.parent_id, 16),
                                       is_remote=True, trace_flags=otel.TraceFlags(int(ticket.trace.flags, 16)))
            links.append(otel.Link(context))
        request = ticket.request
        attributes: dict[str, str] = {
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": self._queue,
            "messaging.message.id": ticket.message_id,
            "sesshu.outcome": outcome,
        }
        if request is not None:
            attributes["sesshu.plugin"] = request.plugin
        if reason:
            attributes["sesshu.reason"] = reason
        span = self._tracer.start_span(f"process {self._queue}", kind=otel.SpanKind.CONSUMER, links=links,
                                       attributes=attributes, start_time=ticket.received_ns)
        if outcome in ("rejected", "retried"):
            span.set_status(otel.Status(otel.StatusCode.ERROR, reason))
        span.end(end_time=ended_ns)
