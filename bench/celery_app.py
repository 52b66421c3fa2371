"""The Celery side of ``--peers``: the same no-op, as a Celery task over SQS.

The broker is the bench's moto server (``BENCH_SQS_ENDPOINT``), through
kombu's SQS transport; the queue is ``BENCH_CELERY_QUEUE``. Results are
ignored: Celery publishes nothing, unlike sesshud, which publishes every
result to SNS.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from celery import Celery

from bench.plugins import noop as _noop

_endpoint = urlsplit(os.environ.get("BENCH_SQS_ENDPOINT", "http://127.0.0.1:5000"))
app = Celery("bench_peers", broker=f"sqs://testing:testing@{_endpoint.hostname}:{_endpoint.port}")
app.conf.update(
    broker_transport_options={"region": "us-east-1", "is_secure": False, "wait_time_seconds": 20},
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "bench-celery"),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop(target: str) -> Any:
    return _noop.fetch(target)
