"""The plugin API (``sesshu.plugin``): its exceptions bound what a plugin may ask for."""

from __future__ import annotations

from typing import Any

import pytest

from sesshu.plugin import MAX_RETRY_SECONDS, Reject, RetryLater, retry_seconds


@pytest.mark.parametrize(("asked", "seconds"), [
    (120, 120), (1.2, 2), (0, 0), (-3, 0), (MAX_RETRY_SECONDS + 1, MAX_RETRY_SECONDS), (1e300, MAX_RETRY_SECONDS),
    (float("inf"), MAX_RETRY_SECONDS), (float("-inf"), 0), (float("nan"), 0), ("90", 90), ("soon", 0), (None, 0),
    ([], 0),
])
def test_retry_seconds_are_whole_and_within_sqs_bounds(asked: Any, seconds: int) -> None:
    assert retry_seconds(asked) == seconds
    assert RetryLater(asked).seconds == seconds


def test_the_exceptions_say_what_was_asked() -> None:
    assert str(RetryLater(30, "429 from example.com")) == "retry in 30 s: 429 from example.com"
    assert str(RetryLater(30)) == "retry in 30 s"
    assert str(Reject("robots.txt will never exist")) == "robots.txt will never exist"
    # Neither is a ValueError or an OSError, which plugins and httpget catch as failures.
    assert not issubclass(RetryLater, ValueError | OSError) and not issubclass(Reject, ValueError | OSError)
