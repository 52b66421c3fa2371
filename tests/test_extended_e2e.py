"""AWS's conventions on the bus, end to end with a real sesshud and AWS's own client libraries.

Results too large for SNS are read back by the SQS Extended Client Library
(``amazon-sqs-extended-client``) from a raw subscription; every result names
the MessageId of its request.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sesshu.ops.provision import Deployment
from tests.harness.aws import BusServer, Inbox, extended_sqs, poll, provision, publish
from tests.harness.daemon import Daemon, write_config


def fresh(server: BusServer, prefix: str, **kwargs: Any) -> Deployment:
    return provision(server, f"{prefix}{uuid.uuid4().hex[:8]}", **kwargs)


def bucket(server: BusServer) -> str:
    name = f"sesshu-{uuid.uuid4().hex[:10]}"
    server.client("s3").create_bucket(Bucket=name)
    return name


def configure(path: Path, server: BusServer, dep: Deployment, **output: Any) -> Path:
    bus = {"region": "us-east-1", "endpoint_url": server.url, "input": {"queue": dep.queue_url},
           "output": {"topic": dep.results_topic, **output}}
    return write_config(path, server, dep, bus=bus)


def receive_all(sqs: Any, queue_url: str, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Receive (and delete) until ``n`` messages came, with whatever client ``sqs`` is."""
    got: list[dict[str, Any]] = []

    def more() -> bool:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    MessageAttributeNames=["All"])
        for m in reply.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(got) >= n

    poll(more, timeout, interval=0.1, what=f"{n} messages on {queue_url}")
    return got


def test_the_sqs_extended_client_reads_results_stored_in_s3(moto: BusServer, cfg_path: Path,
                                                            daemons: list[Daemon]) -> None:
    dep = fresh(moto, "ext")
    store = bucket(moto)
    d = Daemon(configure(cfg_path, moto, dep, s3_bucket=store), moto)
    daemons.append(d.start())
    publish(moto, dep, "chaos", "chaos:big:400000", "chaos:echo:small")
    messages = receive_all(extended_sqs(moto), dep.results_queue_url, 2)
    docs = {json.loads(m["Body"])["target"]: (json.loads(m["Body"]), m) for m in messages}
    big, message = docs["chaos:big:400000"]
    assert big["result"] == "x" * 400000 and big["plugin"] == "chaos"
    # Sesshu's own attributes survive beside the extended client's (which it removes).
    attributes = message["MessageAttributes"]
    assert {name: a["StringValue"] for name, a in attributes.items()} | {"sesshu_version": ""} == {
        "plugin": "chaos", "outcome": "done", "sesshu_version": ""}
    small, _ = docs["chaos:echo:small"]
    assert small["result"]["echo"] == "small"
    # Each result names its request's MessageId, which the daemon logged with its outcome.
    for doc, _ in docs.values():
        d.wait_log(rf"done: chaos {doc['target']}: .*message {doc['message_id']} deleted")
    assert big["message_id"] != small["message_id"]
    assert d.stop() == 0


def test_an_oversized_result_s_pointer_is_what_the_extended_clients_send(moto: BusServer, cfg_path: Path,
                                                                         daemons: list[Daemon]) -> None:
    """On the wire: the pointer body exactly, and ExtendedPayloadSize as a Number (the document's bytes)."""
    dep = fresh(moto, "ptr")
    store = bucket(moto)
    d = Daemon(configure(cfg_path, moto, dep, s3_bucket=store, s3_prefix="r/", s3_threshold=1000), moto)
    daemons.append(d.start())
    publish(moto, dep, "chaos", "chaos:big:5000")
    (message,) = receive_all(moto.client("sqs"), dep.results_queue_url, 1)
    body = json.loads(message["Body"])
    assert body[0] == "software.amazon.payloadoffloading.PayloadS3Pointer"
    assert set(body[1]) == {"s3BucketName", "s3Key"} and body[1]["s3BucketName"] == store
    assert body[1]["s3Key"].startswith("r/")
    stored = moto.client("s3").get_object(Bucket=store, Key=body[1]["s3Key"])["Body"].read()
    size = message["MessageAttributes"]["ExtendedPayloadSize"]
    assert size == {"DataType": "Number", "StringValue": str(len(stored))}
    assert json.loads(stored)["result"] == "x" * 5000
    assert Inbox(moto, dep.results_queue_url).bodies() == []
    assert d.stop() == 0
