"""Time as an argument: the emulator asks a clock instead of calling ``time.time()`` itself.

Rate-limit windows, credential lifetimes and token reviews all depend on "now". Tests hand the
emulator a :class:`ManualClock` and move it forward, so a one-hour window or a seven-day token can
be crossed without sleeping; :class:`JumpingClock` keeps real time but can skip ahead; the
command-line emulator uses the system clock.
"""

from __future__ import annotations

import datetime
import math
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds since the Unix epoch, like :func:`time.time`."""


def system_clock() -> float:
    return time.time()


class ManualClock:
    """A clock that only moves when told to; safe to read and move from any thread."""

    def __init__(self, *, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now


class JumpingClock:
    """Real time plus an offset that tests move forward: time passes, and can also be skipped.

    For tests next to a real apiserver, which keeps real time: credentials minted now can be
    made to look expired to the emulator's webhook at once, while everything else runs normally.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def jump(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("jump forward only; reset() goes back to real time")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        """Back to real time (for fixtures that share one clock between tests)."""
        with self._lock:
            self._offset = 0.0


def to_datetime(seconds: float) -> datetime.datetime:
    """An aware UTC datetime for epoch ``seconds``."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def rfc3339_seconds(seconds: float) -> str:
    """``2018-11-15T16:00:11Z``: the format of ``created_at`` in the API."""
    return to_datetime(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nanoseconds(seconds: float) -> str:
    """``2019-11-09T11:50:28.889080521Z``: the format of ``expires_at`` in ``/credentials``."""
    # Split before scaling: a float near 1.7e18 ns has no nanosecond precision left.
    whole = math.floor(seconds)
    fraction = round((seconds - whole) * 1_000_000_000)
    whole, fraction = whole + fraction // 1_000_000_000, fraction % 1_000_000_000
    return f"{to_datetime(whole).strftime('%Y-%m-%dT%H:%M:%S')}.{fraction:09d}Z"
