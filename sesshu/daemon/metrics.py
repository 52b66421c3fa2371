"""Prometheus metrics, served from the supervisor when ``metrics:`` is configured.

The objects are prometheus_client's own, which are thread-safe: outcomes and
restarts are counted from the loop, bus requests from the bus lanes, and the
scrape is answered by prometheus_client's HTTP thread.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sesshu.bus.api import is_throttling

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("sesshu_jobs", "Messages by final outcome (done, empty, rejected, retried)",
                            ["plugin", "outcome", "reason"], registry=r)
        self.duration = Histogram("sesshu_job_duration_seconds", "Plugin run time of finished jobs",
                                  ["plugin"], buckets=DURATION_BUCKETS, registry=r)
        self.workers = Gauge("sesshu_workers", "Worker children: configured and busy", ["state"], registry=r)
        self.restarts = Counter("sesshu_worker_restarts", "Worker children replaced, by reason",
                                ["reason"], registry=r)
        self.bus_requests = Counter("sesshu_bus_requests", "SQS/SNS API calls", ["operation"], registry=r)
        self.bus_errors = Counter("sesshu_bus_errors", "SQS/SNS API calls that failed", ["operation"], registry=r)
        self.bus_throttled = Counter("sesshu_bus_throttled", "SQS/SNS API calls refused for the request rate "
                                     "(after botocore's own retries)", ["operation"], registry=r)
        self.failures = Counter("sesshu_failures_published",
                                "Failure records published to bus.output.failures_topic", registry=r)
        self.in_flight = Gauge("sesshu_messages_in_flight",
                               "Received messages without an outcome yet (held, running, being sent)", registry=r)
        # gauges() runs every loop turn: look the labelled children up once, not per turn.
        self._configured = self.workers.labels("configured")
        self._busy = self.workers.labels("busy")

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def outcome(self, plugin: str, outcome: str, reason: str, duration: float | None) -> None:
        self.jobs.labels(plugin, outcome, reason).inc()
        if duration is not None:
            self.duration.labels(plugin).observe(duration)

    def restart(self, reason: str) -> None:
        self.restarts.labels(reason).inc()

    def bus_call(self, operation: str, error: str | None) -> None:
        """One API call made; ``error`` is its AWS error code (or exception name) if it failed."""
        self.bus_requests.labels(operation).inc()
        if error is not None:
            self.bus_errors.labels(operation).inc()
            if is_throttling(error):
                self.bus_throttled.labels(operation).inc()

    def failures_published(self, n: int) -> None:
        self.failures.inc(n)

    def gauges(self, configured: int, busy: int, in_flight: int) -> None:
        self._configured.set(configured)
        self._busy.set(busy)
        self.in_flight.set(in_flight)
