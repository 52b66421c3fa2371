"""An HTTP proxy that answers some SQS/SNS calls the way AWS does when it throttles or is down.

``with AwsFaults(server.port) as faults:`` relays every request to the bus
server on 127.0.0.1, and ``faults.fail({"sns:Publish", "sns:PublishBatch"},
"Throttling", every=2)`` makes it answer every other such call, or every
one, with that AWS error, in the protocol the caller speaks: SQS's JSON
(``X-Amz-Target``, a ``__type`` body) or SNS's query protocol (``Action=``,
an XML ``ErrorResponse``). ``faults.clear()`` ends the fault. What was
refused is counted by operation, and a call that gets through is relayed as
it is, so the server still sees every change the daemon really made.

A relayed call whose answer is lost after the server had the whole request
(the upstream connection was reset: the soak's outage cuts it) is answered
502 and kept in ``unanswered``: the server may have carried it out although
the caller was told it failed, which is how a network makes a publish
happen twice.

Throttling answers 400 with the service's throttling code (SNS ``Throttling``,
SQS ``RequestThrottled``), as AWS does; an outage answers 503
``ServiceUnavailable``. With ``run``, refusals come in runs of requests
(``run`` refused, then as many relayed), so botocore's retries of one call
can all be refused, or pass on a later try, as when AWS throttles a busy
account. So that the first is certain however the daemon's calls
interleave, the first call refused after :meth:`AwsFaults.fail` (told by
botocore's ``amz-sdk-invocation-id`` header, the same on each of its tries)
is refused on every try: it fails after all of them, and the daemon's own
retry takes over. With ``calls``, the runs count whole calls instead of
requests: a call is refused on every try or on none, as when a busy account
stays throttled for longer than botocore's backoffs.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
THROTTLING = {"sqs": "RequestThrottled", "sns": "Throttling"}
UNAVAILABLE = "ServiceUnavailable"


def operation(headers: Any, body: bytes) -> str:
    """``service:Operation`` of one SQS or SNS request."""
    scope = _SCOPE.search(headers.get("Authorization", ""))
    service = scope.group(1) if scope else "?"
    target = headers.get("X-Amz-Target")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10_000) if body else {}
    return f"{service}:{form.get('Action', ['?'])[0]}"


class _Rule:
    def __init__(self, code: str | None, run: int, calls: bool = False) -> None:
        self.code = code  # None: throttling, in the service's own spelling
        self.run = run
        self.seen = 0  # requests seen (calls, with ``calls``)
        self.first: str | None = None  # the invocation id of the first call refused: refused on every try
        self.calls: dict[str, bool] | None = {} if calls else None  # invocation id: refused on every try
        self.lock = threading.Lock()

    def refuses(self, headers: Any) -> bool:
        if self.run == 0:
            return True
        invocation = headers.get("amz-sdk-invocation-id")
        with self.lock:
            if self.calls is not None and invocation:
                if invocation not in self.calls:
                    self.calls[invocation] = self.seen // self.run % 2 == 0
                    self.seen += 1
                return self.calls[invocation]
            self.seen += 1
            if self.first is None and invocation:
                self.first = invocation
            return invocation == self.first or (self.seen - 1) // self.run % 2 == 0


class AwsFaults:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.refused: Counter[str] = Counter()
        self.relayed: Counter[str] = Counter()
        self.unanswered: list[tuple[str, bytes]] = []  # (operation, request body), see the module docstring
        self._rules: dict[str, _Rule] = {}
        self._lock = threading.Lock()
        faults = self

        class Handler(_Handler):
            owner = faults

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-faults", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, operations: Iterable[str], code: str | None = None, *, run: int = 0,
             calls: bool = False) -> None:
        """Refuse these operations (``"sns:Publish"``): each call if ``run`` is 0, else in runs (module docstring).

        ``code`` None answers the service's throttling error; ``UNAVAILABLE`` a 503.
        ``calls``: the runs are of whole calls, each refused on all its tries or on none.
        """
        with self._lock:
            for op in operations:
                self._rules[op] = _Rule(code, run, calls)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def count(self, op: str, refused: bool) -> None:
        with self._lock:
            (self.refused if refused else self.relayed)[op] += 1

    def lost_answer(self, op: str, body: bytes) -> None:
        with self._lock:
            self.unanswered.append((op, body))

    def rule(self, op: str) -> _Rule | None:
        with self._lock:
            return self._rules.get(op)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: AwsFaults
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        op = operation(self.headers, body)
        rule = self.owner.rule(op)
        refused = rule is not None and rule.refuses(self.headers)
        self.owner.count(op, refused)
        if rule is not None and refused:
            self._refuse(op, rule.code)
            return
        sent = False  # the whole request is on its way to the server
        relayed = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        relayed["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body, relayed)
            sent = True
            status, headers, reply = self._reply(conn)
        except (OSError, http.client.HTTPException) as exc:
            if sent:
                self.owner.lost_answer(op, body)
            status, headers, reply = 502, {"Content-Type": "text/plain"}, f"aws-faults: {exc}".encode()
        finally:
            conn.close()
        self._answer(status, headers, reply)

    @staticmethod
    def _reply(conn: http.client.HTTPConnection) -> tuple[int, dict[str, str], bytes]:
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP}, data

    def _refuse(self, op: str, code: str | None) -> None:
        service = op.split(":", 1)[0]
        code = code or THROTTLING.get(service, "Throttling")
        status = 503 if code == UNAVAILABLE else 400
        message = "Service Unavailable" if status == 503 else "Rate exceeded"
        if self.headers.get("X-Amz-Target"):  # SQS's JSON protocol
            body = (f'{{"__type":"com.amazonaws.{service}#{code}","message":"{message}"}}').encode()
            headers = {"Content-Type": "application/x-amz-json-1.0",
                       "x-amzn-query-error": f"{code};{'Receiver' if status == 503 else 'Sender'}"}
        else:
            body = (f'<ErrorResponse><Error><Type>{"Receiver" if status == 503 else "Sender"}</Type>'
                    f"<Code>{code}</Code><Message>{message}</Message></Error>"
                    "<RequestId>aws-faults</RequestId></ErrorResponse>").encode()
            headers = {"Content-Type": "text/xml"}
        self._answer(status, headers, body)

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            # A client may be gone by now (the soak SIGKILLs a master): nothing to tell it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)
