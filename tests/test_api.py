"""sesshu.bus.api: what SNS and SQS count, how batches are cut, and the one classification of AWS errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesshu.bus.api import (
    BusError,
    Fault,
    batches,
    denied,
    error_name,
    is_denied,
    is_later,
    is_permanent,
    is_throttling,
    message_size,
    transient,
)


def test_message_size_counts_utf8_bytes_and_attributes() -> None:
    assert message_size("abc") == 3
    assert message_size("é€") == 5
    # SNS counts each attribute's name, data type and value.
    assert message_size("x", {"kind": {"DataType": "String", "StringValue": "ab"}}) == 1 + 4 + 6 + 2
    assert message_size("", {"b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}) == 1 + 6 + 2


@pytest.mark.parametrize("code, name, permanent, splittable", [
    ("BatchRequestTooLong", "BatchRequestTooLong", True, True),
    ("AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong", True, True),
    ("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "TooManyEntriesInBatchRequest", True, True),
    ("InvalidParameterValueException", "InvalidParameterValue", True, True),
    ("AuthorizationError", "AuthorizationError", True, False),
    ("AccessDeniedException", "AccessDenied", True, False),
    ("NotFound", "NotFound", True, False),
    ("AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue", True, False),
    ("Throttling", "Throttling", False, False),
    ("InternalError", "InternalError", False, False),
    ("ReadTimeoutError", "ReadTimeoutError", False, False),
])
def test_error_classes(code: str, name: str, permanent: bool, splittable: bool) -> None:
    assert error_name(code) == name
    error = BusError("x", code)
    assert (error.permanent, error.splittable) == (permanent, splittable)


# -- batches for sesshu submit -------------------------------------------------------------


@pytest.mark.parametrize("sizes, limit, expected", [
    ([], 100, []),
    ([10] * 25, 1000, [range(0, 10), range(10, 20), range(20, 25)]),
    ([60, 40, 1, 99, 100], 100, [range(0, 2), range(2, 4), range(4, 5)]),
    ([300, 5], 100, [range(0, 1), range(1, 2)]),  # too big alone: it goes alone, for the server to judge
])
def test_batches(sizes: list[int], limit: int, expected: list[range]) -> None:
    assert batches(sizes, limit) == expected


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 1000), st.integers(1, 10))
def test_batches_cover_everything_in_order_within_limits(sizes: list[int], limit: int, entries: int) -> None:
    got = batches(sizes, limit, entries)
    assert [i for r in got for i in r] == list(range(len(sizes)))
    for r in got:
        assert 1 <= len(r) <= entries
        assert len(r) == 1 or sum(sizes[i] for i in r) <= limit


@pytest.mark.parametrize(("code", "throttling", "later", "denied_", "permanent"), [
    ("Throttling", True, True, False, False),
    ("ThrottlingException", True, True, False, False),
    ("AWS.SimpleQueueService.RequestThrottled", True, True, False, False),
    ("ServiceUnavailable", False, True, False, False),
    ("InternalError", False, True, False, False),
    ("AccessDeniedException", False, False, True, True),
    ("AuthorizationError", False, False, True, True),
    ("QueueDoesNotExist", False, False, False, True),
    ("EndpointConnectionError", False, False, False, False),
])
def test_one_classification_of_codes(code: str, throttling: bool, later: bool, denied_: bool,
                                     permanent: bool) -> None:
    assert (is_throttling(code), is_later(code), is_denied(code), is_permanent(code)) == (
        throttling, later, denied_, permanent)


@pytest.mark.parametrize(("error", "may_pass"), [
    (Fault("publish: Rate exceeded", "Throttling"), True),
    (Fault("connect: refused", "EndpointConnectionError"), True),  # no answer at all: try again
    (Fault("publish: denied", "AuthorizationError"), False),
    (Fault("unexpected ValueError: x"), False),  # no code: our own bug, never retried blindly
    (Fault("ReceiptHandleIsInvalid: stale", "ReceiptHandleIsInvalid", transient=False), False),
    ("ReceiptHandleIsInvalid", False),  # a bus that gives no code
])
def test_a_failure_says_whether_a_retry_may_pass(error: str, may_pass: bool) -> None:
    assert transient(error) is may_pass
    assert denied(error) is (isinstance(error, Fault) and error.code == "AuthorizationError")
