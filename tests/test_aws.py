"""``sesshu.ops.aws``: name lookups, the shared delete and release, and the stop signals.

Lookups, delete and release run against the session's SQS/SNS server; a fake
client stands in only for a call that fails as a whole, which the server
cannot be made to do on demand.
"""

from __future__ import annotations

import argparse
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sesshu.bus.api import BusError
from sesshu.ops import aws
from tests.harness.aws import REGION, BusServer


@pytest.fixture
def queue(bus_server: BusServer) -> Iterator[str]:
    name = f"aws{uuid.uuid4().hex[:10]}"
    sqs = bus_server.client("sqs")
    url = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    yield url
    sqs.delete_queue(QueueUrl=url)


def counts(server: BusServer, url: str) -> tuple[int, int]:
    """(visible, hidden) messages of the queue."""
    attrs = server.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def hide(server: BusServer, url: str, count: int) -> list[str]:
    """Send ``count`` messages and receive them all, hidden for a minute; their receipt handles."""
    sqs = server.client("sqs")
    for start in range(0, count, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"}
                                                      for i in range(min(10, count - start))])
    handles: list[str] = []
    while len(handles) < count:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        handles += [m["ReceiptHandle"] for m in reply.get("Messages", [])]
    return handles


def test_queue_url_takes_a_url_as_it_is_and_looks_a_name_up(bus_server: BusServer, queue: str) -> None:
    sqs = bus_server.client("sqs")
    assert aws.queue_url(sqs, "https://sqs.example/123/anything") == "https://sqs.example/123/anything"
    assert aws.queue_url(sqs, queue.rsplit("/", 1)[-1]) == queue
    with pytest.raises(aws.LookupFailed, match=f"no queue named 'absent-{queue[-5:]}' in {REGION}"):
        aws.queue_url(sqs, f"absent-{queue[-5:]}")


def test_queue_arn_names_the_queue(bus_server: BusServer, queue: str) -> None:
    arn = aws.queue_arn(bus_server.client("sqs"), queue)
    assert arn.startswith(f"arn:aws:sqs:{REGION}:") and arn.endswith(":" + queue.rsplit("/", 1)[-1])


def test_topic_arn_looks_a_name_up_and_refuses_what_it_cannot_find(bus_server: BusServer) -> None:
    sns = bus_server.client("sns")
    name = f"aws{uuid.uuid4().hex[:10]}"
    arn = str(sns.create_topic(Name=name)["TopicArn"])
    try:
        assert aws.topic_arn(sns, name) == arn
        assert aws.topic_arn(sns, arn) == arn
        for topic, words in [(name[:-1], "no topic named"), ("not a name", "neither"), ("arn:aws:sns:x", "not a")]:
            with pytest.raises(aws.LookupFailed, match=words):
                aws.topic_arn(sns, topic)
    finally:
        sns.delete_topic(TopicArn=arn)


def test_client_region_the_arn_names_unless_one_is_given() -> None:
    arn = "arn:aws:sns:eu-west-3:123456789012:t"
    args = argparse.Namespace(region=None, endpoint_url="http://127.0.0.1:1")
    assert aws.client("sns", args, arn).meta.region_name == "eu-west-3"
    args.region = "ap-south-1"
    assert aws.client("sns", args, arn).meta.region_name == "ap-south-1"
    assert aws.region_of("arn:aws:sns::1:t") is None


def test_delete_deletes_and_reports_what_stays(bus_server: BusServer, queue: str) -> None:
    sqs = bus_server.client("sqs")
    handles = hide(bus_server, queue, 3)
    failed = aws.delete(sqs, queue, [handles[0], "not-a-handle", handles[2]])
    assert list(failed) == [1] and "ReceiptHandleIsInvalid" in failed[1]
    assert counts(bus_server, queue) == (0, 1)


def test_release_makes_every_batch_visible_and_reports_by_index(bus_server: BusServer, queue: str) -> None:
    handles = hide(bus_server, queue, 13)
    assert counts(bus_server, queue) == (0, 13)
    # The bad handle is alone in the second batch: its index counts across batches.
    failed = aws.release(bus_server.client("sqs"), queue, [*handles[:10], "not-a-handle", *handles[10:]])
    assert list(failed) == [10] and "ReceiptHandleIsInvalid" in failed[10]
    assert counts(bus_server, queue) == (13, 0)


class BrokenFirstCall:
    """Fails the first visibility call as a whole (as a network error would), answers the rest."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([e["ReceiptHandle"] for e in Entries])
        if len(self.calls) == 1:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url=QueueUrl)
        return {}


def test_release_goes_on_after_a_batch_failed_as_a_whole() -> None:
    sqs = BrokenFirstCall()
    failed = aws.release(sqs, "q", [f"h{i}" for i in range(14)])
    assert sqs.calls == [[f"h{i}" for i in range(10)], [f"h{i}" for i in range(10, 14)]]
    assert sorted(failed) == list(range(10)) and "change_message_visibility_batch" in failed[0]


def test_delete_raises_a_call_that_failed_as_a_whole() -> None:
    class Broken:
        def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="q")

    with pytest.raises(BusError, match="delete_message_batch"):
        aws.delete(Broken(), "q", ["h0"])


def test_stop_signals_record_and_interrupt_only_when_asked() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with aws.StopSignals() as stop:
        signal.raise_signal(signal.SIGTERM)  # the handler has run when this returns
        assert stop.requested
        stop.interruptible = True
        with pytest.raises(aws.Stop):
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
