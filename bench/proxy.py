"""A counting HTTP proxy between a client and the SQS/SNS server.

It counts what really goes over the wire, retries included: every request,
by operation, named from the ``X-Amz-Target`` header (SQS's JSON protocol)
or the ``Action=`` form field (SNS's query protocol), with the service taken
from the request's signing scope. For batch operations it also counts the
entries, and for ``ReceiveMessage`` the messages returned, so batch sizes
can be reported, the largest request body per operation, and how long the
server took to answer (the injected delay left out). ``GET /__bench__/counts`` answers the counts as JSON.

It can also play the network between a host and AWS: ``--delay-ms`` holds
every relayed request for that long, half before it goes upstream and half
before the answer goes back, as a round trip would (a long poll already
waiting at the server still answers half a round trip after its message
arrives). Each client connection has a thread of its own, so the delays of
concurrent requests overlap, as on a real network; requests on one
connection follow each other, as HTTP/1.1 without pipelining does. The
counts endpoint is never delayed.

``python -m bench.proxy --upstream URL [--delay-ms MS]`` prints its port,
then serves until SIGTERM. :class:`CountingProxy` runs it as a child process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from bench.common import quiet_env

COUNTS_PATH = "/__bench__/counts"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "content-length"}
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")
_ENTRY_ID = re.compile(rb"PublishBatchRequestEntries\.member\.\d+\.Id=")
_S3_OPS = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}


class _Counts:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.entries: Counter[str] = Counter()
        self.largest: dict[str, int] = {}  # largest request body, bytes
        self.upstream_us: Counter[str] = Counter()  # time the server took to answer, the delay left out
        self.lock = threading.Lock()

    def add(self, op: str, requests: int, entries: int, size: int = 0, upstream: float = 0.0) -> None:
        with self.lock:
            self.requests[op] += requests
            self.entries[op] += entries
            self.largest[op] = max(self.largest.get(op, 0), size)
            self.upstream_us[op] += round(upstream * 1e6)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {"requests": dict(self.requests), "entries": dict(self.entries), "largest": dict(self.largest),
                    "upstream_us": dict(self.upstream_us)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up (a daemon exiting mid long poll)
        super().handle_error(request, client_address)

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay  # seconds per relayed request, a round trip
        self.counts = _Counts()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def do_GET(self) -> None:
        if self.path == COUNTS_PATH:
            self._answer(200, {"Content-Type": "application/json"},
                         json.dumps(self.server.counts.snapshot()).encode())
        else:
            self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        # One write for head and body: two small writes would meet the
        # client's delayed ACK (Nagle) and stall each answer by up to 40 ms.
        head = [f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head += [f"Content-Length: {len(body)}", "", ""]
        self.wfile.write("\r\n".join(head).encode("latin-1") + (body if self.command != "HEAD" else b""))

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        op, entries = operation(dict(self.headers.items()), body, self.command)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        # Counted on arrival: a long poll still waiting when the client exits was made.
        self.server.counts.add(op, 1, entries, len(body))
        half = self.server.delay / 2
        if half > 0:
            time.sleep(half)  # this connection's own thread: other requests go on meanwhile
        sent = time.monotonic()
        try:
            status, reply_headers, reply = self._exchange(body, headers)
        except (OSError, http.client.HTTPException) as exc:
            status, reply_headers, reply = 502, {"Content-Type": "text/plain"}, f"bench proxy: {exc}".encode()
        self.server.counts.add(op, 0, _received(reply) if op == "sqs:ReceiveMessage" and status == 200 else 0,
                               upstream=time.monotonic() - sent)
        if half > 0:
            time.sleep(half)
        self._answer(status, reply_headers, reply)

    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
            try:
                self._upstream.request(self.command, self.path, body, headers)
                resp = self._upstream.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                # A kept-alive upstream connection may have been closed: one fresh try.
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
                continue
            kept = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP}
            return resp.status, kept, data
        raise AssertionError("unreachable")


def operation(headers: dict[str, str], body: bytes, method: str = "POST") -> tuple[str, int]:
    """``service:Operation`` of one request, and how many batch entries it carries."""
    lower = {k.lower(): v for k, v in headers.items()}
    scope = _SCOPE.search(lower.get("authorization", ""))
    service = scope.group(1) if scope else "?"
    if service == "s3":  # REST: the method says enough for the bench (results offloaded to S3 are PUTs)
        return f"s3:{_S3_OPS.get(method, method)}", 0
    target = lower.get("x-amz-target")
    if target:
        op = target.rsplit(".", 1)[-1]
        entries = 0
        if op.endswith("Batch"):
            try:
                entries = len(json.loads(body).get("Entries", []))
            except (ValueError, AttributeError):
                entries = 0
        return f"{service}:{op}", entries
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10_000) if body else {}
    op = form.get("Action", ["?"])[0]
    entries = len(_ENTRY_ID.findall(body)) if op == "PublishBatch" else int(op == "Publish")
    return f"{service}:{op}", entries


def _received(reply: bytes) -> int:
    try:
        return len(json.loads(reply).get("Messages", []))
    except (ValueError, AttributeError):
        return 0


class CountingProxy:
    """The proxy as a child process; ``url`` is what clients should use as endpoint."""

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.delay = delay  # seconds
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Self:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.proxy", "--upstream", self.upstream,
                                      "--delay-ms", f"{1000 * self.delay:g}"],
                                     stdout=subprocess.PIPE, text=True, env=quiet_env())
        assert self.proc.stdout is not None
        port = self.proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"bench proxy did not start (said {port!r})")
        self.url = f"http://127.0.0.1:{port}"
        return self

    def counts(self) -> dict[str, dict[str, int]]:
        with urllib.request.urlopen(self.url + COUNTS_PATH, timeout=10) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="counting HTTP proxy for the benchmarks")
    p.add_argument("--upstream", required=True, help="the SQS/SNS server URL")
    p.add_argument("--delay-ms", type=float, default=0.0, help="round trip added to every relayed request")
    args = p.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    server = _Server(args.upstream, max(0.0, args.delay_ms) / 1000)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(server.server_address[1], flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.shutdown()


if __name__ == "__main__":
    main()
