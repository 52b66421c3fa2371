"""The bus over Amazon SQS (input) and SNS (output), with boto3.

Only the supervisor process imports this module. Credentials come from
boto3's default chain alone. Every call has bounded connect and read
timeouts, so a hung endpoint cannot hold a bus thread for ever.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from sesshu.bus import formbody
from sesshu.bus.api import (
    BATCH_MAX,
    DEFAULT_GROUP,
    FIFO_SUFFIX,
    BusError,
    Delete,
    Fault,
    Message,
    Publish,
    QueueInfo,
    Visibility,
    is_denied,
    is_permanent,
    wire_attributes,
)

CONNECT_TIMEOUT = 5
_XML_CODE = re.compile(r"<Code>([A-Za-z0-9_.:-]{1,100})</Code>")
READ_TIMEOUT = 10
MAX_POLL = 20


class SqsSnsBus:
    def __init__(
        self,
        queue: str,
        topic: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        poll_seconds: int = MAX_POLL,
        on_call: Callable[[str, str | None], None] | None = None,  # (operation, error code or None), any thread
        connections: int = 4,  # per client: at least the calls that may be in flight at once
        failures_topic: str | None = None,
        on_failures_published: Callable[[int], None] | None = None,  # records SNS took, from any thread
    ) -> None:
        session = boto3.session.Session(region_name=region)
        # Receives get their own client: its read timeout must outlast the
        # long poll, while every other call should give up on a hung
        # endpoint much sooner.
        def config(read_timeout: int, tries: int = 4) -> BotoConfig:
            return BotoConfig(connect_timeout=CONNECT_TIMEOUT, read_timeout=read_timeout,
                              retries={"total_max_attempts": tries, "mode": "standard"},
                              max_pool_connections=connections)

        self._receiver = session.client("sqs", endpoint_url=endpoint_url, config=config(poll_seconds + 10))
        self.max_wait = poll_seconds
        self._sqs = session.client("sqs", endpoint_url=endpoint_url, config=config(READ_TIMEOUT))
        # Visibility changes are tried once: botocore's backoffs between tries
        # can outlast the heartbeat's margin, and the message would lapse while
        # its extension waits. The outbox retries a failed one within 2 s.
        self._heartbeat = session.client("sqs", endpoint_url=endpoint_url, config=config(READ_TIMEOUT, tries=1))
        self._sns = formbody.install(session.client("sns", endpoint_url=endpoint_url, config=config(READ_TIMEOUT)))
        self._session, self._endpoint_url = session, endpoint_url
        self._s3: Any = None  # made on first use: most deployments never need it
        self.topic = topic
        self.failures_topic = failures_topic
        self._on_failures_published = on_failures_published
        self.requests: Counter[str] = Counter()
        self._on_call = on_call
        self._lock = threading.Lock()
        self.queue_url = queue if queue.startswith(("http://", "https://")) else self._queue_url(queue)

    def _count(self, operation: str, error: str | None) -> None:
        with self._lock:
            self.requests[operation] += 1
        if self._on_call is not None:
            self._on_call(operation, error)

    def _call(self, client: Any, operation: str, **kwargs: Any) -> Any:
        try:
            reply = call(client, operation, **kwargs)
        except BusError as exc:
            self._count(operation, exc.code)
            raise
        self._count(operation, None)
        return reply

    def _queue_url(self, name: str) -> str:
        return str(self._call(self._sqs, "get_queue_url", QueueName=name)["QueueUrl"])

    def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        reply = self._call(
            self._receiver,
            "receive_message",
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(max_messages, BATCH_MAX)),
            WaitTimeSeconds=min(wait_seconds, self.max_wait),
            MessageSystemAttributeNames=["ApproximateReceiveCount", "AWSTraceHeader", "MessageGroupId"],
            MessageAttributeNames=["All"],
        )
        return [_message(m) for m in reply.get("Messages", [])]

    def publish(self, entries: list[Publish]) -> dict[str, str]:
        return publish_entries(self._call, self._sns, self.topic, entries)

    def publish_failures(self, entries: list[Publish]) -> dict[str, str]:
        if self.failures_topic is None:
            raise BusError("no failures topic (bus.output.failures_topic)", "InvalidParameter")
        failed = publish_entries(self._call, self._sns, self.failures_topic, entries)
        if self._on_failures_published is not None and len(failed) < len(entries):
            self._on_failures_published(len(entries) - len(failed))
        return failed

    def delete(self, entries: list[Delete]) -> dict[str, str]:
        reply = self._call(
            self._sqs,
            "delete_message_batch",
            QueueUrl=self.queue_url,
            Entries=[{"Id": e.entry_id, "ReceiptHandle": e.receipt_handle} for e in entries],
        )
        return batch_failures(reply)

    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        reply = self._call(
            self._heartbeat,
            "change_message_visibility_batch",
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": e.entry_id, "ReceiptHandle": e.receipt_handle, "VisibilityTimeout": e.seconds}
                for e in entries
            ],
        )
        return batch_failures(reply)

    def queue_info(self) -> QueueInfo:
        reply = self._call(
            self._sqs,
            "get_queue_attributes",
            QueueUrl=self.queue_url,
            AttributeNames=["VisibilityTimeout", "RedrivePolicy"],
        )
        attrs = reply.get("Attributes", {})
        max_receive: int | None = None
        if "RedrivePolicy" in attrs:
            try:
                max_receive = int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"])
            except (ValueError, KeyError, TypeError):
                max_receive = None
        visibility = attrs.get("VisibilityTimeout")
        return QueueInfo(int(visibility) if visibility is not None else None, max_receive)

    def put_object(self, bucket: str, key: str, body: str) -> None:
        self._call(self._s3_client(), "put_object", Bucket=bucket, Key=key, Body=body.encode(),
                   ContentType="application/json")

    def get_object(self, bucket: str, key: str, max_bytes: int) -> str:
        s3 = self._s3_client()
        where = f"s3://{bucket}/{key}"
        try:
            # The size first: a 2 GB object is refused without reading a byte of it.
            head = self._call(s3, "head_object", Bucket=bucket, Key=key)
            size = int(head.get("ContentLength", 0))
            if size > max_bytes:
                raise BusError(f"{where} is {size} bytes, over {max_bytes}", "EntityTooLarge")
            reply = self._call(s3, "get_object", Bucket=bucket, Key=key)
            with reply["Body"] as stream:
                data = stream.read(max_bytes + 1)  # it may have grown since the HEAD
        except BusError as exc:
            # HEAD answers carry no body, so botocore knows only the status.
            code, said = _HEAD_CODES.get(exc.code, (exc.code, str(exc)))
            raise BusError(said, code, exc.status) from exc
        except (BotoCoreError, OSError) as exc:  # the stream broke while it was read
            raise BusError(f"get_object {where}: {exc}", type(exc).__name__) from exc
        if len(data) > max_bytes:
            raise BusError(f"{where} is over {max_bytes} bytes", "EntityTooLarge")
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise BusError(f"{where} is not UTF-8 text", "InvalidMessageContents") from None

    def _s3_client(self) -> Any:
        with self._lock:  # pollers read requests' payloads while senders store results
            if self._s3 is None:
                self._s3 = self._make_s3()
        return self._s3

    def _make_s3(self) -> Any:
        return self._session.client("s3", endpoint_url=self._endpoint_url, config=BotoConfig(
                connect_timeout=CONNECT_TIMEOUT, read_timeout=60, retries={"total_max_attempts": 4, "mode": "standard"},
                s3={"addressing_style": "path"} if self._endpoint_url else None))

    def visibility_permitted(self) -> bool:
        """Probe sqs:ChangeMessageVisibility with a receipt that cannot exist."""
        try:
            self.change_visibility([Visibility("probe", "sesshu-permission-probe", 0)])
        except BusError as exc:
            return not is_denied(exc.code)
        return True

    def check_topic(self, topic: str | None = None) -> None:
        self._call(self._sns, "get_topic_attributes", TopicArn=topic or self.topic)


# What a HEAD answer's bare status means.
_HEAD_CODES = {"404": ("NoSuchKey", "no such object (or bucket)"), "403": ("AccessDenied", "access denied")}


def _message(m: dict[str, Any]) -> Message:
    system = m.get("Attributes", {})
    attributes = {name: str(a["StringValue"]) for name, a in m.get("MessageAttributes", {}).items()
                  if "StringValue" in a}
    return Message(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""),
                   int(system.get("ApproximateReceiveCount", 1)), attributes,
                   system.get("AWSTraceHeader"), system.get("MessageGroupId"))


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        if code.isdigit():
            # Some SQS-compatible servers answer a JSON request with an XML
            # error, which botocore cannot parse: it reports the HTTP status
            # as the code, and the XML as the message. The real code is in there.
            found = _XML_CODE.search(str(error.get("Message", "")))
            return found.group(1) if found else code
        return code
    return type(exc).__name__


def _http_status(exc: Exception) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if isinstance(status, int) else None
    return None


def call(client: Any, operation: str, **kwargs: Any) -> Any:
    """One boto3 call; whatever goes wrong is a :class:`BusError` with the AWS error code."""
    try:
        return getattr(client, operation)(**kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise BusError(f"{operation}: {exc}", _error_code(exc), _http_status(exc)) from exc


def publish_entries(caller: Callable[..., Any], sns: Any, topic: str, entries: list[Publish]) -> dict[str, str]:
    """Publish up to ten documents; ``{entry_id: error}`` for those that failed.

    Shared by the daemon and ``sesshu submit``. A lone document goes out with
    plain Publish: the same cost, and SNS-compatible servers without
    PublishBatch still work. Message attributes go only where an entry has
    some, so a request without them is what it always was.
    """
    fifo = topic.endswith(FIFO_SUFFIX)
    if len(entries) == 1:
        try:
            caller(sns, "publish", TopicArn=topic, Message=entries[0].document, **_attributes(entries[0], fifo))
        except BusError as exc:
            return {entries[0].entry_id: Fault(str(exc), exc.code)}  # the code says whether a retry may pass
        return {}
    reply = caller(sns, "publish_batch", TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": e.entry_id, "Message": e.document, **_attributes(e, fifo)} for e in entries])
    return batch_failures(reply)


def _attributes(entry: Publish, fifo: bool) -> dict[str, Any]:
    """An entry's message attributes, if any; and on a FIFO topic its group and deduplication ids."""
    extra: dict[str, Any] = {"MessageAttributes": wire_attributes(entry.attributes)} if entry.attributes else {}
    if fifo:
        extra["MessageGroupId"] = entry.group_id or DEFAULT_GROUP
        if entry.deduplication_id is not None:
            extra["MessageDeduplicationId"] = entry.deduplication_id
    return extra


def batch_failures(reply: dict[str, Any]) -> dict[str, str]:
    """A batch call's per-entry failures, by entry id.

    An entry failed by the sender's fault (a stale receipt handle, a bad
    attribute) fails again if retried; one failed by the service's may pass.
    """
    return {f["Id"]: _entry_fault(f) for f in reply.get("Failed", [])}


def _entry_fault(failed: dict[str, Any]) -> Fault:
    code = str(failed.get("Code", "error"))
    return Fault(f"{code}: {failed.get('Message', '')}", code,
                 transient=not failed.get("SenderFault", True) and not is_permanent(code))
