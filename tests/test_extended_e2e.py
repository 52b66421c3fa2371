"""AWS's conventions on the bus, end to end with a real sesshud and AWS's own client libraries.

Results too large for SNS are read back by the SQS Extended Client Library
(``amazon-sqs-extended-client``) from a raw subscription; every result names
the MessageId of its request. Requests that producers stored in S3 with the
SNS or SQS extended client are processed; pointers that cannot or must not
be followed end *rejected*, with a failure record, and the daemon goes on.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from sesshu.bus.payloads import pointer_body
from sesshu.ops.provision import Deployment, queue_policy
from tests.harness.aws import BusServer, Inbox, extended_sns, extended_sqs, poll, provision, publish
from tests.harness.daemon import Daemon, write_config
from tests.test_failures_e2e import failures_topic


def fresh(server: BusServer, prefix: str, **kwargs: Any) -> Deployment:
    return provision(server, f"{prefix}{uuid.uuid4().hex[:8]}", **kwargs)


def bucket(server: BusServer) -> str:
    name = f"sesshu-{uuid.uuid4().hex[:10]}"
    server.client("s3").create_bucket(Bucket=name)
    return name


def configure(path: Path, server: BusServer, dep: Deployment, *, buckets: tuple[str, ...] = (),
              workers: dict[str, Any] | None = None, **output: Any) -> Path:
    bus = {"region": "us-east-1", "endpoint_url": server.url,
           "input": {"queue": dep.queue_url, "s3_buckets": list(buckets)},
           "output": {"topic": dep.results_topic, **output}}
    return write_config(path, server, dep, bus=bus, workers=workers or {})


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


def test_requests_sent_through_the_extended_clients_are_processed(moto: BusServer, cfg_path: Path,
                                                                  daemons: list[Daemon]) -> None:
    dep = fresh(moto, "req")  # the requests topic delivers in SNS envelopes
    store = bucket(moto)
    d = Daemon(configure(cfg_path, moto, dep, buckets=(store,)), moto)
    daemons.append(d.start())
    # Extra keys, as Panorama may add: 200 KiB of them, stored in S3 all the same.
    request = {"plugin": "chaos", "target": "chaos:echo:via-sns", "context": "c" * 200_000}
    extended_sns(moto, store).publish(TopicArn=dep.requests_topic, Message=json.dumps(request))
    extended_sqs(moto, store).send_message(QueueUrl=dep.queue_url, MessageBody=json.dumps(
        {"plugin": "chaos", "target": "chaos:echo:via-sqs"}))
    results = Inbox(moto, dep.results_queue_url)
    results.wait_for(["chaos:echo:via-sns", "chaos:echo:via-sqs"])
    assert d.stop() == 0
    assert "outcomes: done=2, empty=0, rejected=0, retried=0" in d.log()
    assert "get_object=2" in d.log() and "head_object=2" in d.log()


def send_pointer(server: BusServer, dep: Deployment, body: str, size: int) -> str:
    """A pointer sent as the SQS extended client sends one; its MessageId."""
    return str(server.client("sqs").send_message(QueueUrl=dep.queue_url, MessageBody=body, MessageAttributes={
        "ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(size)}})["MessageId"])


def records_of(server: BusServer, url: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The failure records that arrived on ``url`` for these messages, by message id, once all are there."""
    inbox = Inbox(server, url)
    poll(lambda: ids <= {json.loads(b)["failure"]["message_id"] for b in inbox.bodies()}, 60,
         interval=0.2, what=f"failure records of {sorted(ids)}")
    return {doc["failure"]["message_id"]: doc for doc in map(json.loads, inbox.raw)}


