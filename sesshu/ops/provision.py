"""Creating the queues and topics of one Sesshu deployment, idempotently.

A deployment called NAME is:

* ``NAME-requests``, the input queue, with ``NAME-dlq`` as its dead-letter
  queue (a RedrivePolicy after ``max_receive`` receives);
* the ``NAME-requests`` topic, subscribed to the input queue, so producers
  can publish requests instead of knowing the queue;
* the ``NAME-results`` topic the workers publish to, and a ``NAME-results``
  queue subscribed to it with raw delivery, for ``sesshu results``, or for
  a consumer that reads it with AWS's SQS extended client (which needs the
  raw messages, attributes and all, to find results stored in S3).

Running it again converges instead of failing: existing queues get their
attributes set, existing subscriptions are found and updated, never added
twice. ``etc/cloudformation/sesshu.yaml`` builds the same resources for
production; this is the quick path for tests, demos and small setups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from sesshu.ops import aws


@dataclass
class Deployment:
    """The resources of one deployment (what ``sesshu provision`` makes)."""

    queue_url: str
    dlq_url: str
    requests_topic: str
    results_topic: str
    results_queue_url: str


def provision(
    sqs: Any,
    sns: Any,
    name: str,
    *,
    visibility: int = 60,
    max_receive: int | None = 3,
    raw: bool = False,
) -> Deployment:
    """Create (or converge) the resources of deployment ``name``.

    ``max_receive=None`` still makes the DLQ but gives the input queue no
    redrive policy, for tests of the daemon's own retry backoff.
    """
    dlq_url = _ensure_queue(sqs, f"{name}-dlq", {})
    attrs = {"VisibilityTimeout": str(visibility)}
    if max_receive is not None:
        redrive = {"deadLetterTargetArn": aws.queue_arn(sqs, dlq_url), "maxReceiveCount": max_receive}
        attrs["RedrivePolicy"] = json.dumps(redrive)
    else:
        # An empty policy is how SQS removes one, so a re-run converges.
        attrs["RedrivePolicy"] = ""
    queue_url = _ensure_queue(sqs, f"{name}-requests", attrs)
    results_queue_url = _ensure_queue(sqs, f"{name}-results", {})
    requests_topic = str(sns.create_topic(Name=f"{name}-requests")["TopicArn"])
    results_topic = str(sns.create_topic(Name=f"{name}-results")["TopicArn"])
    # Results are always raw: readers want the document, not an envelope, and
    # the SQS extended client finds ExtendedPayloadSize only among the message's own attributes.
    _connect(sqs, sns, requests_topic, queue_url, raw=raw)
    _connect(sqs, sns, results_topic, results_queue_url, raw=True)
    return Deployment(queue_url, dlq_url, requests_topic, results_topic, results_queue_url)


def _ensure_queue(sqs: Any, name: str, attrs: dict[str, str]) -> str:
    # CreateQueue refuses an existing queue whose attributes differ, so look
    # the queue up first and set the attributes on what is there.
    try:
        url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        create = {k: v for k, v in attrs.items() if v}
        return str(sqs.create_queue(QueueName=name, Attributes=create)["QueueUrl"])
    if attrs:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)
    return url


def _connect(sqs: Any, sns: Any, topic: str, queue_url: str, *, raw: bool) -> None:
    """Let ``topic`` deliver to the queue, and subscribe the queue exactly once."""
    queue_arn = aws.queue_arn(sqs, queue_url)
    # Real SQS drops SNS deliveries unless the queue's policy allows them.
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": queue_policy(queue_arn, topic)})
    raw_value = "true" if raw else "false"
    existing = _find_subscription(sns, topic, queue_arn)
    if existing is None:
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                      Attributes={"RawMessageDelivery": raw_value})
    else:
        # Subscribe with different attributes is an error on AWS; update instead.
        sns.set_subscription_attributes(SubscriptionArn=existing, AttributeName="RawMessageDelivery",
                                        AttributeValue=raw_value)


def _find_subscription(sns: Any, topic: str, queue_arn: str) -> str | None:
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
        for sub in page.get("Subscriptions", []):
            arn = sub.get("SubscriptionArn", "")
            # A subscription awaiting confirmation has no ARN yet.
            if sub.get("Protocol") == "sqs" and sub.get("Endpoint") == queue_arn and arn.startswith("arn:"):
                return str(arn)
    return None


def filter_results(sqs: Any, sns: Any, deployment: Deployment, plugins: list[str]) -> None:
    """Let the results queue's subscription pass only results of ``plugins``; all of them when empty.

    The filter is on the ``plugin`` message attribute of each result. A
    re-run without plugins removes a filter set before (with ``{}``, as SNS
    documents), so ``sesshu provision`` still converges on what it was asked.
    """
    subscription = _find_subscription(sns, deployment.results_topic, aws.queue_arn(sqs, deployment.results_queue_url))
    if subscription is None:
        raise aws.LookupFailed(f"{deployment.results_queue_url} is not subscribed to {deployment.results_topic}")
    if plugins:
        sns.set_subscription_attributes(SubscriptionArn=subscription, AttributeName="FilterPolicyScope",
                                        AttributeValue="MessageAttributes")
        policy = json.dumps({"plugin": sorted(set(plugins))})
    else:
        current = sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
        if current.get("FilterPolicy", "{}") in ("", "{}"):
            return
        policy = "{}"
    sns.set_subscription_attributes(SubscriptionArn=subscription, AttributeName="FilterPolicy",
                                    AttributeValue=policy)


def queue_policy(queue_arn: str, topic_arn: str) -> str:
    """The queue policy allowing exactly ``topic_arn`` to send to the queue."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowTopic",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    })


def config_snippet(deployment: Deployment, region: str | None, endpoint_url: str | None = None) -> str:
    """The ``bus:`` block of sesshu.yaml for ``deployment``."""
    bus: dict[str, Any] = {}
    if region:
        bus["region"] = region
    if endpoint_url:
        bus["endpoint_url"] = endpoint_url
    bus["input"] = {"queue": deployment.queue_url}
    bus["output"] = {"topic": deployment.results_topic}
    body = yaml.safe_dump({"bus": bus}, sort_keys=False, default_flow_style=False)
    where = "".join(f" {flag} {value}" for flag, value in (("--region", region), ("--endpoint-url", endpoint_url))
                    if value)
    notes = (
        f"# Submit requests: sesshu submit PLUGIN TARGET --topic {deployment.requests_topic}{where}\n"
        f"# Read results:    sesshu results --queue {deployment.results_queue_url}{where}\n"
        f"# Dead letters:    {deployment.dlq_url}\n"
    )
    return notes + body
