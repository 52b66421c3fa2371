"""The AWS-faults proxy keeps the calls whose answer was lost, and the soak reads the results they carried.

A publish whose connection is reset after the server had the whole request
may have been carried out; the daemon publishes it again, and the soak must
tell that duplicate from a bug. The upstream here is a socket that reads
one request and resets the connection, which is what the soak's outage does
to a publish in flight.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from tests.harness.aws import BusServer, Deployment
from tests.harness.awsfaults import AwsFaults
from tests.soak import Soak


class ResetAfterRequest:
    """Accepts connections, reads one whole HTTP request from each, then resets it."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")]
            length = lengths[0] if lengths else 0  # none: the client left early
            while len(body) < length and (chunk := conn.recv(65536)):
                body += chunk
            self.requests += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def faults() -> Iterator[AwsFaults]:
    upstream = ResetAfterRequest()
    with AwsFaults(upstream.port) as proxy:
        yield proxy
    upstream.close()


def sns_client(url: str) -> object:
    return boto3.client("sns", region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


TOPIC = "arn:aws:sns:us-east-1:123456789012:results"


def test_a_call_reset_after_the_server_had_it_is_kept_and_answered_502(faults: AwsFaults) -> None:
    sns = sns_client(faults.url)
    results = [{"target": f"t{i}", "plugin": "p", "result": i} for i in range(3)]
    # A 502 whose body is not AWS's XML: botocore cannot parse it, as with a load balancer's.
    with pytest.raises(ResponseParserError, match=r"aws-faults: .*reset"):
        sns.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=[  # type: ignore[attr-defined]
            {"Id": str(i), "Message": json.dumps(r)} for i, r in enumerate(results)])
    with pytest.raises(ResponseParserError):
        sns.publish(TopicArn=TOPIC, Message=json.dumps(results[0]))  # type: ignore[attr-defined]
    assert [op for op, _ in faults.unanswered] == ["sns:PublishBatch", "sns:Publish"]

    soak = Soak(argparse.Namespace(seed=1), Path("."))
    soak.faults = faults
    assert soak.lost_answers() == {"t0": 2, "t1": 1, "t2": 1}


def test_a_refused_call_never_reached_the_server_and_is_not_kept(faults: AwsFaults) -> None:
    faults.fail({"sns:Publish"})
    with pytest.raises(ClientError) as caught:
        sns_client(faults.url).publish(TopicArn=TOPIC, Message="{}")  # type: ignore[attr-defined]
    assert caught.value.response["Error"]["Code"] == "Throttling"
    assert faults.unanswered == []


def test_the_soak_explains_only_as_many_extra_results_as_lost_answers(faults: AwsFaults) -> None:
    soak = Soak(argparse.Namespace(seed=1), Path("."))
    soak.faults = faults
    soak.ledger.results.update({"once-lost": 2, "twice": 3, "unlogged": 1})
    soak.ledger.done_logged.update({"once-lost": 1, "twice": 1})
    lost = Counter({"once-lost": 1, "twice": 1})
    assert soak.explained("once-lost", lost)
    assert not soak.explained("twice", lost)
    assert not soak.explained("unlogged", lost)


def publish_calls(faults: AwsFaults, deployment: Deployment, calls: int) -> list[str]:
    """Publish through ``faults`` with the daemon's retries (four tries a call): each call's fate, in order."""
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=faults.url, aws_access_key_id="testing",
                       aws_secret_access_key="testing",
                       config=Config(retries={"max_attempts": 3, "mode": "standard"}))
    fates = []
    for i in range(calls):
        try:
            sns.publish(TopicArn=deployment.results_topic, Message=f"call {i}")
            fates.append("passed")
        except ClientError as exc:
            fates.append(exc.response["Error"]["Code"])
    return fates


def test_throttling_in_runs_fails_the_first_call_after_every_try_and_then_refuses_runs_of_requests(
        moto: BusServer, deployment: Deployment) -> None:
    """The first call fails after all of botocore's tries; after it, runs of two requests refused, two relayed.

    ``max_attempts: 3`` is three retries in botocore's config: four tries a call, as the daemon's.
    """
    with AwsFaults(moto.port) as faults:
        faults.fail({"sns:Publish"}, run=2)
        fates = publish_calls(faults, deployment, 3)
    # Requests 1-4 are the first call's tries, all refused (1-2 would be by the run anyway); 5-6 are
    # refused by the run, so the second call passes on its third try (7); the third passes at once (8).
    assert fates == ["Throttling", "passed", "passed"]
    assert (faults.refused["sns:Publish"], faults.relayed["sns:Publish"]) == (4 + 2, 2)


def test_throttling_in_runs_of_whole_calls_refuses_each_call_on_every_try_or_on_none(
        moto: BusServer, deployment: Deployment) -> None:
    """With ``calls``, runs of one: every other call fails after all four of botocore's tries, the rest pass at once."""
    with AwsFaults(moto.port) as faults:
        faults.fail({"sns:Publish"}, run=1, calls=True)
        fates = publish_calls(faults, deployment, 4)
    assert fates == ["Throttling", "passed", "Throttling", "passed"]
    assert (faults.refused["sns:Publish"], faults.relayed["sns:Publish"]) == (2 * 4, 2)
