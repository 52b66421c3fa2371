"""The baseline worker: a plain batched boto3 loop, no isolation, no bookkeeping.

``python -m bench.rawloop --endpoint URL --queue URL --topic ARN`` receives up
to ``--batch`` messages, runs the same no-op plugin in-process, publishes the
results (``PublishBatch``, or ``Publish`` for one) and deletes the messages
in one batch, until SIGTERM (which ends it at once). It is the "raw" side of the throughput and
latency comparisons. Like real SNS, it never puts more than 256 KiB into one
``PublishBatch``: large results go in smaller batches, or one ``Publish`` each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import Iterator
from types import FrameType

from bench.feeder import client
from bench.plugins import noop

BATCH_BYTES = 256 * 1024  # SNS: the total of one PublishBatch's messages


def batches(docs: list[str], limit: int = BATCH_BYTES) -> Iterator[list[str]]:
    """``docs`` in order, in groups of at most 10 whose sizes add up to at most ``limit``."""
    group: list[str] = []
    size = 0
    for doc in docs:
        n = len(doc.encode())
        if group and (len(group) == 10 or size + n > limit):
            yield group
            group, size = [], 0
        group.append(doc)
        size += n
    if group:
        yield group


def _on_term(signum: int, frame: FrameType | None) -> None:
    # Leave at once, even from inside a 20 s long poll: the measurement is over.
    os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser(description="raw batched boto3 worker loop")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--wait", type=int, default=1, help="long-poll seconds")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    sqs, sns = client("sqs", args.endpoint), client("sns", args.endpoint)
    while True:
        messages = sqs.receive_message(QueueUrl=args.queue, MaxNumberOfMessages=args.batch,
                                       WaitTimeSeconds=args.wait,
                                       MessageSystemAttributeNames=["ApproximateReceiveCount"]
                                       ).get("Messages", [])
        if not messages:
            continue
        docs = []
        for m in messages:
            req = json.loads(m["Body"])
            result = noop.fetch(req["target"])
            docs.append(json.dumps({"target": req["target"], "plugin": req["plugin"], "message_id": m["MessageId"],
                                    "result": result}, separators=(",", ":")))
        for group in batches(docs):
            if len(group) == 1:
                sns.publish(TopicArn=args.topic, Message=group[0])
            else:
                sns.publish_batch(TopicArn=args.topic, PublishBatchRequestEntries=[
                    {"Id": str(i), "Message": d} for i, d in enumerate(group)])
        sqs.delete_message_batch(QueueUrl=args.queue, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])


if __name__ == "__main__":
    main()
