"""SqsSnsBus against the answers of different servers, replayed with botocore's Stubber.

The end-to-end suites run on moto and on LocalStack; where the two answer
the same request differently, both answers are kept here, so Sesshu keeps
handling each even when only one server runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from sesshu.bus.api import BusError, Fault, Message, Publish, Visibility, message_size, wire_attributes
from sesshu.bus.sqs import SqsSnsBus, batch_failures
from sesshu.config.model import from_mapping
from sesshu.jobs.settle import Settler
from sesshu.jobs.ticket import Ticket
from tests.harness.aws import FAKE_CREDENTIALS
from tests.test_settle import deliver, fixed

QUEUE = "http://127.0.0.1:9/000000000000/q"
DLQ_ARN = "arn:aws:sqs:us-east-1:000000000000:q-dlq"


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[SqsSnsBus]:
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    yield SqsSnsBus(QUEUE, "arn:aws:sns:us-east-1:000000000000:results", region="us-east-1",
                    endpoint_url="http://127.0.0.1:9")


def stubbed(client: Any, operation: str, reply: dict[str, Any]) -> Stubber:
    stub = Stubber(client)
    stub.add_response(operation, reply)
    stub.activate()
    return stub


# moto always answers a number; LocalStack hands back what it was given, a
# string when the policy was written with one (as CloudFormation templates do).
@pytest.mark.parametrize("max_receive", [3, "3"], ids=["number", "string"])
def test_max_receive_count_as_number_or_string(bus: SqsSnsBus, max_receive: Any) -> None:
    policy = json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": max_receive})
    with stubbed(bus._sqs, "get_queue_attributes",
                 {"Attributes": {"VisibilityTimeout": "30", "RedrivePolicy": policy}}):
        info = bus.queue_info()
    assert (info.visibility_timeout, info.max_receive_count) == (30, 3)


def test_no_redrive_policy_means_no_dlq(bus: SqsSnsBus) -> None:
    with stubbed(bus._sqs, "get_queue_attributes", {"Attributes": {"VisibilityTimeout": "30"}}):
        assert bus.queue_info().max_receive_count is None


# A visibility change for a message deleted meanwhile fails per entry, with a
# code that depends on the server.
@pytest.mark.parametrize("code", ["ReceiptHandleIsInvalid", "InvalidParameterValue", "InvalidParameterValueException"],
                         ids=["moto", "SQS", "LocalStack-4.13"])
def test_visibility_change_on_a_deleted_message(bus: SqsSnsBus, code: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    reply = {"Successful": [{"Id": "1"}],
             "Failed": [{"Id": "0", "SenderFault": True, "Code": code, "Message": "not available"}]}
    with stubbed(bus._heartbeat, "change_message_visibility_batch", reply):
        failed = bus.change_visibility([Visibility("0", "gone", 30), Visibility("1", "here", 30)])
    assert list(failed) == ["0"] and failed["0"].startswith(code)

    config = from_mapping({"plugin": ["http_robots"], "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    settler = Settler(fixed(config))
    gone, here = Ticket(Message("m-gone", "gone", "{}", 1)), Ticket(Message("m-here", "here", "{}", 1))
    settler.outbox.extend(gone, 30)
    settler.outbox.extend(here, 30)
    call = settler.outbox.next_call(bus, None, more_coming=False)
    assert call is not None
    with stubbed(bus._heartbeat, "change_message_visibility_batch", reply), caplog.at_level(logging.WARNING):
        deliver(settler, call())
    # Only a warning: neither code is a refused permission, so the heartbeat stays on.
    assert settler.heartbeat
    assert "message m-gone: could not change its visibility" in caplog.text
    assert sum(settler.outcomes.counts.values()) == 0


def test_visibility_changes_are_tried_once_and_other_calls_four_times(bus: SqsSnsBus) -> None:
    """botocore's backoffs between tries could outlast the heartbeat's margin: the outbox retries instead."""
    assert bus._heartbeat.meta.config.retries["total_max_attempts"] == 1
    assert bus._sqs.meta.config.retries["total_max_attempts"] == 4


class Denied:
    def change_visibility(self, entries: list[Visibility]) -> dict[str, str]:
        # As SqsSnsBus reads the answer AWS gives each entry.
        return batch_failures({"Failed": [{"Id": e.entry_id, "Code": "AccessDenied", "SenderFault": True,
                                           "Message": "not authorized"} for e in entries]})


def test_a_denied_visibility_change_turns_the_heartbeat_off(caplog: pytest.LogCaptureFixture) -> None:
    """No emulator enforces IAM: this answer only AWS gives."""
    config = from_mapping({"plugin": ["http_robots"], "bus": {"input": {"queue": "q"}, "output": {"topic": "t"}}})
    settler = Settler(fixed(config))
    held = Ticket(Message("m-1", "rh-1", "{}", 1))
    settler.outbox.extend(held, 30)
    call = settler.outbox.next_call(Denied(), None, more_coming=False)
    assert call is not None
    with caplog.at_level(logging.WARNING):
        deliver(settler, call())
    assert not settler.heartbeat
    assert "sqs:ChangeMessageVisibility is denied" in caplog.text


# -- message attributes, and the failures topic -------------------------------------------

ATTRS = {"plugin": "chaos", "outcome": "done", "sesshu_version": "0.1.0"}
WIRE = {name: {"DataType": "String", "StringValue": value} for name, value in ATTRS.items()}
RESULTS = "arn:aws:sns:us-east-1:000000000000:results"
FAILURES = "arn:aws:sns:us-east-1:000000000000:failures"


def expect(client: Any, operation: str, reply: dict[str, Any], params: dict[str, Any]) -> Stubber:
    stub = Stubber(client)
    stub.add_response(operation, reply, params)
    stub.activate()
    return stub


def test_a_lone_document_goes_with_its_attributes(bus: SqsSnsBus) -> None:
    params = {"TopicArn": RESULTS, "Message": "{}", "MessageAttributes": WIRE}
    with expect(bus._sns, "publish", {"MessageId": "1"}, params) as stub:
        assert bus.publish([Publish("0", "{}", ATTRS)]) == {}
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "status", "transient"), [("Throttling", 400, True),
                                                           ("AuthorizationError", 403, False)])
def test_a_lone_document_refused_says_whether_a_retry_may_pass(bus: SqsSnsBus, code: str, status: int,
                                                               transient: bool) -> None:
    """A lone publish that fails as a whole reports a Fault with its code, as a batch entry does."""
    stub = Stubber(bus._sns)
    for _ in range(3):  # botocore's own tries, where the code is one it retries
        stub.add_client_error("publish", service_error_code=code, http_status_code=status)
    with stub:
        (failure,) = bus.publish([Publish("0", "{}", ATTRS)]).values()
    assert isinstance(failure, Fault) and failure.code == code and failure.transient is transient


def test_a_batch_goes_with_each_entry_s_attributes(bus: SqsSnsBus) -> None:
    pointer = {**ATTRS, "ExtendedPayloadSize": "300000"}
    params = {"TopicArn": RESULTS, "PublishBatchRequestEntries": [
        {"Id": "0", "Message": "a", "MessageAttributes": WIRE},
        {"Id": "1", "Message": "b", "MessageAttributes": {
            **WIRE, "ExtendedPayloadSize": {"DataType": "Number", "StringValue": "300000"}}},
    ]}
    with expect(bus._sns, "publish_batch", {"Successful": [], "Failed": []}, params) as stub:
        assert bus.publish([Publish("0", "a", ATTRS), Publish("1", "b", pointer)]) == {}
    stub.assert_no_pending_responses()


def test_a_document_without_attributes_is_published_as_before(bus: SqsSnsBus) -> None:
    """``sesshu submit`` sends requests without attributes: the request must not change."""
    with expect(bus._sns, "publish", {"MessageId": "1"}, {"TopicArn": RESULTS, "Message": "{}"}):
        assert bus.publish([Publish("0", "{}")]) == {}


def test_failure_records_go_to_the_failures_topic_and_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    counted: list[int] = []
    bus = SqsSnsBus(QUEUE, RESULTS, region="us-east-1", endpoint_url="http://127.0.0.1:9",
                    failures_topic=FAILURES, on_failures_published=counted.append)
    params = {"TopicArn": FAILURES, "PublishBatchRequestEntries": [
        {"Id": "0", "Message": "r0", "MessageAttributes": WIRE},
        {"Id": "1", "Message": "r1", "MessageAttributes": WIRE},
        {"Id": "2", "Message": "r2", "MessageAttributes": WIRE},
    ]}
    reply = {"Successful": [{"Id": "0", "MessageId": "a"}, {"Id": "2", "MessageId": "b"}],
             "Failed": [{"Id": "1", "Code": "InternalError", "SenderFault": False, "Message": "later"}]}
    with expect(bus._sns, "publish_batch", reply, params):
        failed = bus.publish_failures([Publish(str(i), f"r{i}", ATTRS) for i in range(3)])
    assert list(failed) == ["1"]
    assert counted == [2]  # only what SNS took


def test_without_a_failures_topic_no_record_can_go_anywhere(bus: SqsSnsBus) -> None:
    with pytest.raises(BusError) as info:
        bus.publish_failures([Publish("0", "{}", ATTRS)])
    assert info.value.permanent


def test_attributes_count_toward_the_size_sns_checks() -> None:
    entry = Publish("0", "x" * 100, ATTRS)
    assert entry.size() == 100 + sum(len(n) + len("String") + len(v) for n, v in ATTRS.items())
    assert entry.size() == message_size("x" * 100, wire_attributes(ATTRS))


def test_a_batch_entry_may_pass_on_a_retry_only_when_the_service_was_at_fault() -> None:
    failed = batch_failures({"Failed": [
        {"Id": "0", "Code": "InternalError", "SenderFault": False, "Message": "try again"},
        {"Id": "1", "Code": "ReceiptHandleIsInvalid", "SenderFault": True, "Message": "stale"},
        {"Id": "2", "Code": "AccessDenied", "SenderFault": False, "Message": "no"},
        {"Id": "3"},  # nothing said: not retried blindly
    ]})
    assert {k: (v.code, v.transient) for k, v in failed.items() if isinstance(v, Fault)} == {
        "0": ("InternalError", True), "1": ("ReceiptHandleIsInvalid", False), "2": ("AccessDenied", False),
        "3": ("error", False)}


def test_a_fifo_topic_gets_group_and_deduplication_ids_and_a_standard_one_neither(bus: SqsSnsBus) -> None:
    fifo = "arn:aws:sns:us-east-1:000000000000:results.fifo"
    bus.topic = fifo
    params = {"TopicArn": fifo, "PublishBatchRequestEntries": [
        {"Id": "0", "Message": "a", "MessageGroupId": "g", "MessageDeduplicationId": "m-1"},
        {"Id": "1", "Message": "b", "MessageGroupId": "sesshu", "MessageDeduplicationId": "m-2"},
    ]}
    with expect(bus._sns, "publish_batch", {"Successful": [], "Failed": []}, params) as stub:
        assert bus.publish([Publish("0", "a", {}, "g", "m-1"), Publish("1", "b", {}, None, "m-2")]) == {}
    stub.assert_no_pending_responses()
    bus.topic = RESULTS
    with expect(bus._sns, "publish", {"MessageId": "1"}, {"TopicArn": RESULTS, "Message": "a"}):
        assert bus.publish([Publish("0", "a", {}, "g", "m-1")]) == {}
