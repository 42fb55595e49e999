"""Client-side rate limiting per API token, so a burst of objects never becomes a 429 storm.

DigitalOcean counts requests per token in two sliding windows: 250 per minute and 5,000 per hour
(each request counts for a full minute and a full hour after it was sent). A thousand
``DOClusterAccess`` objects created at once would blow through the minute window in a second; a
429 then costs every one of them a retry. So the operator keeps its own count, a safety margin
below the published limits (other tools may share the token), and makes a request wait until both
windows have room (DESIGN 4.5).

DigitalOcean counts a request when it arrives, which is somewhere between our sending it and our
reading the answer. So a request is counted from when it is sent (concurrent senders see it at
once) until it is answered, and from the answer on after that: with the send time alone, slots
would free up 60 s after a burst was *sent*, while DigitalOcean still counts the burst's later
arrivals, and the next burst would meet a wall of 429s.

Our count only sees our own requests. The ``ratelimit-remaining``/``ratelimit-reset`` headers see
everyone's, so each response updates the budget: when the hourly quota runs low, the remaining
requests are spread evenly until the reset instead of being spent at once and hitting zero; at zero,
requests wait for the reset; after a 429, they wait ``retry_after`` (and nothing else: a burst-limit
429 reports no quota left, which is about the minute, not the hour).

:class:`TokenBudget` is the pure bookkeeping (times are plain floats: the event loop's clock, so
virtual time in tests works); :class:`RateLimiter` adds the waiting and keeps one budget per token.
Tokens are never stored: budgets are keyed by the token's SHA-256.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Mapping

__all__ = ["RateLimiter", "RateLimits", "ServerQuota", "TokenBudget", "Waiting", "token_key"]

logger = logging.getLogger(__name__)

_MINUTE = 60.0
_HOUR = 3600.0
# Waking up this much early is harmless under a 10 % margin, and it stops a waiter from spinning
# on sub-microsecond remainders that a coarse clock cannot sleep through.
_CLOCK_TOLERANCE = 1e-3

# Entered around a wait for permission to send (see RateLimiter).
Waiting = Callable[[], contextlib.AbstractAsyncContextManager[None]]


@dataclasses.dataclass(frozen=True)
class RateLimits:
    """DigitalOcean's published limits and how far below them to stay."""

    per_minute: int = 250
    per_hour: int = 5000
    safety_margin: float = 0.10  # fraction of each limit left unused (other clients, clock skew)
    slowdown_below: float = (
        0.05  # spread requests out once `remaining` < this fraction of the limit
    )

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_hour < 1:
            raise ValueError("limits must allow at least one request")
        if not 0 <= self.safety_margin < 1 or not 0 <= self.slowdown_below < 1:
            raise ValueError("safety_margin and slowdown_below must be fractions in [0, 1)")

    @property
    def minute_budget(self) -> int:
        return max(1, math.floor(self.per_minute * (1 - self.safety_margin)))

    @property
    def hour_budget(self) -> int:
        return max(1, math.floor(self.per_hour * (1 - self.safety_margin)))


@dataclasses.dataclass(frozen=True)
class ServerQuota:
    """What one response's ``ratelimit-*`` headers said about the token's hourly quota."""

    limit: int | None
    remaining: int
    reset_in: float  # seconds from the response until the oldest counted request leaves the window

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, now_epoch: float) -> ServerQuota | None:
        """Parse the headers; ``None`` if they are absent or garbled (then we rely on our count)."""
        remaining = _parse_int(headers.get("ratelimit-remaining"))
        reset = _parse_int(headers.get("ratelimit-reset"))
        if remaining is None or reset is None:
            return None
        reset_in = min(max(reset - now_epoch, 0.0), _HOUR)
        return cls(
            limit=_parse_int(headers.get("ratelimit-limit")), remaining=remaining, reset_in=reset_in
        )


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


