"""AWS clients for the operator CLI, and looking up queues and topics by name.

Separate from ``sesshu.ops.cli`` so that the command line stays about commands;
boto3 is imported only when a client is made, for the same reason as there.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, Any

from sesshu.bus import formbody

if TYPE_CHECKING:
    from sesshu.ops.provision import Deployment

LONG_POLL = 20
TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}(\.fifo)?$")


class LookupFailed(Exception):
    """A queue or topic given by name that cannot be found: one line for the operator."""


def client(service: str, args: argparse.Namespace, resource: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # SNS wants the client in the topic's own region, so the region written in
    # the ARN (or queue URL) beats boto3's default; an explicit --region wins.
    region = args.region or (region_of(resource) if resource and resource.startswith("arn:") else None)
    config = Config(connect_timeout=5, read_timeout=LONG_POLL + 10, retries={"max_attempts": 3, "mode": "standard"})
    made = boto3.session.Session().client(service, region_name=region, endpoint_url=args.endpoint_url,
                                          config=config)
    return formbody.install(made) if service == "sns" else made


def topic_arn(sns: Any, topic: str) -> str:
    """``topic`` itself if it is an ARN; else the ARN of the topic of that name, or a clear refusal."""
    if topic.startswith("arn:"):
        if len(topic.split(":")) != 6:
            raise LookupFailed(f"{topic!r} is not a topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        return topic
    if not TOPIC_NAME_RE.match(topic):
        raise LookupFailed(f"{topic!r} is neither a topic ARN nor a topic name")
    # SNS has no GetTopicByName: the ARN's last part is the name.
    for page in sns.get_paginator("list_topics").paginate():
        for entry in page.get("Topics", []):
            arn = str(entry.get("TopicArn", ""))
            if arn.rsplit(":", 1)[-1] == topic:
                return arn
    raise LookupFailed(f"no topic named {topic!r} in {sns.meta.region_name} (give its ARN, or the right --region)")


def queue_url(sqs: Any, queue: str) -> str:
    """``queue`` itself if it is a URL; else the URL of the queue of that name, or a clear refusal."""
    if queue.startswith(("http://", "https://")):
        return queue
    try:
        return str(sqs.get_queue_url(QueueName=queue)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        where = sqs.meta.region_name
        raise LookupFailed(f"no queue named {queue!r} in {where} (give its URL, or the right --region)") from None


def region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


def filter_results(sqs: Any, sns: Any, deployment: Deployment, plugins: list[str]) -> None:
    """Let the results queue's subscription pass only results of ``plugins``; all of them when empty.

    The filter is on the ``plugin`` message attribute of each result. A
    re-run without plugins removes a filter set before (with ``{}``, as SNS
    documents), so ``sesshu provision`` still converges on what it was asked.
    """
    queue_arn = str(sqs.get_queue_attributes(QueueUrl=deployment.results_queue_url,
                                             AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    subscription = None
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=deployment.results_topic):
        for sub in page.get("Subscriptions", []):
            if sub.get("Endpoint") == queue_arn and str(sub.get("SubscriptionArn", "")).startswith("arn:"):
                subscription = str(sub["SubscriptionArn"])
    if subscription is None:
        raise LookupFailed(f"{deployment.results_queue_url} is not subscribed to {deployment.results_topic}")
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
