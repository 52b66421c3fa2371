"""The Celery side of the peers comparison: the same job as sesshud's, as a Celery task over SQS.

The broker is the bench's SQS server at ``BENCH_SQS_ENDPOINT`` (moto, or the
bench proxy in front of it), through kombu's SQS transport; the queue is
``BENCH_CELERY_QUEUE``. Like sesshud, every task publishes its result
(``{"target", "plugin", "message_id", "result"}``, the task's id for the
message's) as one SNS message to
``BENCH_SNS_TOPIC``, with boto3 through the same endpoint; each pool process
makes its client once, on its first task (a client made before the fork
would share connections between processes); the threads of the thread pool
share their process's client, which boto3 allows. Celery's own result backend is
off.

The settings (``SETTINGS``, shown in the report): the default prefetch
multiplier (4, so -c 4 may hold 16 messages; a receive asks for at most
10); long polls of 20 s, as sesshud's default; no extra client-side wait
after an empty poll (``polling_interval`` 0; kombu's default is 1 s); the
visibility timeout of the bench's queues (60 s); Celery's default early
acknowledgement (the message is deleted when the task starts, which costs
Celery nothing in the window, unlike sesshud's delete after the publish).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from celery import Celery

from bench.plugins import noop as _noop

ENDPOINT = os.environ.get("BENCH_SQS_ENDPOINT", "http://127.0.0.1:5000")
TRANSPORT = {"region": "us-east-1", "is_secure": False, "wait_time_seconds": 20, "polling_interval": 0,
             "visibility_timeout": 60}
SETTINGS: dict[str, Any] = {"worker_prefetch_multiplier": 4, "task_acks_late": False,
                            "broker_transport_options": TRANSPORT}

_endpoint = urlsplit(ENDPOINT)
app = Celery("bench_peers", broker=f"sqs://testing:testing@{_endpoint.hostname}:{_endpoint.port}")
app.conf.update(
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "bench-celery"),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    **SETTINGS,
)

_sns: tuple[int, Any] | None = None  # (pid, client): made in the pool process that uses it
_made = threading.Lock()  # the thread pool's first tasks would otherwise each make one


def _client() -> Any:
    global _sns
    with _made:
        if _sns is None or _sns[0] != os.getpid():
            from bench.feeder import client  # boto3 only where a task runs

            _sns = (os.getpid(), client("sns", ENDPOINT))
        return _sns[1]


@app.task(name="noop", bind=True)  # type: ignore[untyped-decorator]
def noop(self: Any, target: str) -> None:
    result = _noop.fetch(target)
    doc = json.dumps({"target": target, "plugin": "noop", "message_id": self.request.id, "result": result},
                     separators=(",", ":"))
    _client().publish(TopicArn=os.environ["BENCH_SNS_TOPIC"], Message=doc)
