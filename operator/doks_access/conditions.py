"""The kstatus conditions of a DOClusterAccess: ``Ready``, ``Reconciling`` and ``Stalled`` (pure).

Users and tools read conditions rather than logs: ``kubectl wait --for=condition=Ready``, Argo CD's
and Flux's health checks (kstatus), printer columns. So they must be exact and quiet: they change
only when the situation does, and ``lastTransitionTime`` moves only when a condition's status flips
(DESIGN 3).

The reconciler describes what it found as a :class:`Situation`; :func:`conditions_for` turns that
into conditions. Every reason is a member of an enum here; the enums are ``StrEnum`` so that a
reason compares equal to the text the API shows.

Decisions where the design is silent:

- ``Ready`` is always present; ``Reconciling`` and ``Stalled`` only while True (the kstatus
  "abnormal-true" convention Flux follows), so a healthy object shows one condition.
- ``Ready`` is True exactly while the Secret holds an unexpired credential for the current spec,
  whatever else is going on: a failing renewal, a 401 or ``suspend`` do not take it away. Once the
  credential has expired the reason is ``Expired``; before there is one it is the stalling reason,
  ``Suspended`` or ``Pending``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence

from doks_access import bookkeeping

__all__ = [
    "Condition",
    "ConditionType",
    "ReadyReason",
    "ReconcilingReason",
    "Situation",
    "StalledReason",
    "conditions_for",
    "sentence",
    "transition_time",
]


class ConditionType(enum.StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class StalledReason(enum.StrEnum):
    """Problems that need a human: retried only slowly, or when the spec or token Secret changes."""

    INVALID_SPEC = "InvalidSpec"
    TOKEN_SECRET_MISSING = "TokenSecretMissing"  # noqa: S105 - a reason, not a secret
    UNAUTHORIZED = "Unauthorized"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    AMBIGUOUS_CLUSTER_NAME = "AmbiguousClusterName"
    SECRET_CONFLICT = "SecretConflict"  # noqa: S105 - a reason, not a secret
    REQUEST_REFUSED = "RequestRefused"
    SSO_REQUIRED = "SSORequired"
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    CLUSTER_NOT_ALLOWED = "ClusterNotAllowed"
    EXPIRY_TOO_LONG = "ExpiryTooLong"
    VERIFY_REQUIRED = "VerifyRequired"
    ACCOUNT_NOT_FOUND = "AccountNotFound"
    INVALID_ACCOUNT = "InvalidAccount"


class ReadyReason(enum.StrEnum):
    """Why ``Ready`` is what it is: the credential's state, else why there is none (DESIGN 3)."""

    ISSUED = "Issued"
    PENDING = "Pending"
    EXPIRED = "Expired"
    SUSPENDED = "Suspended"
    # The lifetime guard found that the cluster no longer accepts the held credential.
    CREDENTIAL_REJECTED = "CredentialRejected"
    # Without a credential, Ready says why the object is stalled: one member per StalledReason.
    INVALID_SPEC = StalledReason.INVALID_SPEC.value
    TOKEN_SECRET_MISSING = StalledReason.TOKEN_SECRET_MISSING.value
    UNAUTHORIZED = StalledReason.UNAUTHORIZED.value
    CLUSTER_NOT_FOUND = StalledReason.CLUSTER_NOT_FOUND.value
    AMBIGUOUS_CLUSTER_NAME = StalledReason.AMBIGUOUS_CLUSTER_NAME.value
    SECRET_CONFLICT = StalledReason.SECRET_CONFLICT.value
    REQUEST_REFUSED = StalledReason.REQUEST_REFUSED.value
    SSO_REQUIRED = StalledReason.SSO_REQUIRED.value
    NAMESPACE_NOT_ALLOWED = StalledReason.NAMESPACE_NOT_ALLOWED.value
    CLUSTER_NOT_ALLOWED = StalledReason.CLUSTER_NOT_ALLOWED.value
    EXPIRY_TOO_LONG = StalledReason.EXPIRY_TOO_LONG.value
    VERIFY_REQUIRED = StalledReason.VERIFY_REQUIRED.value
    ACCOUNT_NOT_FOUND = StalledReason.ACCOUNT_NOT_FOUND.value
    INVALID_ACCOUNT = StalledReason.INVALID_ACCOUNT.value


