"""The bench's counting proxy: what it counts, and that its injected delay overlaps across requests.

The latency figures of ``make bench`` are only fair if the proxy delays each
request without queueing it behind the others: a serialising proxy would turn
"20 ms per request" into "20 ms times the requests in flight".
"""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from bench.proxy import CountingProxy, operation
from tests.harness.site import FixtureSite, Route

SCOPE = "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/{}/aws4_request, SignedHeaders=host"


def _get(url: str) -> float:
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"ok"
    return time.monotonic() - t0


def test_delays_of_concurrent_requests_overlap() -> None:
    delay, n = 1.0, 8
    with FixtureSite({"/x": Route(body=b"ok")}) as site, CountingProxy(site.url, delay=delay) as proxy:
        t0 = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            each = list(pool.map(lambda i: _get(f"{proxy.url}/x"), range(n)))
        total = time.monotonic() - t0
        counts = proxy.counts()  # never delayed: answered before any deadline could matter
    assert min(each) >= delay * 0.95, each  # every request paid the round trip
    # Serialised, they would take n * delay (8 s); overlapped, one delay. Half
    # of serialised is generous for a loaded host and still tells the two apart.
    assert total < n * delay / 2, f"{n} requests of {delay} s took {total:.2f} s: the proxy serialises them"
    assert sum(counts["requests"].values()) == n


def test_no_delay_by_default() -> None:
    with FixtureSite({"/x": Route(body=b"ok")}) as site, CountingProxy(site.url) as proxy:
        # A loaded host can be slow on its own, so this tells only that no
        # delay of the order the test above adds (1 s) is added by default.
        assert _get(f"{proxy.url}/x") < 1.0


def test_operation_names() -> None:
    sqs = {"Authorization": SCOPE.format("sqs"), "X-Amz-Target": "AmazonSQS.DeleteMessageBatch"}
    assert operation(sqs, b'{"Entries": [{}, {}, {}]}') == ("sqs:DeleteMessageBatch", 3)
    sns = {"Authorization": SCOPE.format("sns")}
    body = (b"Action=PublishBatch&PublishBatchRequestEntries.member.1.Id=a"
            b"&PublishBatchRequestEntries.member.2.Id=b")
    assert operation(sns, body) == ("sns:PublishBatch", 2)
    assert operation(sns, b"Action=Publish&Message=x") == ("sns:Publish", 1)
    assert operation({"Authorization": SCOPE.format("s3")}, b"\xff" * 100, "PUT") == ("s3:PutObject", 0)