class TokenBudget:
    """The sliding windows and server hints of one token; all times are event-loop seconds."""

    def __init__(self, *, limits: RateLimits) -> None:
        self._limits = limits
        self._minute: collections.deque[float] = collections.deque()
        self._hour: collections.deque[float] = collections.deque()
        self._blocked_until = -math.inf  # after a 429, or with no quota left at all
        self._pace_interval = 0.0  # the spacing of requests while the server's quota runs low
        self._pace_until = -math.inf  # when the server's window resets and the pacing ends

    def delay(self, now: float) -> float:
        """Seconds to wait at ``now`` before the next request may be sent (0: send now)."""
        self._forget_before(now)
        waits = [
            0.0,
            _window_wait(self._minute, budget=self._limits.minute_budget, span=_MINUTE, now=now),
            _window_wait(self._hour, budget=self._limits.hour_budget, span=_HOUR, now=now),
            self._blocked_until - now,
        ]
        if self._hour and now < self._pace_until:
            waits.append(self._hour[-1] + self._pace_interval - now)
        return max(waits)

    def record(self, now: float) -> None:
        """A request is sent at ``now``: it counts in both windows."""
        self._minute.append(now)
        self._hour.append(now)

    def settle(self, sent: float, now: float) -> None:
        """The request recorded at ``sent`` was answered (or failed) at ``now``: count it from
        ``now`` on."""
        for window in (self._minute, self._hour):
            with contextlib.suppress(ValueError):  # already out of the window: count it again
                window.remove(sent)
            bisect.insort(window, now)

    def observe(self, now: float, quota: ServerQuota) -> None:
        """Take in the server's view of the quota, as of a response received at ``now``."""
        limit = quota.limit or self._limits.per_hour
        reset_at = now + quota.reset_in
        if quota.remaining == 0:
            # DigitalOcean documents that a 0 may be its per-minute burst limit speaking, while
            # `ratelimit-reset` is the hourly window's (up to an hour away): wait for the sooner
            # of the two, and let a 429's Retry-After say if more is needed.
            self._blocked_until = max(self._blocked_until, min(reset_at, now + _MINUTE))
        elif quota.remaining < limit * self._limits.slowdown_below:
            self._pace_interval = quota.reset_in / quota.remaining
            self._pace_until = reset_at
        else:
            self._pace_interval, self._pace_until = 0.0, -math.inf

    def pause(self, now: float, seconds: float) -> None:
        """Send nothing for ``seconds`` from ``now`` (the server answered 429)."""
        self._blocked_until = max(self._blocked_until, now + seconds)

    def is_idle(self, now: float) -> bool:
        """Nothing counted and nothing pending: the budget can be dropped without losing state."""
        self._forget_before(now)
        return not self._hour and now >= self._blocked_until and now >= self._pace_until

    def _forget_before(self, now: float) -> None:
        _drop_older_than(self._minute, now - _MINUTE)
        _drop_older_than(self._hour, now - _HOUR)


def _window_wait(sent: collections.deque[float], *, budget: int, span: float, now: float) -> float:
    """How long until the window ``span`` has room for one more request."""
    excess = len(sent) - budget
    if excess < 0:
        return 0.0
    # The request that must leave the window for ours to fit; requests leave `span` after sending.
    return sent[excess] + span - now


def _drop_older_than(sent: collections.deque[float], horizon: float) -> None:
    while sent and sent[0] <= horizon:
        sent.popleft()


def token_key(token: str) -> str:
    """The key under which a token's budget is kept: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclasses.dataclass
class _Entry:
    budget: TokenBudget
    # Waiters queue up in order (asyncio.Lock is FIFO): the next request for a token waits for the
    # one before it, so the earliest caller gets the earliest slot.
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


def _not_parking() -> contextlib.AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()


class RateLimiter:
    """Makes each request wait for its token's budget; one instance per client.

    ``waiting`` is entered around every wait (``dispatch.parked``: a reconciliation waiting for
    permission gives its worker slot to one that can go ahead, perhaps with another token).
    """

    def __init__(self, *, limits: RateLimits, waiting: Waiting = _not_parking) -> None:
        self._limits = limits
        self._entries: dict[str, _Entry] = {}
        self._waiting = waiting

    async def acquire(self, *, token: str) -> float:
        """Wait until ``token`` may send one request and count it; return the event-loop time it
        is counted at, which :meth:`settle` needs once the request is answered."""
        loop = asyncio.get_running_loop()
        entry = self._entry(token_key(token), now=loop.time())
        if entry.lock.locked() or entry.budget.delay(loop.time()) > _CLOCK_TOLERANCE:
            async with self._waiting():
                return await self._acquire(entry)
        return await self._acquire(entry)

    async def _acquire(self, entry: _Entry) -> float:
        loop = asyncio.get_running_loop()
        async with entry.lock:
            while (delay := entry.budget.delay(loop.time())) > _CLOCK_TOLERANCE:
                logger.debug("Rate limit: waiting %.3fs before the next request", delay)
                await asyncio.sleep(delay)
            sent = loop.time()
            entry.budget.record(sent)
        return sent

    def settle(self, *, token: str, sent: float) -> None:
        """The request :meth:`acquire` counted at ``sent`` is over: count it from now on."""
        now = asyncio.get_running_loop().time()
        self._entry(token_key(token), now=now).budget.settle(sent, now)

    def observe(self, *, token: str, quota: ServerQuota) -> None:
        """Feed a response's ``ratelimit-*`` headers into the token's budget."""
        now = asyncio.get_running_loop().time()
        self._entry(token_key(token), now=now).budget.observe(now, quota)

    def pause(self, *, token: str, seconds: float) -> None:
        """Hold every request with this token for ``seconds`` (after a 429)."""
        now = asyncio.get_running_loop().time()
        self._entry(token_key(token), now=now).budget.pause(now, seconds)

    def _entry(self, key: str, *, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            self._forget_idle(now)
            entry = self._entries[key] = _Entry(budget=TokenBudget(limits=self._limits))
        return entry

    def _forget_idle(self, now: float) -> None:
        # Tokens get rotated; without this, every token ever seen would keep a budget forever.
        idle = [
            key
            for key, entry in self._entries.items()
            if not entry.lock.locked() and entry.budget.is_idle(now)
        ]
        for key in idle:
            del self._entries[key]
