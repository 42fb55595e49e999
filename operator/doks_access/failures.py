"""What a failed fetch changes and when to try again: the failure/retry state machine (pure).

One object's failures are a :class:`FailureState`, replaced (never mutated) by the transitions
below; the reconciler keeps the current one between reconciliations and shows it in the status
(``failedAttempts``, ``lastFailureTime``, ``lastFailureReason``, ``Reconciling``/``Stalled``).
Nothing here does I/O or reads a clock: ``now`` and every jitter draw are arguments, so the tests
walk through the transitions at exact times.

The transitions (DESIGN 4.5)::

    CLEAR ──failed()──▶ failing, retry_at set ──failed()──▶ … (attempts + 1, longer backoff)
      ▲                      │
      └──── succeeded(), spec_changed() ◀──┘      token_changed(): retry_at cleared (try now)
                                                   account_changed(): likewise

- A transient failure (5xx, no answer, an invalid response) backs off exponentially with full
  jitter (``scheduling.failure_backoff``): capped at a quarter of what remains of the current
  credential, and at 30 s while consumers have no valid credential.
- A 429 waits exactly as long as DigitalOcean asked (``retry_after``).
- A failure that needs a human (401, 404, an unknown or ambiguous cluster name, a missing token
  Secret) is retried slowly (``scheduling.STALLED_RETRY``); when it concerns the token, the token
  Secret is looked at every :data:`TOKEN_POLL` and a change retries at once; when it is a
  ClusterDOAccount's refusal, a change of the account (a watch event) retries at once.
- A request DigitalOcean refuses as asked (400, 422) or a cluster that requires SSO gets the same
  answer until someone changes something, so its slow retry doubles up to an hour
  (``scheduling.refused_retry``): at most a call an hour, for as long as nobody acts.
- A new refresh request (the annotation set to a new value) is tried at once even while a failure
  that needs a human waits: it is how a person says "I fixed it on DigitalOcean's side". Each
  value is tried once (``refresh_request``), so a failing request does not become a loop.
- A pending retry postpones every fetch (a watch event, a requested refresh), so that nothing turns
  backoff into a hot loop -- with one exception: consumers losing their credential (the Secret was
  deleted or broken, :attr:`FetchReason.DRIFT`) while they still had one is an outage, tried at once
  unless DigitalOcean itself asked to wait (429). The attempt that follows failed without a
  credential, so it is not tried at once again: the 30 s cap applies from then on.

Reasons are an enum (:class:`FailureReason`), whose values are what the API shows.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum

from doks_access import scheduling
from doks_access.conditions import ReconcilingReason, StalledReason

__all__ = [
    "CLEAR",
    "MIN_RETRY",
    "TOKEN_POLL",
    "Failure",
    "FailureReason",
    "FailureState",
    "failed",
    "next_look",
    "postpone",
    "spec_changed",
    "succeeded",
    "token_changed",
]

# How often the token Secret of an object stalled on its token is looked at (one GET, no
# DigitalOcean call): a fixed token is noticed in seconds without watching Secrets we do not own.
TOKEN_POLL = datetime.timedelta(seconds=5)
# A retry is never planned sooner than this: a zero wait would reconcile in a loop.
MIN_RETRY = datetime.timedelta(milliseconds=100)


class FailureReason(enum.StrEnum):
    """Why a fetch failed; the value is ``status.lastFailureReason`` and the metric's result."""

    # Transient: backed off and retried.
    SERVER = "Server"  # DigitalOcean answered 5xx
    TRANSPORT = "Transport"  # no answer: a timeout, a refused or reset connection
    INVALID_RESPONSE = "InvalidResponse"  # an answer we cannot use, or a failed verification
    CREDENTIAL_REJECTED = "CredentialRejected"  # the cluster refused the new credential (401)
    RATE_LIMITED = "RateLimited"  # 429
    # Need a human: retried slowly, and at once when the spec or the token Secret changes.
    UNAUTHORIZED = "Unauthorized"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    AMBIGUOUS_CLUSTER_NAME = "AmbiguousClusterName"
    TOKEN_SECRET_MISSING = "TokenSecretMissing"  # noqa: S105 - a reason, not a secret
    # DigitalOcean answered, and will answer the same until something changes: retried slower.
    REQUEST_REFUSED = "RequestRefused"  # 400 or 422 on the kubeconfig call
    SSO_REQUIRED = "SSORequired"  # the cluster accepts no token credential
    # A ClusterDOAccount (spec.accountRef) does not serve the request: its policy, or itself.
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    CLUSTER_NOT_ALLOWED = "ClusterNotAllowed"
    EXPIRY_TOO_LONG = "ExpiryTooLong"
    VERIFY_REQUIRED = "VerifyRequired"
    ACCOUNT_NOT_FOUND = "AccountNotFound"
    INVALID_ACCOUNT = "InvalidAccount"

    @property
    def stalled(self) -> StalledReason | None:
        """The ``Stalled`` reason this failure shows, if it needs a human."""
        return _STALLED.get(self)

    @property
    def reconciling(self) -> ReconcilingReason | None:
        """The ``Reconciling`` reason this failure shows, if it is retried by itself."""
        if self in _STALLED:
            return None
        if self is FailureReason.RATE_LIMITED:
            return ReconcilingReason.RATE_LIMITED
        return ReconcilingReason.RETRYING_AFTER_ERROR

    @property
    def refused(self) -> bool:
        """Whether DigitalOcean refused the request itself, so asking again unchanged is futile."""
        return self in (FailureReason.REQUEST_REFUSED, FailureReason.SSO_REQUIRED)

    @property
    def concerns_the_token(self) -> bool:
        """Whether fixing the token Secret is the fix, so it is worth watching."""
        return self in (FailureReason.UNAUTHORIZED, FailureReason.TOKEN_SECRET_MISSING)

    @property
    def concerns_the_account(self) -> bool:
        """Whether changing the ClusterDOAccount is the fix (the accounts are watched)."""
        return self in _ACCOUNT_REASONS


