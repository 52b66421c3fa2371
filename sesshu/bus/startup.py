"""Opening the bus at start-up, under one contract for everything that can go wrong.

``sesshud``, ``sesshud --check --aws`` and ``sesshu check --aws`` all open the
bus here, so they fail the same way:

* the bus answered "no" (no such queue or topic, credentials refused or
  missing, no region, a malformed endpoint or ARN): :class:`ConfigError`,
  exit 1, because a restart cannot fix it;
* the bus did not answer, or answered "try later" (connection refused,
  timeouts, throttling, a 5xx): :class:`BusUnreachable`, exit 75
  (EX_TEMPFAIL), which a service manager may retry.

This holds whether ``bus.input.queue`` is a name or a URL: a URL is probed
with GetQueueAttributes, the topic (and ``bus.output.failures_topic``, when
set) with GetTopicAttributes. A permission that
is merely denied (``AccessDenied``) does not stop a start: each of those
calls is optional in the IAM policy, so it costs a warning, as the IAM
table in docs/security.md says.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, NoRegionError

from sesshu.bus.api import (
    MISSING_QUEUE_CODES,
    MISSING_TOPIC_CODES,
    NO_CREDENTIALS_CODES,
    BusError,
    QueueInfo,
    error_name,
    is_denied,
    is_later,
)
from sesshu.bus.sqs import SqsSnsBus
from sesshu.config.model import Config
from sesshu.config.schema import ConfigError
from sesshu.text import loggable

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75

TOPIC_ARN = re.compile(r"^arn:[a-z-]+:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


class BusUnreachable(Exception):
    """SQS/SNS could not be reached at start-up: worth a retry, unlike a config error."""


@dataclass(frozen=True)
class OpenBus:
    bus: SqsSnsBus
    queue_info: QueueInfo
    topic_checked: bool  # False when sns:GetTopicAttributes is denied

    def describe(self) -> str:
        info = self.queue_info
        dlq = f"DLQ after {info.max_receive_count} receives" if info.max_receive_count else "no DLQ"
        topic = "" if self.topic_checked else " (not verified: sns:GetTopicAttributes denied)"
        failures = f"; failures topic {self.bus.failures_topic}" if self.bus.failures_topic else ""
        return f"queue {self.bus.queue_url} ({dlq}); topic {self.bus.topic}{topic}{failures}"


def open_bus(config: Config, *, region: str | None = None, endpoint_url: str | None = None,
             on_call: Callable[[str, str | None], None] | None = None,
             on_failures_published: Callable[[int], None] | None = None) -> OpenBus:
    """Make the bus for ``config`` and prove that its queue and topics are there.

    ``region`` and ``endpoint_url`` override the config's (for the operator CLI).
    """
    region = region or config.region
    endpoint_url = endpoint_url or config.endpoint_url
    for key, arn in (("bus.output.topic", config.topic), ("bus.output.failures_topic", config.failures_topic)):
        if arn is not None and not TOPIC_ARN.match(arn):
            raise ConfigError(f"{key}: {arn!r} is not a topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
    try:
        bus = SqsSnsBus(config.queue, config.topic, region=region, endpoint_url=endpoint_url,
                        poll_seconds=config.poll_interval, on_call=on_call,
                        connections=max(config.senders, config.receivers) + 2,
                        failures_topic=config.failures_topic, on_failures_published=on_failures_published)
    except NoRegionError:
        raise ConfigError("bus.region: no AWS region: set bus.region, or AWS_DEFAULT_REGION") from None
    except ValueError as exc:  # botocore's complaint about a malformed endpoint
        raise ConfigError(f"bus.endpoint_url: {exc}") from None
    except BusError as exc:  # resolving a queue name
        raise verdict(exc, "bus.input.queue", f"queue {config.queue!r}", MISSING_QUEUE_CODES) from None
    try:
        info = bus.queue_info()
    except BusError as exc:
        if not is_denied(exc.code):
            raise verdict(exc, "bus.input.queue", f"queue {config.queue!r}", MISSING_QUEUE_CODES) from None
        log.warning("cannot read the queue's attributes (%s); assuming no dead-letter queue", loggable(str(exc)))
        info = QueueInfo(None, None)
    else:
        if info.max_receive_count is None:
            log.warning("queue has no redrive policy: rejected messages are retried with backoff "
                        "instead of moving to a dead-letter queue")
    if config.failures_topic is not None and info.max_receive_count is None:
        log.warning("bus.output.failures_topic is set, but the queue's redrive policy is unknown or absent: "
                    "without one no receive is the last, so no failure record is ever published")
    if config.failures_topic is not None:
        _check_failures_topic(bus, config.failures_topic)
    try:
        bus.check_topic()
    except BusError as exc:
        if not is_denied(exc.code):
            raise verdict(exc, "bus.output.topic", f"topic {config.topic!r}", MISSING_TOPIC_CODES) from None
        log.warning("cannot check the results topic (%s); a missing topic shows only when results "
                    "are published", loggable(str(exc)))
        return OpenBus(bus, info, topic_checked=False)
    return OpenBus(bus, info, topic_checked=True)


def _check_failures_topic(bus: SqsSnsBus, topic: str) -> None:
    try:
        bus.check_topic(topic)
    except BusError as exc:
        if not is_denied(exc.code):
            raise verdict(exc, "bus.output.failures_topic", f"topic {topic!r}", MISSING_TOPIC_CODES) from None
        log.warning("cannot check the failures topic (%s); a missing topic shows only when a failure "
                    "record is published", loggable(str(exc)))


def verdict(exc: BusError, key: str, what: str, missing: frozenset[str]) -> Exception:
    """The start-up verdict on a failed bus call: ConfigError (exit 1) or BusUnreachable (75)."""
    # One line whatever the server said: its message may hold newlines (an XML body).
    detail = loggable(str(exc), 400)
    if error_name(exc.code) in missing:
        return ConfigError(f"{key}: no {what}: {detail}")
    if exc.code in NO_CREDENTIALS_CODES:
        return ConfigError(f"{key}: no AWS credentials for {what} (instance profile, AWS_* environment, "
                           f"or the service account's ~/.aws/credentials): {detail}")
    if _transient(exc):
        return BusUnreachable(f"cannot reach the bus at start-up: {detail}")
    # Any other answer is a refusal: bad credentials, a malformed URL or ARN.
    return ConfigError(f"{key}: {what} refused ({exc.code}): {detail}")


def _transient(exc: BusError) -> bool:
    if is_later(exc.code):
        return True
    if exc.status is None:
        # No answer at all (connection refused, timeouts) is a BotoCoreError;
        # an error code without a status is one we could not classify.
        return exc.code == "" or _is_botocore_error(exc)
    return exc.status >= 500


def _is_botocore_error(exc: BusError) -> bool:
    return isinstance(exc.__cause__, BotoCoreError)
