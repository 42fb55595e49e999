"""The per-token sliding windows, with time passed in (no sleeping), and the clocks."""

from __future__ import annotations

import time

import pytest

from doks_access_testkit.emulator import JumpingClock, ManualClock
from doks_access_testkit.emulator.ratelimit import RateLimits, SlidingWindowLimiter

T0 = 1_700_000_000.0


def test_counts_down_remaining_and_resets_when_the_oldest_request_leaves_the_hour() -> None:
    limiter = SlidingWindowLimiter(limits=RateLimits(per_hour=5000, per_minute=250))
    first = limiter.hit("t", now=T0)
    second = limiter.hit("t", now=T0 + 10.5)
    assert (first.allowed, first.limit, first.remaining) == (True, 5000, 4999)
    assert (second.remaining, second.reset) == (4998, T0 + 3600)
    assert first.retry_after is None
    assert "retry-after" not in first.headers()


def test_a_request_counts_for_exactly_one_hour() -> None:
    limiter = SlidingWindowLimiter(limits=RateLimits(per_hour=10, per_minute=10))
    limiter.hit("t", now=T0)
    limiter.hit("t", now=T0 + 100)
    assert limiter.peek("t", now=T0 + 3599.9).remaining == 8
    after = limiter.peek("t", now=T0 + 3600)
    assert (after.remaining, after.reset) == (9, T0 + 100 + 3600)


def test_the_burst_limit_refuses_with_retry_after_until_the_minute_slides() -> None:
    limiter = SlidingWindowLimiter(limits=RateLimits(per_hour=100, per_minute=3))
    for offset in (0.0, 20.0, 40.0):
        assert limiter.hit("t", now=T0 + offset).allowed
    refused = limiter.hit("t", now=T0 + 45.0)
    assert not refused.allowed
    assert refused.retry_after == 15  # the request at T0 leaves the minute window at T0 + 60
    assert refused.remaining == 0
    assert refused.headers()["retry-after"] == "15"
    assert limiter.hit("t", now=T0 + 60.0).allowed


def test_refused_requests_are_not_counted() -> None:
    limiter = SlidingWindowLimiter(limits=RateLimits(per_hour=100, per_minute=1))
    limiter.hit("t", now=T0)
    for _ in range(5):
        assert not limiter.hit("t", now=T0 + 1).allowed
    assert limiter.peek("t", now=T0 + 2).remaining == 99


def test_the_hourly_limit_refuses_without_retry_after_until_the_reset_time() -> None:
    limiter = SlidingWindowLimiter(limits=RateLimits(per_hour=3, per_minute=3))
    for offset in (0.0, 100.0, 200.0):
        limiter.hit("t", now=T0 + offset)
    refused = limiter.hit("t", now=T0 + 1000)
    assert (refused.allowed, refused.remaining, refused.retry_after) == (False, 0, None)
    assert refused.reset == T0 + 3600
    assert not limiter.hit("t", now=T0 + 3599).allowed
    assert limiter.hit("t", now=T0 + 3600).allowed


def test_tokens_have_separate_windows_and_reset_forgets_everything() -> None:
    limiter = SlidingWindowLimiter(limits=RateLimits(per_hour=1, per_minute=1))
    assert limiter.hit("a", now=T0).allowed
    assert limiter.hit("b", now=T0).allowed
    assert not limiter.hit("a", now=T0).allowed
    limiter.reset()
    assert limiter.hit("a", now=T0).allowed


def test_an_untouched_window_reports_the_full_limit() -> None:
    limiter = SlidingWindowLimiter(limits=RateLimits())
    peeked = limiter.peek("nobody", now=T0 + 0.5)
    assert (peeked.remaining, peeked.reset) == (5000, T0 + 1)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimits(per_hour=0)


def test_a_jumping_clock_keeps_real_time_and_skips_ahead() -> None:
    clock = JumpingClock()
    before = time.time()
    clock.jump(3600)
    assert before + 3600 <= clock() <= time.time() + 3600
    with pytest.raises(ValueError, match="forward"):
        clock.jump(-1)
    clock.reset()
    assert clock() <= time.time()


def test_a_manual_clock_only_moves_when_told() -> None:
    clock = ManualClock(start=T0)
    assert clock() == clock() == T0
    assert clock.advance(1.5) == T0 + 1.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
