"""DigitalOcean's per-token rate limits: sliding windows of one hour and one minute.

The real API counts every request for one full hour after it was made (5,000 per hour) and also
caps bursts (250 per minute). ``ratelimit-reset`` is the moment the *oldest* counted request
leaves the hour window, not the end of a fixed period, and only a burst-limit 429 carries
``retry-after``. The operator's client-side limiter is tested against exactly this, so the
arithmetic lives here, free of I/O, with "now" passed in by the caller.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import threading

HOUR = 3600.0
MINUTE = 60.0


@dataclasses.dataclass(frozen=True)
class RateLimits:
    """How many requests one API token may make per sliding hour and per sliding minute."""

    per_hour: int = 5000
    per_minute: int = 250

    def __post_init__(self) -> None:
        if self.per_hour < 1 or self.per_minute < 1:
            raise ValueError("rate limits must be at least 1")


@dataclasses.dataclass(frozen=True)
class RateDecision:
    """The verdict on one request and the values of its ``ratelimit-*`` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds
    retry_after: int | None = None  # seconds; only on a burst-limit rejection

    def headers(self) -> dict[str, str]:
        headers = {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset),
        }
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return headers


class SlidingWindowLimiter:
    """Counts requests per key (an API token); rejected requests are not counted."""

    def __init__(self, *, limits: RateLimits) -> None:
        self.limits = limits
        self._hits: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, now: float) -> RateDecision:
        """Count one request made at ``now`` unless a window is full; say which happened."""
        with self._lock:
            hits = self._window(key, now=now)
            if len(hits) >= self.limits.per_hour:
                return self._decision(hits, now=now, allowed=False)
            in_last_minute = len(hits) - bisect.bisect_right(hits, now - MINUTE)
            if in_last_minute >= self.limits.per_minute:
                oldest_in_minute = hits[len(hits) - in_last_minute]
                retry_after = max(1, math.ceil(oldest_in_minute + MINUTE - now))
                burst = self._decision(hits, now=now, allowed=False)
                return dataclasses.replace(burst, remaining=0, retry_after=retry_after)
            bisect.insort(hits, now)
            return self._decision(hits, now=now, allowed=True)

    def peek(self, key: str, *, now: float) -> RateDecision:
        """The headers a request would carry, without counting one."""
        with self._lock:
            return self._decision(self._window(key, now=now), now=now, allowed=True)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def _window(self, key: str, *, now: float) -> list[float]:
        hits = self._hits.setdefault(key, [])
        del hits[: bisect.bisect_right(hits, now - HOUR)]
        return hits

    def _decision(self, hits: list[float], *, now: float, allowed: bool) -> RateDecision:
        reset = math.ceil(hits[0] + HOUR) if hits else math.ceil(now)
        return RateDecision(
            allowed=allowed,
            limit=self.limits.per_hour,
            remaining=max(0, self.limits.per_hour - len(hits)),
            reset=reset,
        )
