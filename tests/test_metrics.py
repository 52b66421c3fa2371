"""sesshu.daemon.metrics: what the daemon counts, read back as Prometheus exposes it."""

from __future__ import annotations

from prometheus_client import generate_latest

from sesshu.daemon.metrics import Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_bus_calls_errors_and_throttling_are_counted_by_operation() -> None:
    m = Metrics()
    m.bus_call("publish_batch", None)
    m.bus_call("publish_batch", "Throttling")
    m.bus_call("delete_message_batch", "AWS.SimpleQueueService.RequestThrottledException")
    m.bus_call("delete_message_batch", "EndpointConnectionError")
    assert sample(m, "sesshu_bus_requests_total", operation="publish_batch") == 2
    assert sample(m, "sesshu_bus_errors_total", operation="delete_message_batch") == 2
    assert sample(m, "sesshu_bus_throttled_total", operation="publish_batch") == 1
    assert sample(m, "sesshu_bus_throttled_total", operation="delete_message_batch") == 1  # an outage is not


def test_outcomes_durations_restarts_and_gauges() -> None:
    m = Metrics()
    m.outcome("chaos", "done", "", 0.2)
    m.outcome("chaos", "retried", "timeout", None)
    m.restart("crashed")
    m.failures_published(3)
    m.gauges(configured=4, up=3, busy=1, in_flight=7)
    assert sample(m, "sesshu_jobs_total", plugin="chaos", outcome="done", reason="") == 1
    assert sample(m, "sesshu_job_duration_seconds_count", plugin="chaos") == 1  # a retried job has none
    assert sample(m, "sesshu_worker_restarts_total", reason="crashed") == 1
    assert sample(m, "sesshu_failures_published_total") == 3
    assert sample(m, "sesshu_workers", state="busy") == 1 and sample(m, "sesshu_messages_in_flight") == 7
    assert b"# TYPE sesshu_bus_throttled_total counter" in generate_latest(m.registry)


def test_health_checks_say_why_they_fail() -> None:
    from sesshu.daemon.notify import Health

    metrics = Metrics()
    metrics.health = Health(100.0, False, "2 of 4 workers not up")
    assert metrics.check(False, 101.0) == (200, "ok")
    assert metrics.check(True, 101.0) == (503, "2 of 4 workers not up")
    metrics.health = Health(100.0, True, "")
    assert metrics.check(True, 101.0) == (200, "ready")
    # A loop that stopped turning fails both, ready or not.
    for ready in (False, True):
        code, why = metrics.check(ready, 130.0)
        assert code == 503 and why.startswith("the loop has not turned for 30 s")