class ReconcilingReason(enum.StrEnum):
    RENEWING = "Renewing"
    RATE_LIMITED = "RateLimited"
    RETRYING_AFTER_ERROR = "RetryingAfterError"


_STALLED_MESSAGES = {
    StalledReason.INVALID_SPEC: "The spec is invalid.",
    StalledReason.TOKEN_SECRET_MISSING: "The DigitalOcean API token Secret is missing or empty.",
    StalledReason.UNAUTHORIZED: "DigitalOcean refused the API token.",
    StalledReason.CLUSTER_NOT_FOUND: "DigitalOcean knows no such cluster for this API token.",
    StalledReason.AMBIGUOUS_CLUSTER_NAME: "Several clusters have this name.",
    StalledReason.SECRET_CONFLICT: "The target Secret exists and is not managed by this object.",
    StalledReason.REQUEST_REFUSED: "DigitalOcean refused to issue a credential as asked.",
    StalledReason.SSO_REQUIRED: (
        "The cluster requires SSO: DigitalOcean issues no token credential that it accepts."
    ),
    StalledReason.NAMESPACE_NOT_ALLOWED: "The ClusterDOAccount does not serve this namespace.",
    StalledReason.CLUSTER_NOT_ALLOWED: "The ClusterDOAccount does not grant this cluster here.",
    StalledReason.EXPIRY_TOO_LONG: "The ClusterDOAccount allows no lifetime this long.",
    StalledReason.VERIFY_REQUIRED: "The ClusterDOAccount requires spec.verify: true.",
    StalledReason.ACCOUNT_NOT_FOUND: "The ClusterDOAccount or its token cannot be found.",
    StalledReason.INVALID_ACCOUNT: "The ClusterDOAccount's spec is invalid.",
}
_RECONCILING_MESSAGES = {
    ReconcilingReason.RENEWING: "Fetching a new credential.",
    ReconcilingReason.RATE_LIMITED: "Waiting for DigitalOcean's rate limit.",
    ReconcilingReason.RETRYING_AFTER_ERROR: "Fetching a credential failed; retrying.",
}

Reason = ReadyReason | ReconcilingReason | StalledReason