def test_hostile_pointers_are_rejected_and_the_daemon_goes_on(moto: BusServer, cfg_path: Path,
                                                             daemons: list[Daemon]) -> None:
    dep = fresh(moto, "bad", max_receive=1)  # the first receive is the last: a record at once
    topic, records_url = failures_topic(moto, dep)
    store, other = bucket(moto), bucket(moto)
    request = json.dumps({"plugin": "chaos", "target": "chaos:echo:hidden"}).encode()
    moto.client("s3").put_object(Bucket=other, Key="k", Body=request)  # readable by S3's rules, not by ours
    d = Daemon(configure(cfg_path, moto, dep, buckets=(store,), failures_topic=topic), moto)
    daemons.append(d.start())
    sent = {
        send_pointer(moto, dep, pointer_body(store, "missing"), 60): "cannot be read",
        send_pointer(moto, dep, pointer_body(other, "k"), len(request)):
            f"bucket {other} is not one of bus.input.s3_buckets",
        send_pointer(moto, dep, "junk" + pointer_body(store, "k") + "junk", 60): "not a JSON S3 pointer",
        send_pointer(moto, dep, pointer_body(store, "k"), 2 * 1024**3): "2147483648 bytes (ExtendedPayloadSize)",
    }
    records = records_of(moto, records_url, set(sent))
    for message_id, why in sent.items():
        failure = records[message_id]["failure"]
        assert failure["outcome"] == "rejected" and failure["reason"] == "invalid" and why in failure["detail"]
        d.wait_log(rf"WARNING sesshu\.jobs\.outcomes: rejected: .*{re.escape(why)}.*message {message_id} ")
    # The daemon went on as if nothing happened.
    publish(moto, dep, "chaos", "chaos:echo:after")
    Inbox(moto, dep.results_queue_url).wait_for(["chaos:echo:after"])
    assert d.stop() == 0
    assert "outcomes: done=1, empty=0, rejected=4, retried=0" in d.log()


