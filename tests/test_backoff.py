"""sesshu.backoff: the one rule for delays that grow with failures."""

from __future__ import annotations

from sesshu.backoff import Backoff, exponential


def test_exponential_doubles_up_to_its_cap() -> None:
    assert [exponential(n, 0.1, 1.0) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_exponential_survives_absurd_attempt_counts() -> None:
    assert exponential(10**9, 5, 900) == 900  # an ApproximateReceiveCount in the billions
    assert exponential(0, 5, 900) == exponential(-3, 5, 900) == 5


def test_backoff_counts_failures_and_resets() -> None:
    b = Backoff(first=0.1, cap=30.0)
    assert [b.next() for _ in range(3)] == [0.1, 0.2, 0.4]
    assert b.failures == 3
    b.reset()
    assert b.next() == 0.1


def test_jitter_shortens_by_at_most_its_share() -> None:
    low = Backoff(first=1.0, cap=30.0, jitter=0.5, rng=lambda: 1.0)
    high = Backoff(first=1.0, cap=30.0, jitter=0.5, rng=lambda: 0.0)
    assert [low.next() for _ in range(3)] == [0.5, 1.0, 2.0]
    assert [high.next() for _ in range(3)] == [1.0, 2.0, 4.0]
