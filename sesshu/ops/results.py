"""``sesshu results``: reading what the daemon published, one JSON document a line.

It receives from a queue subscribed to the results topic, prints each result
as published (the SNS envelope removed, a result stored in S3 read back from
its pointer), and deletes what it printed, or with ``--keep`` makes it visible
again on exit. What cannot be read is printed as it came, with a warning.

Like ``sesshu.ops.cli``, nothing here imports boto3 at module level: the parser
imports this module in every ``sesshu`` run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sesshu.bus import payloads
from sesshu.bus.api import BATCH_MAX
from sesshu.ops import aws as opaws

MAX_STORED_BYTES = 64 * 1024 * 1024  # of a result stored in S3 (the daemon stores at most 32 MiB of result)


class ResultsError(Exception):
    """Kept messages that could not be made visible again: one line for the operator."""


def cmd_results(args: argparse.Namespace) -> int:
    sqs, args.queue = opaws.open_queue(args, args.queue)
    s3: list[Any] = []  # made on the first result stored in S3
    seen: set[str] = set()
    kept: list[str] = []  # receipt handles to make visible again, under --keep
    empty = 0
    with opaws.StopSignals() as stop:
        try:
            while not stop.requested and (args.follow or empty < opaws.EMPTY_RECEIVES):
                try:
                    stop.interruptible = True
                    if stop.requested:
                        break
                    reply = sqs.receive_message(QueueUrl=args.queue, MaxNumberOfMessages=BATCH_MAX,
                                                WaitTimeSeconds=opaws.LONG_POLL if args.follow else 0,
                                                MessageAttributeNames=list(payloads.SIZE_ATTRIBUTES))
                except opaws.Stop:
                    break
                finally:
                    stop.interruptible = False
                messages = [m for m in reply.get("Messages", []) if m["MessageId"] not in seen]
                if not reply.get("Messages"):
                    empty += 1
                    continue
                if not messages:
                    break  # only messages already printed came back: --keep has seen everything
                empty = 0
                for m in messages:
                    print(_result_line(_stored(args, s3, m)))
                sys.stdout.flush()
                handles = [m["ReceiptHandle"] for m in messages]
                seen.update(m["MessageId"] for m in messages)
                if args.keep:
                    kept.extend(handles)
                elif failed := opaws.delete(sqs, args.queue, handles):
                    print(f"sesshu: warning: {len(failed)} printed message(s) not deleted: "
                          f"{next(iter(failed.values()))}", file=sys.stderr)
        finally:
            # Kept messages were hidden by our receives; let other readers see them now.
            if failed := opaws.release(sqs, args.queue, kept):
                raise ResultsError(f"{len(failed)} kept message(s) not made visible again: "
                                   f"{next(iter(failed.values()))}")
    return 0


def _stored(args: argparse.Namespace, s3: list[Any], message: dict[str, Any]) -> str:
    """A result message's body; for a result stored in S3 (an extended-client pointer), the stored document."""
    body = str(message.get("Body", ""))
    attributes = {name: str(a.get("StringValue", "")) for name, a in message.get("MessageAttributes", {}).items()}
    size = payloads.declared(attributes)
    if size is None:  # maybe an SNS envelope, whose attributes are inside
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        found = payloads.in_envelope(doc) if isinstance(doc, dict) else None
        if found is None:
            return body
        body, size = found
    # What cannot be read is printed as it came (the pointer), with a warning.
    try:
        pointer = payloads.parse(body, size)
    except payloads.BadPointer as exc:
        print(f"sesshu: warning: message {message.get('MessageId')}: {exc}", file=sys.stderr)
        return body
    if not s3:
        s3.append(opaws.client("s3", args, None))
    where = f"s3://{pointer.bucket}/{pointer.key}"
    try:
        stored = s3[0].get_object(Bucket=pointer.bucket, Key=pointer.key)["Body"].read(MAX_STORED_BYTES + 1)
    except Exception as exc:  # noqa: BLE001 - botocore's errors and a lost connection alike
        print(f"sesshu: warning: message {message.get('MessageId')}: cannot read {where}: {exc}", file=sys.stderr)
        return body
    if len(stored) > MAX_STORED_BYTES:
        print(f"sesshu: warning: message {message.get('MessageId')}: {where} is over {MAX_STORED_BYTES} bytes",
              file=sys.stderr)
        return body
    return bytes(stored).decode("utf-8", "replace")


def _result_line(body: str) -> str:
    text = body
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
            text = doc["Message"]
            doc = json.loads(text)
    except ValueError:
        return " ".join(text.splitlines())
    # Print the document as published unless it would break one-per-line.
    return text if "\n" not in text else json.dumps(doc)