def test_a_2_gb_object_is_refused_by_its_size_before_it_is_read(moto: BusServer, cfg_path: Path, tmp_path: Path,
                                                                daemons: list[Daemon]) -> None:
    """Whatever ExtendedPayloadSize says: the object's own size (HEAD) is checked before a byte is read."""
    dep = fresh(moto, "huge", max_receive=1)
    store = bucket(moto)
    s3 = moto.client("s3")
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as f:
        f.truncate(2 * 1024**3)  # 2 GiB that take no disk here (the server stores them as it likes)
    with sparse.open("rb") as f:
        s3.put_object(Bucket=store, Key="huge", Body=f)
    try:
        d = Daemon(configure(cfg_path, moto, dep, buckets=(store,)), moto)
        daemons.append(d.start())
        message_id = send_pointer(moto, dep, pointer_body(store, "huge"), 60)  # it lies about the size
        d.wait_log(rf"rejected: request: .* is 2147483648 bytes, over 262144.*message {message_id} ", timeout=60)
        assert d.stop() == 0
        assert "head_object=1" in d.log() and "get_object" not in d.log()
    finally:
        s3.delete_object(Bucket=store, Key="huge")


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_trace_context_crosses_the_daemon(moto: BusServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    """traceparent raw or enveloped, or AWSTraceHeader: the result continues the trace; junk is ignored."""
    dep = fresh(moto, "trace")
    config = configure(cfg_path, moto, dep)
    doc = yaml.safe_load(config.read_text())
    doc["logging"] = {"format": "json"}
    config.write_text(yaml.safe_dump(doc))
    d = Daemon(config, moto)
    daemons.append(d.start(wait_ready=False))  # JSON lines: the text "started" line never comes
    sqs, sns = moto.client("sqs"), moto.client("sns")

    def request(target: str) -> str:
        return json.dumps({"plugin": "chaos", "target": target})

    string = "String"
    sqs.send_message(QueueUrl=dep.queue_url, MessageBody=request("chaos:echo:raw"), MessageAttributes={
        "traceparent": {"DataType": string, "StringValue": f"00-{TRACE}-{PARENT}-01"}})
    sns.publish(TopicArn=dep.requests_topic, Message=request("chaos:echo:enveloped"), MessageAttributes={
        "traceparent": {"DataType": string, "StringValue": f"00-{TRACE[::-1]}-{PARENT}-00"}})
    sqs.send_message(QueueUrl=dep.queue_url, MessageBody=request("chaos:echo:xray"), MessageSystemAttributes={
        "AWSTraceHeader": {"DataType": string, "StringValue": f"Root=1-{TRACE[:8]}-{TRACE[8:]};Parent={PARENT};"
                                                               "Sampled=1"}})
    sqs.send_message(QueueUrl=dep.queue_url, MessageBody=request("chaos:echo:junk"), MessageAttributes={
        "traceparent": {"DataType": string, "StringValue": "00-not-a-trace"}})
    messages = receive_all(sqs, dep.results_queue_url, 4)
    traces = {json.loads(m["Body"])["target"]: m["MessageAttributes"].get("traceparent", {}).get("StringValue")
              for m in messages}
    assert traces["chaos:echo:junk"] is None
    expected = {"chaos:echo:raw": (TRACE, "01"), "chaos:echo:enveloped": (TRACE[::-1], "00"),
                "chaos:echo:xray": (TRACE, "01")}
    for target, (trace_id, flags) in expected.items():
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", traces[target] or "")
        assert m is not None and (m.group(1), m.group(3)) == (trace_id, flags), (target, traces[target])
        assert m.group(2) != PARENT
    assert d.stop() == 0
    lines = [json.loads(line) for line in d.log().splitlines() if line.startswith("{")]
    done = {line["target"]: line.get("trace_id") for line in lines if line.get("outcome") == "done"}
    assert done == {"chaos:echo:raw": TRACE, "chaos:echo:enveloped": TRACE[::-1], "chaos:echo:xray": TRACE,
                    "chaos:echo:junk": None}


def fifo(server: BusServer, prefix: str) -> tuple[str, str, str]:
    """A FIFO requests queue, a FIFO results topic and a FIFO queue subscribed to it raw: their URL, ARN, URL."""
    sqs, sns = server.client("sqs"), server.client("sns")
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    fifo_queue = {"FifoQueue": "true"}
    requests = str(sqs.create_queue(QueueName=f"{name}-requests.fifo", Attributes=fifo_queue)["QueueUrl"])
    topic = str(sns.create_topic(Name=f"{name}-results.fifo", Attributes={"FifoTopic": "true"})["TopicArn"])
    results = str(sqs.create_queue(QueueName=f"{name}-results.fifo", Attributes=fifo_queue)["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=results, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=results, Attributes={"Policy": queue_policy(arn, topic)})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return requests, topic, results


def test_fifo_groups_run_in_order_one_at_a_time_and_results_carry_their_ids(
        moto: BusServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    requests, topic, results = fifo(moto, "fifo")
    dep = Deployment(requests, requests, "", topic, results)
    # More workers than groups: one receive brings several messages of a group, and workers are idle for them.
    d = Daemon(configure(cfg_path, moto, dep, workers={"count": 4}), moto)
    daemons.append(d.start())
    sqs = moto.client("sqs")
    order = {group: [f"chaos:interval:0.2:{group}-{i}" for i in range(5)] for group in ("g1", "g2")}
    # Interleaved, in batches: one receive brings several messages of a group.
    entries = [{"Id": f"{group}{i}", "MessageBody": json.dumps({"plugin": "chaos", "target": target}),
                "MessageGroupId": group, "MessageDeduplicationId": f"{group}-{i}"}
               for i in range(5) for group, targets in order.items() for target in [targets[i]]]
    ids = {}
    for chunk in (entries[:6], entries[6:]):
        reply = sqs.send_message_batch(QueueUrl=requests, Entries=chunk)
        assert not reply.get("Failed"), reply["Failed"]
        ids.update({e["Id"]: e["MessageId"] for e in reply["Successful"]})
    got = receive_fifo(sqs, results, 10)
    assert d.stop() == 0
    for group, targets in order.items():
        mine = [(json.loads(m["Body"]), m) for m in got if m["Attributes"]["MessageGroupId"] == group]
        assert [doc["target"] for doc, _ in mine] == targets  # in order
        for i, (doc, m) in enumerate(mine):
            # The request's MessageId: deduplication on the wire, and message_id in the document.
            assert doc["message_id"] == ids[f"{group}{i}"] == m["Attributes"]["MessageDeduplicationId"]
        runs = [doc["result"] for doc, _ in mine]
        for earlier, later in itertools.pairwise(runs):
            assert later["started"] >= earlier["ended"]  # never two at once
    assert "outcomes: done=10, empty=0, rejected=0, retried=0" in d.log()


def receive_fifo(sqs: Any, url: str, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    def more() -> bool:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    MessageSystemAttributeNames=["All"])
        messages = reply.get("Messages", [])
        got.extend(messages)
        if messages:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        return len(got) >= n

    poll(more, 90, interval=0.1, what=f"{n} results on {url}")
    return got
