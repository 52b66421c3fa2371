"""End to end: failure records and message attributes, with a real sesshud and the real local server.

The input queue's redrive policy allows two receives, so a message given up
on has ``receives`` == 2 in its record, and its third receive moves it to
the dead-letter queue.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from sesshu.ops.provision import Deployment, queue_policy
from tests.harness.aws import BusServer, Inbox, MotoServer, free_port, poll, provision, publish
from tests.harness.daemon import Daemon, write_config


def subscribe(server: BusServer, topic: str, name: str, *, raw: bool, filter_policy: dict[str, Any] | None = None
              ) -> str:
    """A new queue subscribed to ``topic``; its URL."""
    sqs, sns = server.client("sqs"), server.client("sns")
    url = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": queue_policy(arn, topic)})
    attributes = {"RawMessageDelivery": "true" if raw else "false"}
    if filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(filter_policy)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    return url


def failures_topic(server: BusServer, dep: Deployment) -> tuple[str, str]:
    """A failures topic for ``dep``, and a raw queue that receives its records."""
    name = dep.queue_url.rsplit("/", 1)[1].removesuffix("-requests")
    topic = str(server.client("sns").create_topic(Name=f"{name}-failures")["TopicArn"])
    return topic, subscribe(server, topic, f"{name}-failures", raw=True)


def with_failures_topic(config: Path, topic: str) -> Path:
    doc = yaml.safe_load(config.read_text())
    doc["bus"]["output"]["failures_topic"] = topic
    config.write_text(yaml.safe_dump(doc))
    return config


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


def test_a_timeout_and_a_malformed_message_each_get_one_record_on_their_last_receive(
        moto: MotoServer, deployment: Deployment, cfg_path: Path, daemons: list[Daemon]) -> None:
    topic, records_url = failures_topic(moto, deployment)
    port = free_port()
    config = write_config(cfg_path, moto, deployment, workers={"timeout": 1},
                          metrics={"address": "127.0.0.1", "port": port})
    d = Daemon(with_failures_topic(config, topic), moto)
    daemons.append(d.start())
    hang = "chaos:hang://panorama:hunter2@example.com/"
    publish(moto, deployment, "chaos", hang)
    malformed = "not json at all; see ftp://admin:s3cret@files.example/"
    malformed_id = moto.client("sqs").send_message(QueueUrl=deployment.queue_url, MessageBody=malformed)["MessageId"]

    dead = Inbox(moto, deployment.dlq_url)
    bodies = dead.wait(2, timeout=120)
    assert malformed in bodies
    assert any(json.loads(b).get("Message", "").find("hunter2") > 0 for b in bodies if b != malformed)
    # Each record is published before its message's last release, so by now every one is there.
    records = [json.loads(b) for b in Inbox(moto, records_url).bodies()]
    assert len(records) == 2, records
    by_outcome = {r["failure"]["outcome"]: r for r in records}

    timed_out = by_outcome["retried"]
    assert timed_out["target"] == "chaos:hang://***@example.com/"
    assert timed_out["plugin"] == "chaos"
    failure = timed_out["failure"]
    assert failure["reason"] == "timeout" and failure["receives"] == 2
    assert "timed out" in failure["detail"] and "hunter2" not in failure["detail"]
    assert failure["host"] and failure["at"].endswith("Z") and failure["message_id"]

    rejected = by_outcome["rejected"]
    assert rejected["target"] is None and rejected["plugin"] is None
    assert rejected["body"] == "not json at all; see ftp://***@files.example/"
    assert rejected["failure"]["reason"] == "invalid" and rejected["failure"]["receives"] == 2
    assert rejected["failure"]["message_id"] == malformed_id
    assert "s3cret" not in json.dumps(records) and "hunter2" not in json.dumps(records)

    d.wait_log(rf"INFO sesshu\.bus\.outbox: failure record published for message {malformed_id}")
    assert len(d.wait_log(r"failure record published for message", count=2)) == 2
    assert poll(lambda: metric(port, "sesshu_failures_published_total") == 2.0, timeout=10,
                what="the failures metric at 2")
    assert "hunter2" not in d.log() and "s3cret" not in d.log()
    assert d.stop() == 0


def test_without_a_redrive_policy_failures_topic_warns_at_start(
        moto: MotoServer, cfg_path: Path, daemons: list[Daemon]) -> None:
    dep = provision(moto, f"nodlq{time.monotonic_ns()}", max_receive=None)
    topic, _ = failures_topic(moto, dep)
    d = Daemon(with_failures_topic(write_config(cfg_path, moto, dep), topic), moto)
    daemons.append(d.start())
    d.wait_log(r"WARNING .*bus\.output\.failures_topic is set, but the queue's redrive policy is unknown or "
               r"absent: without one no receive is the last")
    assert d.stop() == 0


def test_a_missing_failures_topic_is_a_config_error(moto: MotoServer, deployment: Deployment,
                                                     cfg_path: Path) -> None:
    absent = deployment.results_topic + "-failures-absent"
    d = Daemon(with_failures_topic(write_config(cfg_path, moto, deployment), absent), moto)
    d.start(wait_ready=False)
    try:
        assert d.wait(120) == 1
    finally:
        d.kill_all()
    assert d.log().strip().splitlines()[-1].startswith(
        f"sesshud: config error: bus.output.failures_topic: no topic '{absent}'")


def test_results_carry_attributes_and_a_filter_policy_picks_one_plugin(
        moto: MotoServer, deployment: Deployment, cfg_path: Path, daemons: list[Daemon]) -> None:
    name = deployment.queue_url.rsplit("/", 1)[1]
    enveloped = subscribe(moto, deployment.results_topic, f"{name}-env", raw=False)
    only_hog = subscribe(moto, deployment.results_topic, f"{name}-hog", raw=True,
                         filter_policy={"plugin": ["hog"]})
    d = Daemon(write_config(cfg_path, moto, deployment, plugin=["chaos", "hog"]), moto)
    daemons.append(d.start())
    publish(moto, deployment, "chaos", "chaos:echo:a", "chaos:echo:b")
    publish(moto, deployment, "hog", "hog:echo:c")

    everything = Inbox(moto, deployment.results_queue_url)
    everything.wait_for({"chaos:echo:a", "chaos:echo:b", "hog:echo:c"})
    envelopes = [json.loads(b) for b in Inbox(moto, enveloped).wait(3)]
    attrs = {json.loads(e["Message"])["target"]: e["MessageAttributes"] for e in envelopes}
    assert attrs["hog:echo:c"]["plugin"] == {"Type": "String", "Value": "hog"}
    assert attrs["chaos:echo:a"]["plugin"] == {"Type": "String", "Value": "chaos"}
    for given in attrs.values():
        assert given["outcome"] == {"Type": "String", "Value": "done"}
        assert given["sesshu_version"]["Type"] == "String" and given["sesshu_version"]["Value"]
        assert "ExtendedPayloadSize" not in given

    # The filtered queue was delivered to when the others were: it holds only hog's result.
    filtered = [json.loads(b)["target"] for b in Inbox(moto, only_hog).bodies()]
    assert filtered == ["hog:echo:c"]
    assert d.stop() == 0


def test_a_plugins_reject_dead_letters_at_once_and_its_record_carries_the_reason(
        moto: MotoServer, deployment: Deployment, cfg_path: Path, daemons: list[Daemon]) -> None:
    topic, records_url = failures_topic(moto, deployment)
    d = Daemon(with_failures_topic(write_config(cfg_path, moto, deployment), topic), moto)
    daemons.append(d.start())
    publish(moto, deployment, "chaos", "chaos:never")
    publish(moto, deployment, "chaos", "chaos:refuse")
    # Released at once on each receive (no backoff), so redrive moves them on the next one.
    dead = Inbox(moto, deployment.dlq_url).wait(2, timeout=60)
    assert sorted(json.loads(json.loads(b)["Message"])["target"] for b in dead) == ["chaos:never", "chaos:refuse"]
    records = {r["target"]: r["failure"] for r in (json.loads(b) for b in Inbox(moto, records_url).wait(2))}
    assert records["chaos:never"]["outcome"] == "rejected" and records["chaos:never"]["reason"] == "invalid"
    assert records["chaos:never"]["detail"] == "rejected by the plugin: gone for good"
    assert records["chaos:refuse"]["detail"] == "rejected by the plugin: refused in validate"
    d.wait_log(r"rejected: chaos chaos:never: rejected by the plugin: gone for good; message \S+ left for the "
               r"dead-letter queue \(receive 2 of 2\)")
    assert "retried:" not in d.log()