_ACCOUNT_REASONS = frozenset(
    {
        FailureReason.NAMESPACE_NOT_ALLOWED,
        FailureReason.CLUSTER_NOT_ALLOWED,
        FailureReason.EXPIRY_TOO_LONG,
        FailureReason.VERIFY_REQUIRED,
        FailureReason.ACCOUNT_NOT_FOUND,
        FailureReason.INVALID_ACCOUNT,
    }
)

_STALLED = {
    FailureReason.UNAUTHORIZED: StalledReason.UNAUTHORIZED,
    FailureReason.CLUSTER_NOT_FOUND: StalledReason.CLUSTER_NOT_FOUND,
    FailureReason.AMBIGUOUS_CLUSTER_NAME: StalledReason.AMBIGUOUS_CLUSTER_NAME,
    FailureReason.TOKEN_SECRET_MISSING: StalledReason.TOKEN_SECRET_MISSING,
    FailureReason.REQUEST_REFUSED: StalledReason.REQUEST_REFUSED,
    FailureReason.SSO_REQUIRED: StalledReason.SSO_REQUIRED,
    FailureReason.NAMESPACE_NOT_ALLOWED: StalledReason.NAMESPACE_NOT_ALLOWED,
    FailureReason.CLUSTER_NOT_ALLOWED: StalledReason.CLUSTER_NOT_ALLOWED,
    FailureReason.EXPIRY_TOO_LONG: StalledReason.EXPIRY_TOO_LONG,
    FailureReason.VERIFY_REQUIRED: StalledReason.VERIFY_REQUIRED,
    FailureReason.ACCOUNT_NOT_FOUND: StalledReason.ACCOUNT_NOT_FOUND,
    FailureReason.INVALID_ACCOUNT: StalledReason.INVALID_ACCOUNT,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """One failed fetch."""

    reason: FailureReason
    detail: str  # one sentence for people; never credential material
    retry_after: datetime.timedelta | None = None  # how long a 429 asked us to wait


@dataclasses.dataclass(frozen=True, slots=True)
class FailureState:
    """One object's failures since its last success (or spec change)."""

    attempts: int = 0  # consecutive failed fetches
    last: Failure | None = None
    last_time: datetime.datetime | None = None
    retry_at: datetime.datetime | None = None  # None: a fetch may happen whenever it is due
    # Whether consumers had no valid credential when the last attempt failed.
    uncovered: bool = False
    # The token Secret's resourceVersion when a token failure was seen (None: it did not exist).
    token_version: str | None = None
    # The refresh-requested-at value when the last attempt was made: a new one is tried at once.
    refresh_request: str | None = None

    @property
    def watching_token(self) -> bool:
        """Whether the token Secret is being looked at for a change."""
        return self.last is not None and self.last.reason.concerns_the_token


CLEAR = FailureState()


def failed(
    state: FailureState,
    failure: Failure,
    *,
    now: datetime.datetime,
    expires_at: datetime.datetime | None,
    jitter_fraction: float,
    token_version: str | None = None,
    refresh_request: str | None = None,
) -> FailureState:
    """The state after ``failure`` at ``now``; ``expires_at`` is the expiry of the credential
    consumers hold (None: none), ``jitter_fraction`` a uniform draw from [0, 1]."""
    attempts = state.attempts + 1
    if failure.reason is FailureReason.RATE_LIMITED:
        wait = failure.retry_after or datetime.timedelta(0)
    elif failure.reason.refused:
        wait = scheduling.refused_retry(attempts)
    elif failure.reason.stalled is not None:
        wait = scheduling.STALLED_RETRY
    else:
        wait = scheduling.failure_backoff(
            failures=attempts, now=now, expires_at=expires_at, jitter_fraction=jitter_fraction
        )
    return FailureState(
        attempts=attempts,
        last=failure,
        last_time=now,
        retry_at=now + max(wait, MIN_RETRY),
        uncovered=expires_at is None or expires_at <= now,
        token_version=token_version if failure.reason.concerns_the_token else None,
        refresh_request=refresh_request,
    )


def succeeded(state: FailureState) -> FailureState:
    """A credential was written: every failure is forgotten."""
    del state
    return CLEAR


def spec_changed(state: FailureState) -> FailureState:
    """A new generation of the spec resets the backoff and retries at once (DESIGN 4.5)."""
    del state
    return CLEAR


def token_changed(state: FailureState, *, version: str | None) -> FailureState:
    """The token Secret changed while a token failure waited: try again now."""
    if not state.watching_token or version == state.token_version:
        return state
    return dataclasses.replace(state, retry_at=None, token_version=version)


def account_changed(state: FailureState) -> FailureState:
    """The ClusterDOAccount changed while its refusal waited for the slow retry: try again now
    (deciding costs no DigitalOcean call; a refusal that stands is simply reported again)."""
    if state.last is None or not state.last.reason.concerns_the_account:
        return state
    if state.retry_at is None:
        return state
    return dataclasses.replace(state, retry_at=None)


def postpone(
    plan: scheduling.Plan,
    state: FailureState,
    *,
    now: datetime.datetime,
    refresh_request: str | None = None,
) -> scheduling.Plan:
    """``plan``, or waiting for the pending retry instead of fetching now; ``refresh_request``
    is the object's refresh-requested-at annotation."""
    if not isinstance(plan, scheduling.FetchNow) or state.retry_at is None:
        return plan
    if now >= state.retry_at or _outage_overrides(plan.reason, state):
        return plan
    if _new_request_overrides(state, refresh_request=refresh_request):
        return plan
    return scheduling.WaitUntil(state.retry_at)


def next_look(
    state: FailureState, *, wait_until: datetime.datetime, now: datetime.datetime
) -> datetime.datetime:
    """When to reconcile again while waiting until ``wait_until``: sooner while the token Secret
    is watched, so that a fix is noticed within :data:`TOKEN_POLL`."""
    if state.watching_token:
        return min(wait_until, now + TOKEN_POLL)
    return wait_until


def _outage_overrides(reason: scheduling.FetchReason, state: FailureState) -> bool:
    """Consumers just lost the credential they had: an outage is worth a try now, unless
    DigitalOcean asked us to wait, or the last try was already made without a credential."""
    rate_limited = state.last is not None and state.last.reason is FailureReason.RATE_LIMITED
    return reason is scheduling.FetchReason.DRIFT and not state.uncovered and not rate_limited


def _new_request_overrides(state: FailureState, *, refresh_request: str | None) -> bool:
    """A person asked for a credential, with a value not tried yet, while a failure that needs
    a human waits: they fixed something, so try now rather than in minutes. (Whatever the plan's
    reason: without a credential yet, it is ``New`` rather than ``Requested``.)"""
    needs_human = state.last is not None and state.last.reason.stalled is not None
    return needs_human and refresh_request is not None and refresh_request != state.refresh_request
