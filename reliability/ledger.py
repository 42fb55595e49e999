"""What the reliability scenarios count, and the arithmetic they judge it by; no I/O here.

A consumer's attempt ends one of four ways, and only one of them is the operator's fault: the API
server refused the credential the Secret held (``refused``). An API server that is down (restarted
on purpose) or a Secret that is not there yet are counted apart, so that a restart of the control
plane is not mistaken for a bad credential, nor a bad credential hidden behind a restart.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
from collections.abc import Iterable, Mapping

from doks_access import bookkeeping


class Attempt(enum.Enum):
    AUTHENTICATED = "authenticated"
    REFUSED = "refused"  # 401: the credential in the Secret does not work
    UNREACHABLE = "unreachable"  # the API server did not answer, or answered 5xx
    NO_CREDENTIAL = "no-credential"  # no Secret, or nothing usable in it


@dataclasses.dataclass
class ConsumerTally:
    """One consumer's attempts, and which credentials it saw (by fingerprint, never the secret)."""

    name: str
    counts: dict[Attempt, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(Attempt, 0)
    )
    credentials: list[str] = dataclasses.field(default_factory=list)  # in the order first seen
    first_seen: list[float] = dataclasses.field(default_factory=list)  # epoch, one per credential
    refusals: list[float] = dataclasses.field(default_factory=list)  # epoch seconds, first 20
    last_refusal: float | None = None  # epoch seconds

    def record(self, attempt: Attempt, *, at: float, credential: str | None) -> None:
        self.counts[attempt] += 1
        if credential is not None and credential not in self.credentials:
            self.credentials.append(credential)
            self.first_seen.append(at)
        if attempt is Attempt.REFUSED:
            self.last_refusal = at
            if len(self.refusals) < 20:
                self.refusals.append(at)

    @property
    def attempts(self) -> int:
        return sum(self.counts.values())

    def new_credential_after(self, moment: float) -> float | None:
        """When this consumer first used a credential it had not seen before ``moment``."""
        return next((at for at in self.first_seen if at >= moment), None)

    def refused_outside(self, windows: Iterable[tuple[float, float]]) -> int:
        """Refusals outside the given (start, end) windows, among the recorded ones (the first
        20 and the last)."""
        spans = list(windows)
        recorded = {*self.refusals, *([self.last_refusal] if self.last_refusal else [])}
        return sum(1 for at in recorded if not any(a <= at <= b for a, b in spans))


def total(tallies: Iterable[ConsumerTally], attempt: Attempt) -> int:
    return sum(t.counts[attempt] for t in tallies)


def fetch_bound(*, lifetime: float, duration: float, renew_fraction: float = 1 / 3) -> int:
    """The most fetches one object needs in ``duration`` seconds: the first, then one per renewal.

    A renewal comes ``renewBefore`` (``renew_fraction`` of the lifetime) plus at most 10 % of it
    in jitter before expiry, so credentials follow each other at least every
    ``lifetime * (1 - 1.1 * renew_fraction)`` seconds.
    """
    interval = lifetime * (1 - 1.1 * renew_fraction)
    return 1 + math.ceil(duration / interval)


@dataclasses.dataclass(frozen=True)
class SecretState:
    """An object's target Secret as the audit sees it (``None`` fields: absent or unreadable)."""

    exists: bool
    expires_at: datetime.datetime | None = None
    renewal_time: datetime.datetime | None = None  # from the object's status


def audit(now: datetime.datetime, state: SecretState, *, grace: float) -> str | None:
    """Why an object counts as lost (``None``: it is not): no Secret, an expired credential, or
    one kept more than ``grace`` seconds past its renewal time."""
    if not state.exists:
        return "no Secret"
    if state.expires_at is None:
        return "the Secret does not say when its credential expires"
    if state.expires_at <= now:
        return f"its credential expired at {bookkeeping.format_timestamp(state.expires_at)}"
    if state.renewal_time is not None and now - state.renewal_time > datetime.timedelta(
        seconds=grace
    ):
        return f"not renewed since {bookkeeping.format_timestamp(state.renewal_time)}"
    return None


def secret_state(
    secret_annotations: Mapping[str, str] | None, status: Mapping[str, object] | None
) -> SecretState:
    if secret_annotations is None:
        return SecretState(exists=False)
    expires = secret_annotations.get(bookkeeping.EXPIRES_AT)
    renewal = (status or {}).get("renewalTime")
    return SecretState(
        exists=True,
        expires_at=bookkeeping.parse_timestamp(expires) if expires else None,
        renewal_time=bookkeeping.parse_timestamp(renewal) if isinstance(renewal, str) else None,
    )


def wasted_fetches(issued: Mapping[str, int], written: Mapping[str, int]) -> int:
    """Credentials DigitalOcean issued that never reached their Secret, over all objects."""
    return sum(max(0, count - written.get(key, 0)) for key, count in issued.items())


@dataclasses.dataclass(frozen=True)
class Interval:
    """When one operator replica was active: from becoming leader until it stopped or was killed."""

    replica: str
    start: float
    end: float


def overlaps(intervals: Iterable[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of intervals of different replicas that share any moment."""
    ordered = sorted(intervals, key=lambda i: i.start)
    found = []
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.start >= first.end:
                break
            if second.replica != first.replica:
                found.append((first, second))
    return found


def outside(times: Iterable[float], intervals: Iterable[Interval]) -> list[float]:
    """The times (of one replica's reconciling) that fall in none of its active intervals."""
    spans = list(intervals)
    return [t for t in times if not any(i.start <= t <= i.end for i in spans)]