@dataclasses.dataclass(frozen=True, slots=True)
class Situation:
    """What one reconciliation found; the conditions follow from it."""

    generation: int  # metadata.generation of the spec this is about
    secret_name: str
    # Expiry of the credential the target Secret holds for the current spec; None: there is none.
    expires_at: datetime.datetime | None = None
    suspended: bool = False
    reconciling: ReconcilingReason | None = None
    stalled: StalledReason | None = None
    # One sentence about the current problem, for people; never credential material.
    detail: str | None = None
    # The lifetime guard found that the cluster refuses the credential the Secret holds.
    rejected: bool = False

    def __post_init__(self) -> None:
        if self.reconciling is not None and self.stalled is not None:
            raise ValueError("an object is either reconciling or stalled, not both")


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One condition. A condition read back from the API keeps its reason as text (it may predate
    today's reasons) and its transition time as None when that does not parse."""

    type: ConditionType
    status: bool
    reason: str
    message: str
    observed_generation: int
    last_transition_time: datetime.datetime | None

    def to_dict(self) -> dict[str, object]:
        moment = self.last_transition_time
        return {
            "type": self.type.value,
            "status": "True" if self.status else "False",
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": None if moment is None else bookkeeping.format_timestamp(moment),
            "reason": str(self.reason),
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Condition | None:
        """A condition as stored; None for a type this operator does not set, or no status."""
        try:
            kind = ConditionType(str(raw.get("type")))
        except ValueError:
            return None
        status = raw.get("status")
        if status not in ("True", "False"):
            return None
        generation = raw.get("observedGeneration")
        return cls(
            type=kind,
            status=status == "True",
            reason=str(raw.get("reason") or ""),
            message=str(raw.get("message") or ""),
            observed_generation=generation if isinstance(generation, int) else 0,
            last_transition_time=bookkeeping.parse_timestamp(raw.get("lastTransitionTime")),
        )


def conditions_for(
    *, situation: Situation, now: datetime.datetime, previous: Sequence[Condition] = ()
) -> tuple[Condition, ...]:
    """Ready, then Reconciling and Stalled when True; ``previous`` are the object's conditions."""
    candidates: list[tuple[ConditionType, bool, Reason | None, str]] = [
        (ConditionType.READY, *_ready(situation, now=now)),
        (ConditionType.RECONCILING, *_reconciling(situation)),
        (ConditionType.STALLED, *_stalled(situation)),
    ]
    return tuple(
        Condition(
            type=kind,
            status=status,
            reason=reason or "",
            message=message,
            observed_generation=situation.generation,
            last_transition_time=transition_time(previous, kind=kind, status=status, now=now),
        )
        for kind, status, reason, message in candidates
        if kind is ConditionType.READY or status
    )


def _ready(situation: Situation, *, now: datetime.datetime) -> tuple[bool, ReadyReason, str]:
    expires_at = situation.expires_at
    suspended = "Refreshing is suspended. " if situation.suspended else ""
    if expires_at is not None and now < expires_at and situation.rejected:
        refused = (
            f"The cluster no longer accepts the credential in Secret {situation.secret_name}"
            " (the lifetime guard's SelfSubjectReview was answered 401); fetching a new one."
        )
        return False, ReadyReason.CREDENTIAL_REJECTED, _join(refused, situation)
    if expires_at is not None and now < expires_at:
        reason = ReadyReason.SUSPENDED if situation.suspended else ReadyReason.ISSUED
        held = f"Secret {situation.secret_name} holds a credential valid until"
        return True, reason, f"{suspended}{held} {_timestamp(expires_at)}."
    if expires_at is not None:
        expired = f"The credential in Secret {situation.secret_name} expired at"
        message = _join(f"{suspended}{expired} {_timestamp(expires_at)}.", situation)
        return False, ReadyReason.EXPIRED, message
    if situation.stalled is not None:
        message = _join(_STALLED_MESSAGES[situation.stalled], situation)
        return False, ReadyReason(situation.stalled.value), message
    if situation.suspended:
        return False, ReadyReason.SUSPENDED, f"{suspended}There is no credential yet."
    return False, ReadyReason.PENDING, _join("Waiting for the first credential.", situation)


def _reconciling(situation: Situation) -> tuple[bool, ReconcilingReason | None, str]:
    if situation.reconciling is None:
        return False, None, ""
    message = _join(_RECONCILING_MESSAGES[situation.reconciling], situation)
    return True, situation.reconciling, message


def _stalled(situation: Situation) -> tuple[bool, StalledReason | None, str]:
    if situation.stalled is None:
        return False, None, ""
    return True, situation.stalled, _join(_STALLED_MESSAGES[situation.stalled], situation)


def sentence(text: str) -> str:
    """``text`` (an exception's message, which starts in lower case) to start a sentence."""
    return text[:1].upper() + text[1:]


def _join(message: str, situation: Situation) -> str:
    return f"{message} {situation.detail}" if situation.detail else message


def transition_time(
    previous: Sequence[Condition],
    *,
    kind: ConditionType,
    status: bool,
    now: datetime.datetime,
) -> datetime.datetime:
    """The previous transition time while the status stays the same, else ``now``."""
    before = next((c for c in previous if c.type is kind), None)
    if before is None or before.status is not status:
        return now
    return before.last_transition_time or now


def _timestamp(moment: datetime.datetime) -> str:
    return bookkeeping.format_timestamp(moment)
