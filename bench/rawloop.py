"""The baseline worker: a plain batched boto3 loop, no isolation, no bookkeeping.

``python -m bench.rawloop --endpoint URL --queue URL --topic ARN`` receives up
to ``--batch`` messages, runs the same no-op plugin in-process, publishes the
results (``PublishBatch``, or ``Publish`` for one) and deletes the messages
in one batch, until SIGTERM (which ends it at once). It is the "raw" side of the throughput and
latency comparisons.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from types import FrameType

from bench.feeder import client
from bench.plugins import noop


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
            docs.append(json.dumps({"target": req["target"], "plugin": req["plugin"], "result": result},
                                   separators=(",", ":")))
        if len(docs) == 1:
            sns.publish(TopicArn=args.topic, Message=docs[0])
        else:
            sns.publish_batch(TopicArn=args.topic, PublishBatchRequestEntries=[
                {"Id": str(i), "Message": d} for i, d in enumerate(docs)])
        sqs.delete_message_batch(QueueUrl=args.queue, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])


if __name__ == "__main__":
    main()
