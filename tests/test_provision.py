"""``sesshu.ops.provision`` called directly against the session's SQS/SNS server.

``tests/test_ops_cli.py`` runs ``sesshu provision`` as a process; here each
function is held to what its docstring says: a re-run converges, every queue
is subscribed once, and the results filter comes and goes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

from sesshu.config.model import from_mapping
from sesshu.ops import aws
from sesshu.ops.provision import Deployment, config_snippet, filter_results, provision, queue_policy
from tests.harness.aws import REGION, BusServer


@pytest.fixture
def name() -> str:
    return f"pv{uuid.uuid4().hex[:10]}"


def make(server: BusServer, name: str, **kwargs: Any) -> Deployment:
    return provision(server.client("sqs"), server.client("sns"), name, **kwargs)


def attributes(server: BusServer, url: str) -> dict[str, str]:
    return dict(server.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def subscriptions(server: BusServer, topic: str) -> list[dict[str, str]]:
    sns = server.client("sns")
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    return [dict(sns.get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])["Attributes"]) for s in subs]


def test_a_rerun_converges_and_subscribes_each_queue_once(bus_server: BusServer, name: str) -> None:
    first = make(bus_server, name, visibility=45, max_receive=4)
    redrive = json.loads(attributes(bus_server, first.queue_url)["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": aws.queue_arn(bus_server.client("sqs"), first.dlq_url),
                       "maxReceiveCount": 4}

    again = make(bus_server, name, visibility=90, max_receive=None, raw=True)
    assert again == first
    attrs = attributes(bus_server, again.queue_url)
    assert attrs["VisibilityTimeout"] == "90" and not attrs.get("RedrivePolicy")
    [to_queue] = subscriptions(bus_server, again.requests_topic)
    [to_results] = subscriptions(bus_server, again.results_topic)
    assert to_queue["RawMessageDelivery"] == "true" and to_results["RawMessageDelivery"] == "true"
    assert to_queue["Endpoint"].endswith(f":{name}-requests") and to_results["Endpoint"].endswith(f":{name}-results")


def test_the_queue_policy_lets_in_exactly_its_topic(bus_server: BusServer, name: str) -> None:
    d = make(bus_server, name)
    arn = aws.queue_arn(bus_server.client("sqs"), d.queue_url)
    policy = json.loads(attributes(bus_server, d.queue_url)["Policy"])
    assert policy == json.loads(queue_policy(arn, d.requests_topic))
    [statement] = policy["Statement"]
    assert statement["Resource"] == arn
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": d.requests_topic}}


def test_filter_results_sets_and_removes_the_plugin_filter(bus_server: BusServer, name: str) -> None:
    sqs, sns = bus_server.client("sqs"), bus_server.client("sns")
    d = make(bus_server, name)
    filter_results(sqs, sns, d, ["http_robots", "chaos", "chaos"])
    [sub] = subscriptions(bus_server, d.results_topic)
    assert json.loads(sub["FilterPolicy"]) == {"plugin": ["chaos", "http_robots"]}
    filter_results(sqs, sns, d, [])
    [sub] = subscriptions(bus_server, d.results_topic)
    assert sub.get("FilterPolicy", "{}") == "{}"


def test_filter_results_refuses_a_queue_that_is_not_subscribed(bus_server: BusServer, name: str) -> None:
    sqs, sns = bus_server.client("sqs"), bus_server.client("sns")
    d = make(bus_server, name)
    for sub in sns.list_subscriptions_by_topic(TopicArn=d.results_topic)["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    with pytest.raises(aws.LookupFailed, match="is not subscribed to"):
        filter_results(sqs, sns, d, ["chaos"])


def test_the_config_snippet_is_a_bus_block_for_this_deployment(bus_server: BusServer, name: str) -> None:
    d = make(bus_server, name)
    snippet = config_snippet(d, REGION, bus_server.url)
    config = from_mapping({"plugin": ["http_robots"], **yaml.safe_load(snippet)})
    assert (config.queue, config.topic) == (d.queue_url, d.results_topic)
    assert (config.region, config.endpoint_url) == (REGION, bus_server.url)
    assert f"--topic {d.requests_topic} --region {REGION} --endpoint-url {bus_server.url}" in snippet
    assert "region" not in yaml.safe_load(config_snippet(d, None))["bus"]
