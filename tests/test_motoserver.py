"""The tests' moto server locks each queue: concurrent calls lose, repeat and fail nothing.

Each check runs three times on a new queue, as a race need not show at once.
Run on stock moto 5.2.6 here, receives delivered one message twice and every
round of DLQ moves answered 500; the delete race (seen by the bench at 64
workers: a batch of ten back after its visibility timeout) did not show at
these sizes, which keep the module under half a minute.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config

from tests.harness.aws import MotoServer, queue_depth


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def sqs_client(moto: MotoServer) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name="us-east-1").client(
        "sqs", endpoint_url=moto.url, config=Config(max_pool_connections=16, retries={"max_attempts": 1}))


def send(sqs: Any, queue: str, prefix: str, n: int) -> None:
    for i in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(j), "MessageBody": f"{prefix}{i + j}"}
                                                        for j in range(min(10, n - i))])


@pytest.mark.parametrize("round_", range(3))
def test_deletes_beside_deletes_and_sends_lose_nothing_and_bring_nothing_back(moto: MotoServer, round_: int) -> None:
    sqs = sqs_client(moto)
    # Stock moto's receive costs O(depth): a few hundred messages keep this quick.
    queue = sqs.create_queue(QueueName=f"deletes-{round_}", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    send(sqs, queue, "m", 200)
    handles: list[str] = []
    while len(handles) < 200:
        handles += [m["ReceiptHandle"] for m in
                    sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])]

    def delete(batch: list[str]) -> None:
        reply = sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(j), "ReceiptHandle": h}
                                                                  for j, h in enumerate(batch)])
        assert not reply.get("Failed")

    with ThreadPoolExecutor(12) as pool:
        done = [pool.submit(delete, handles[i:i + 10]) for i in range(0, 200, 10)]
        done += [pool.submit(send, sqs, queue, f"n{i}-", 10) for i in range(10)]
        for f in done:
            f.result()
    assert queue_depth(moto, queue) == 100  # every new message there, every deleted one gone


@pytest.mark.parametrize("round_", range(3))
def test_receives_side_by_side_deliver_each_message_once(moto: MotoServer, round_: int) -> None:
    sqs = sqs_client(moto)
    queue = sqs.create_queue(QueueName=f"receives-{round_}", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    send(sqs, queue, "m", 300)

    def take() -> list[str]:
        got: list[str] = []
        while True:
            msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return got
            got += [m["Body"] for m in msgs]

    with ThreadPoolExecutor(8) as pool:
        bodies = [b for f in [pool.submit(take) for _ in range(8)] for b in f.result()]
    counts = Counter(bodies)
    assert len(counts) == 300
    assert [b for b, n in counts.items() if n > 1] == []


@pytest.mark.parametrize("round_", range(3))
def test_receives_that_move_messages_to_the_dlq_side_by_side_fail_and_lose_nothing(
        moto: MotoServer, round_: int) -> None:
    sqs = sqs_client(moto)
    dlq = sqs.create_queue(QueueName=f"dlq-{round_}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=f"source-{round_}", Attributes={
        "VisibilityTimeout": "0",  # every message visible again at once: each receive counts
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    send(sqs, queue, "m", 300)

    def churn() -> int:
        errors = 0
        for _ in range(60):
            try:
                sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
            except sqs.exceptions.ClientError:
                errors += 1
        return errors

    with ThreadPoolExecutor(8) as pool:
        errors = sum(f.result() for f in [pool.submit(churn) for _ in range(8)])
    assert errors == 0
    # Whatever has not moved yet is still in the source queue; nothing vanished or doubled.
    assert queue_depth(moto, queue) + queue_depth(moto, dlq) == 300
