"""What a consumer hears besides results: failure records, and the attributes of all Sesshu publishes.

When Sesshu gives up on a message (its outcome is *rejected* or *retried* on
the last receive its queue's redrive policy allows, so the next receive
moves it to the dead-letter queue), a failure record goes to
``bus.output.failures_topic``::

    {"target": ..., "plugin": ..., "failure": {"outcome", "reason", "detail",
     "receives", "message_id", "host", "at"}}

A body that named no plugin and no target (it never parsed) gets both null,
and ``"body"``: its first KiB. Whatever came from the sender is masked as in
the logs and bounded, so a record always fits SNS.

Every published result and failure record carries the String attributes
``plugin``, ``outcome`` and ``sesshu_version``: what subscription filter
policies match on; and ``traceparent`` where the request carried a trace
context (``sesshu.jobs.trace``). A result stored in S3 is announced by the extended
clients' pointer, with ``ExtendedPayloadSize`` besides
(``sesshu.bus.payloads``).
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import sesshu
from sesshu.bus.api import QueueInfo
from sesshu.config.schema import valid_plugin_name
from sesshu.jobs import trace
from sesshu.jobs.outcomes import DETAIL_CHARS
from sesshu.jobs.requests import MAX_PLUGIN_CHARS, MAX_TARGET_CHARS
from sesshu.jobs.ticket import Ticket
from sesshu.jobs.trace import TraceContext
from sesshu.text import clip, loggable, mask

BODY_BYTES = 1024  # of a body that never parsed, quoted in its record
UNKNOWN_PLUGIN = "-"  # the plugin attribute when no valid plugin name is known, as in the metrics


def last_receive(receive_count: int, info: QueueInfo) -> bool:
    """Whether redrive moves the message to the DLQ instead of delivering it again.

    SQS moves a message on the receive after ``maxReceiveCount``; without a
    redrive policy (or when it could not be read) no receive is the last.
    """
    return info.max_receive_count is not None and receive_count >= info.max_receive_count


def attributes(plugin: str | None, outcome: str, context: TraceContext | None = None) -> dict[str, str]:
    """The message attributes of a result (outcome ``done``) or a failure record.

    A plugin name that is not a valid one (a rejected request can name
    anything) becomes ``-``: a sender must not be able to write attributes.
    With the request's trace ``context``, a ``traceparent`` that continues it.
    At most four, and five with a stored result's ``ExtendedPayloadSize``:
    within SNS's limit of ten, and the extended clients' nine.
    """
    attrs = {
        "plugin": plugin if plugin is not None and valid_plugin_name(plugin) else UNKNOWN_PLUGIN,
        "outcome": outcome,
        "sesshu_version": sesshu.__version__,
    }
    if context is not None:
        attrs[trace.ATTRIBUTE] = context.child()
    return attrs


def record(ticket: Ticket, outcome: str, reason: str, detail: str, *,
           host: str | None = None, now: datetime | None = None) -> tuple[str, dict[str, str]]:
    """The failure record of a message given up on, and its message attributes."""
    request = ticket.request
    if request is not None:
        plugin: str | None = request.plugin
        target: str | None = request.target
    else:
        # What a rejected request named: untrusted, so bounded like a valid one would be.
        plugin = clip(ticket.named_plugin, MAX_PLUGIN_CHARS) if ticket.named_plugin is not None else None
        target = clip(ticket.named_target, MAX_TARGET_CHARS) if ticket.named_target is not None else None
    at = (now or datetime.now(UTC)).astimezone(UTC)
    doc: dict[str, object] = {
        "target": mask(target) if target is not None else None,
        "plugin": mask(plugin) if plugin is not None else None,
        "failure": {
            "outcome": outcome,
            "reason": reason,
            "detail": loggable(detail, DETAIL_CHARS),
            "receives": ticket.message.receive_count,
            "message_id": ticket.message.message_id,
            "host": host if host is not None else socket.gethostname(),
            "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
    }
    if plugin is None and target is None:
        doc["body"] = _head(ticket.message.body)
    return json.dumps(doc), attributes(plugin, outcome, ticket.trace)


def _head(body: str) -> str:
    """The body's first KiB of UTF-8, masked (before the cut, so a cut cannot split a secret from its "@")."""
    raw = mask(body).encode("utf-8", "replace")[:BODY_BYTES]
    return raw.decode("utf-8", "ignore")
