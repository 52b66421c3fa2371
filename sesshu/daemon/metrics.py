"""Prometheus metrics and health checks, served from the supervisor when ``metrics:`` is configured.

The objects are prometheus_client's own, which are thread-safe: outcomes and
restarts are counted from the loop, bus requests from the bus lanes, and the
scrape is answered by the listener's threads. The listener serves three
paths: ``/metrics``, ``/healthz`` (200 while the loop turns) and ``/readyz``
(200 while the daemon can work, else 503 and why); anything else is a 404.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sesshu.bus.api import is_throttling
from sesshu.daemon.notify import STALL, Health

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("sesshu_jobs", "Messages by final outcome (done, empty, rejected, retried)",
                            ["plugin", "outcome", "reason"], registry=r)
        self.duration = Histogram("sesshu_job_duration_seconds", "Plugin run time of finished jobs",
                                  ["plugin"], buckets=DURATION_BUCKETS, registry=r)
        self.workers = Gauge("sesshu_workers", "Worker slots: configured, up (plugins loaded) and busy", ["state"],
                             registry=r)
        self.ready = Gauge("sesshu_ready", "1 while every worker is up and the last receive came back (/readyz)",
                           registry=r)
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
        self._up = self.workers.labels("up")
        self._busy = self.workers.labels("busy")
        # Replaced whole by the loop each turn, read by the listener's threads.
        self.health = Health(time.monotonic(), False, "starting")

    def serve(self, address: str, port: int) -> None:
        metrics = self

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
            daemon_threads = True

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    code, text = metrics.check(path == "/readyz", time.monotonic())
                    self._reply(code, f"{text}\n".encode(), "text/plain; charset=utf-8")
                else:
                    self._reply(404, b"not found: /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # a scrape every few seconds is no news

        server = Server((address, port), Handler)
        threading.Thread(target=server.serve_forever, name="sesshu-metrics", daemon=True).start()

    def check(self, ready: bool, now: float) -> tuple[int, str]:
        """``/healthz`` (``ready`` False) or ``/readyz``: the status code and one line."""
        health = self.health
        if not health.live(now):
            return 503, f"the loop has not turned for {now - health.turned:.0f} s (more than {STALL:g})"
        if ready and not health.ready:
            return 503, health.why
        return 200, "ready" if ready else "ok"

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

    def gauges(self, configured: int, up: int, busy: int, in_flight: int) -> None:
        self._configured.set(configured)
        self._up.set(up)
        self._busy.set(busy)
        self.in_flight.set(in_flight)
        self.ready.set(1 if self.health.ready else 0)
