"""When to fetch the next credential: the operator's whole timing policy, as pure functions.

DESIGN 4.3-4.5 in code. Nothing here reads a clock or draws a random number: ``now`` and every
jitter fraction are arguments, so the same inputs always give the same plan and the tests state
exact times. The caller draws the randomness; :func:`renewal_jitter` gives it a stable draw per
credential, so that re-planning (after a restart, on every watch event) lands on the same time and
the status does not change for nothing.

Rules beyond the design's text, and why:

- ``renewBefore`` is capped at half the lifetime. A larger one renews sooner than halfway through
  (or, at or past the full lifetime, immediately after every fetch): tokens that cannot be revoked,
  minted in a loop, for no safety gained. With the cap and at most 10 % jitter, a credential is
  always used for at least 45 % of its lifetime.
- What a pending retry after a failure postpones is the failure state machine's business
  (``failures.postpone``); the plan here is about the credential alone.
- Without a valid credential (none yet, or expired) the backoff is capped at 30 s rather than
  5 minutes: every consumer is failing, so the operator must notice DigitalOcean's return within
  seconds (the chaos suite measures it). The quarter-of-what-remains rule would mean retrying every
  second for as long as DigitalOcean is down; 30 s, with the client-side rate limiter above it,
  keeps even a whole expired fleet inside the API's limits.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib

from doks_access.bookkeeping import ObservedSecret
from doks_access.spec import AccessSpec

__all__ = [
    "DEFAULT_RENEW_FRACTION",
    "MAX_RENEWAL_JITTER",
    "MAX_RENEW_FRACTION",
    "MIN_BACKOFF_CAP",
    "REFUSED_RETRY_CAP",
    "STALLED_RETRY",
    "UNCOVERED_BACKOFF_CAP",
    "FetchNow",
    "FetchReason",
    "Plan",
    "Suspended",
    "WaitUntil",
    "failure_backoff",
    "guard_marks",
    "next_action",
    "next_guard",
    "refused_retry",
    "renewal_jitter",
    "renewal_time",
]

DEFAULT_RENEW_FRACTION = 1 / 3  # renewBefore when the spec has none (DESIGN 4.3)
MAX_RENEW_FRACTION = 1 / 2  # renewBefore beyond this part of the lifetime is capped
MAX_RENEWAL_JITTER = 0.10  # jitter is at most this part of renewBefore, and only moves earlier
# Permanent failures (401, 404, a missing token Secret, an invalid spec) are retried this slowly.
STALLED_RETRY = datetime.timedelta(minutes=5)
# A request DigitalOcean refused as asked is retried slower and slower, up to this.
REFUSED_RETRY_CAP = datetime.timedelta(hours=1)
MIN_BACKOFF_CAP = datetime.timedelta(seconds=1)
# The cap while no valid credential exists: consumers are down until the next success.
UNCOVERED_BACKOFF_CAP = datetime.timedelta(seconds=30)
_MAX_BACKOFF_EXPONENT = 32  # 5 s * 2**32 is past any cap, and keeps timedelta from overflowing


class FetchReason(enum.Enum):
    """Why a credential is fetched now; the first that applies, in this order, is reported."""

    NEW = "New"  # this object never wrote a credential
    SPEC_CHANGED = "SpecChanged"  # a field that shapes the credential changed, or the target name
    DRIFT = "Drift"  # the Secret was deleted or its content changed under us
    EXPIRED = "Expired"
    REQUESTED = "Requested"  # refresh-requested-at was set to a new value
    DUE = "Due"  # the renewal time has come
    REJECTED = "Rejected"  # the lifetime guard found the held credential refused by the cluster


@dataclasses.dataclass(frozen=True, slots=True)
class FetchNow:
    reason: FetchReason


@dataclasses.dataclass(frozen=True, slots=True)
class WaitUntil:
    time: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Suspended:
    """``spec.suspend``: nothing is fetched and nothing is scheduled until the spec changes."""


Plan = FetchNow | WaitUntil | Suspended


def next_action(
    *,
    now: datetime.datetime,
    spec: AccessSpec,
    observed: ObservedSecret | None,
    last_secret_name: str | None,
    refresh_request: str | None,
    jitter_fraction: float,
) -> Plan:
    """What to do about one DOClusterAccess now (DESIGN 4.3, 4.4).

    ``observed`` is None when the target Secret is missing, not ours or drifted.
    ``last_secret_name`` is ``status.secretName``: where this object last wrote a credential (None:
    never). ``refresh_request`` is the object's refresh-requested-at annotation.
    """
    if spec.suspend:
        return Suspended()
    return _plan(
        now=now,
        spec=spec,
        observed=observed,
        last_secret_name=last_secret_name,
        refresh_request=refresh_request,
        jitter_fraction=jitter_fraction,
    )


def _plan(
    *,
    now: datetime.datetime,
    spec: AccessSpec,
    observed: ObservedSecret | None,
    last_secret_name: str | None,
    refresh_request: str | None,
    jitter_fraction: float,
) -> FetchNow | WaitUntil:
    if observed is None:
        return FetchNow(_reason_without_secret(spec=spec, last_secret_name=last_secret_name))
    if observed.spec_hash != spec.credential_hash():
        return FetchNow(FetchReason.SPEC_CHANGED)
    if now >= observed.expires_at:
        return FetchNow(FetchReason.EXPIRED)
    if refresh_request is not None and refresh_request != observed.handled_refresh_request:
        return FetchNow(FetchReason.REQUESTED)
    renewal = renewal_time(
        issued_at=observed.issued_at,
        expires_at=observed.expires_at,
        renew_before=spec.renew_before,
        jitter_fraction=jitter_fraction,
    )
    if now >= renewal:
        return FetchNow(FetchReason.DUE)
    return WaitUntil(renewal)


def _reason_without_secret(*, spec: AccessSpec, last_secret_name: str | None) -> FetchReason:
    if last_secret_name is None:
        return FetchReason.NEW
    if last_secret_name != spec.target.name:
        return FetchReason.SPEC_CHANGED
    return FetchReason.DRIFT


def renewal_time(
    *,
    issued_at: datetime.datetime,
    expires_at: datetime.datetime,
    renew_before: datetime.timedelta | None,
    jitter_fraction: float,
) -> datetime.datetime:
    """``expires_at - renew_before - jitter``, jitter being ``jitter_fraction * renew_before``.

    ``renew_before`` defaults to a third of the lifetime and is capped at half of it;
    ``jitter_fraction`` is the caller's draw from [0, :data:`MAX_RENEWAL_JITTER`].
    """
    if not 0 <= jitter_fraction <= MAX_RENEWAL_JITTER:
        raise ValueError(f"jitter_fraction must be within [0, {MAX_RENEWAL_JITTER}]")
    lifetime = expires_at - issued_at
    if lifetime <= datetime.timedelta(0):
        raise ValueError("a credential must expire after it is issued")
    lead = min(
        renew_before if renew_before is not None else lifetime * DEFAULT_RENEW_FRACTION,
        lifetime * MAX_RENEW_FRACTION,
    )
    return expires_at - lead - lead * jitter_fraction


def renewal_jitter(*, seed: str) -> float:
    """A jitter fraction in [0, :data:`MAX_RENEWAL_JITTER`) that is the same for the same seed.

    Seed it with what identifies one credential of one object (its uid and issue time): renewals
    of many objects spread out, while re-planning one credential always gives the same time.
    """
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * MAX_RENEWAL_JITTER


def failure_backoff(
    *,
    failures: int,
    now: datetime.datetime,
    expires_at: datetime.datetime | None,
    jitter_fraction: float,
    base: datetime.timedelta = datetime.timedelta(seconds=5),
    cap: datetime.timedelta = datetime.timedelta(minutes=5),
) -> datetime.timedelta:
    """How long to wait after the ``failures``-th consecutive transient failure (DESIGN 4.5).

    Exponential backoff with full jitter: ``jitter_fraction * min(cap', base * 2**(failures - 1))``,
    ``jitter_fraction`` being the caller's uniform draw from [0, 1]. While a credential is still
    valid, ``cap'`` is at most a quarter of its remaining lifetime (but at least a second), so that
    several retries fit before it expires; without one, at most :data:`UNCOVERED_BACKOFF_CAP`.
    """
    if failures < 1:
        raise ValueError("failures must be at least 1")
    if not 0 <= jitter_fraction <= 1:
        raise ValueError("jitter_fraction must be within [0, 1]")
    factor: int = 2 ** min(failures - 1, _MAX_BACKOFF_EXPONENT)
    ceiling = base * factor
    return min(ceiling, _backoff_cap(now=now, expires_at=expires_at, cap=cap)) * jitter_fraction


def _backoff_cap(
    *, now: datetime.datetime, expires_at: datetime.datetime | None, cap: datetime.timedelta
) -> datetime.timedelta:
    if expires_at is None or expires_at <= now:
        return min(cap, UNCOVERED_BACKOFF_CAP)
    return min(cap, max((expires_at - now) / 4, MIN_BACKOFF_CAP))


def refused_retry(failures: int) -> datetime.timedelta:
    """The wait after the ``failures``-th consecutive refusal (400, 422, SSO required):
    :data:`STALLED_RETRY`, doubling, at most :data:`REFUSED_RETRY_CAP`. No jitter: a refusal
    is about one object's spec, not a service in trouble that many clients return to at once."""
    if failures < 1:
        raise ValueError("failures must be at least 1")
    factor: int = 2 ** min(failures - 1, _MAX_BACKOFF_EXPONENT)
    return min(STALLED_RETRY * factor, REFUSED_RETRY_CAP)


# The lifetime guard (``spec.verify``) checks the held credential at these parts of its lifetime.
GUARD_FRACTIONS = (1 / 4, 2 / 4, 3 / 4)


def guard_marks(
    *, issued_at: datetime.datetime, expires_at: datetime.datetime
) -> tuple[datetime.datetime, ...]:
    """When the lifetime guard checks a credential: its quarter marks.

    With the default ``renewBefore`` (a third of the lifetime), renewal comes before the third
    mark, so a credential is checked twice: a capped or revoked credential is found at most a
    quarter of the requested lifetime after it stopped working.
    """
    lifetime = expires_at - issued_at
    return tuple(issued_at + lifetime * fraction for fraction in GUARD_FRACTIONS)


def next_guard(
    *, issued_at: datetime.datetime, expires_at: datetime.datetime, after: datetime.datetime
) -> datetime.datetime | None:
    """The first guard mark of a credential later than ``after``; None when none is left."""
    later = (m for m in guard_marks(issued_at=issued_at, expires_at=expires_at) if m > after)
    return next(later, None)
