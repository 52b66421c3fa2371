"""An OpenTelemetry consumer span per message, with the SDK's in-memory exporter."""

from __future__ import annotations

import pytest

from sesshu.bus.api import Message
from sesshu.jobs.requests import Request
from sesshu.jobs.spans import JobSpans
from sesshu.jobs.ticket import Ticket
from sesshu.jobs.trace import TraceContext

sdk = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")


def spans_and_exporter() -> tuple[JobSpans, object]:
    exporter = memory.InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    return JobSpans("https://sqs.eu-west-1.amazonaws.com/123/sesshu-requests", provider), exporter


def test_a_traced_message_gets_a_consumer_span_linked_to_its_creation() -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    spans, exporter = spans_and_exporter()
    t = Ticket(Message("m-1", "r", "{}", 1), Request("chaos", "x"), trace=TraceContext("a" * 32, "b" * 16, "01"),
               received_ns=1_000)
    spans.record(t, "done", "", 5_000)
    (span,) = exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert span.name == "process sesshu-requests" and span.kind == SpanKind.CONSUMER
    assert (span.start_time, span.end_time) == (1_000, 5_000)
    assert span.attributes["messaging.system"] == "aws_sqs"
    assert span.attributes["messaging.operation.type"] == "process"
    assert span.attributes["messaging.message.id"] == "m-1"
    assert span.attributes["messaging.destination.name"] == "sesshu-requests"
    assert span.attributes["sesshu.plugin"] == "chaos" and span.attributes["sesshu.outcome"] == "done"
    (link,) = span.links
    assert link.context.trace_id == int("a" * 32, 16) and link.context.span_id == int("b" * 16, 16)
    assert link.context.is_remote and link.context.trace_flags.sampled
    assert span.status.status_code == StatusCode.UNSET


def test_an_untraced_retried_message_gets_an_error_span_without_links() -> None:
    from opentelemetry.trace import StatusCode

    spans, exporter = spans_and_exporter()
    spans.record(Ticket(Message("m-2", "r", "{}", 1), received_ns=1), "retried", "timeout", 2)
    (span,) = exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert not span.links and span.status.status_code == StatusCode.ERROR and span.status.description == "timeout"
    assert "sesshu.plugin" not in span.attributes
