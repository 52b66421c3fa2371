"""A real HTTP site on loopback, for tests, the demo and benchmarks."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["FixtureSite", "Route", "refused_url"]


@dataclass
class Route:
    """How the site answers one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before responding
    # If > 0, send the body one byte at a time with this many seconds
    # between bytes, to play a slow-drip server.
    drip: float = 0.0


_NOT_FOUND = Route(
    status=404, body=b"not found\n", headers={"Content-Type": "text/plain"}
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, site: FixtureSite) -> None:
        self.site = site
        super().__init__((site.host, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.site.count_connection()
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response is what timeout tests provoke.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so no idle keep-alive threads
    # are left behind when the site stops.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, send_body: bool) -> None:
        site = self.server.site
        route = site._serve(self.path, self.headers.get("User-Agent", ""))
        stopping = site._stopping
        if route.delay > 0 and stopping.wait(route.delay):
            return
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        given = {name.lower() for name in route.headers}
        if not given & {"content-length", "transfer-encoding"}:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if not send_body:
            return
        if route.drip <= 0:
            self.wfile.write(route.body)
            return
        for i in range(len(route.body)):
            self.wfile.write(route.body[i : i + 1])
            if stopping.wait(route.drip):
                return


class FixtureSite:
    """A threaded HTTP server on 127.0.0.1 (or another loopback address) serving a mutable route table."""

    def __init__(self, routes: dict[str, Route] | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self._routes: dict[str, Route] = dict(routes or {})
        self._lock = threading.Lock()
        self.hits: list[tuple[str, str]] = []
        self.connections = 0  # accepted, whether or not a request followed
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FixtureSite is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:4321."""
        return f"http://{self.host}:{self.port}"

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def route(self, path: str, route: Route) -> None:
        """Add or replace the route for path (matched with or without its query)."""
        with self._lock:
            self._routes[path] = route

    def _serve(self, raw_path: str, user_agent: str) -> Route:
        with self._lock:
            self.hits.append((raw_path, user_agent))
            route = self._routes.get(raw_path)
            if route is None:
                route = self._routes.get(urlsplit(raw_path).path)
        return route if route is not None else _NOT_FOUND

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FixtureSite is already started")
        self._stopping = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fixture-site-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        # Wake handlers parked in a delay or drip so they exit promptly.
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connects are refused.

    Holding the port bound for the duration keeps anything else from
    taking it, unlike picking a free port and closing it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
