"""Short, bounded retries of one API call: exponential backoff with full jitter, and 429 honoured.

The client absorbs brief trouble (a dropped connection, a 503 during a deploy, a burst-limit 429)
so that one blip does not become a failed reconciliation, a Warning event and a status change. It
does so within tight bounds -- a few attempts and a few tens of seconds -- because the operator has
its own, slower backoff for longer outages (DESIGN 4.5) and must not have its workers parked here.

Full jitter (``uniform(0, min(cap, base * 2**n))``, as in AWS's "Exponential Backoff and Jitter")
keeps many objects that failed together from retrying together. A 429 is retried after exactly
the wait DigitalOcean asked for, unless that is longer than the policy allows: then the
:class:`RateLimitedError` goes to the caller, which can schedule the retry instead of waiting.

:meth:`RetryPolicy.delay_before_retry` is the pure decision; :func:`call_with_retries` only sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from doks_access.digitalocean._errors import DigitalOceanError, RateLimitedError
from doks_access.digitalocean._ratelimit import Waiting

__all__ = ["RetryPolicy", "call_with_retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one call before the caller hears about the failure."""

    attempts: int = 4  # tries in total, the first one included
    base_delay: float = 1.0  # the backoff's first ceiling, doubled on every retry
    max_delay: float = 10.0  # the ceiling of any one backoff
    max_total_delay: float = 30.0  # the most time spent sleeping across all retries of one call
    max_rate_limit_wait: float = 30.0  # a longer 429 wait goes back to the caller

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        delays = (self.base_delay, self.max_delay, self.max_total_delay, self.max_rate_limit_wait)
        if min(delays) < 0:
            raise ValueError("delays must not be negative")

    def backoff_ceiling(self, *, retry: int) -> float:
        """The upper bound of the jittered wait before retry number ``retry`` (0 for the first)."""
        # The exponent is capped so that a large policy cannot overflow a float.
        return min(self.max_delay, self.base_delay * 2.0 ** min(retry, 64))

    def delay_before_retry(
        self,
        *,
        error: DigitalOceanError,
        failed_attempts: int,
        slept: float,
        rng: random.Random,
    ) -> float | None:
        """Seconds to sleep before trying again, or ``None`` to give up and raise ``error``.

        ``failed_attempts`` counts the attempts made so far (all failed); ``slept`` is the time
        already spent sleeping between them.
        """
        if not error.retryable or failed_attempts >= self.attempts:
            return None
        if isinstance(error, RateLimitedError):
            if error.retry_after > self.max_rate_limit_wait:
                return None
            delay = error.retry_after
        else:
            delay = rng.uniform(0.0, self.backoff_ceiling(retry=failed_attempts - 1))
        if slept + delay > self.max_total_delay:
            return None
        return delay


async def call_with_retries(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    rng: random.Random,
    what: str,
    waiting: Waiting | None = None,
) -> T:
    """Await ``operation()`` until it succeeds or ``policy`` says to stop; ``what`` is for logs.

    ``waiting`` is entered around each pause between attempts (see ``RateLimiter``).
    """
    waiting = waiting or contextlib.nullcontext
    failed_attempts = 0
    slept = 0.0
    while True:
        try:
            return await operation()
        except DigitalOceanError as error:
            failed_attempts += 1
            delay = policy.delay_before_retry(
                error=error, failed_attempts=failed_attempts, slept=slept, rng=rng
            )
            if delay is None:
                raise
            logger.debug(
                "%s: %s on attempt %d of %d; retrying in %.3fs",
                what,
                type(error).__name__,
                failed_attempts,
                policy.attempts,
                delay,
            )
        async with waiting():
            await asyncio.sleep(delay)
        slept += delay
