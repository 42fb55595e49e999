"""The status of a DOClusterAccess: kstatus conditions, the status fields, and the events they earn.

Users and tools read the status rather than the logs: ``kubectl wait --for=condition=Ready``,
Argo CD's and Flux's health checks (kstatus), printer columns. So the status must be exact and
quiet: conditions change only when the situation does, ``lastTransitionTime`` moves only when a
condition's status flips, nothing is patched when nothing changed, and an event marks a change of
state, never a retry (DESIGN 3).

The reconciler describes what it found in a :class:`Situation`; :func:`conditions_for` turns that
into conditions, :class:`Status` adds the fields of DESIGN 2, :func:`status_patch` says what to
PATCH (if anything) and :func:`events_for` which events the change deserves.

Decisions where the design is silent:

- ``Ready`` is always present; ``Reconciling`` and ``Stalled`` only while True (the kstatus
  "abnormal-true" convention Flux follows), so a healthy object shows one condition.
- ``Ready`` is True exactly while the Secret holds an unexpired credential for the current spec,
  whatever else is going on: a failing renewal, a 401 or ``suspend`` do not take it away. Once the
  credential has expired the reason is ``Expired``; before there is one it is the stalling reason,
  ``Suspended`` or ``Pending``.
- Fetch failures give a ``RenewalFailed`` event when a streak starts or its reason changes;
  rate limiting and Secret conflicts have events of their own.
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
    "Event",
    "EventType",
    "ReadyReason",
    "ReconcilingReason",
    "Situation",
    "StalledReason",
    "Status",
    "conditions_for",
    "events_for",
    "status_patch",
]


class ConditionType(enum.Enum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class ReadyReason(enum.Enum):
    ISSUED = "Issued"
    PENDING = "Pending"
    EXPIRED = "Expired"
    SECRET_CONFLICT = "SecretConflict"  # noqa: S105 - a reason, not a secret
    INVALID_SPEC = "InvalidSpec"
    TOKEN_SECRET_MISSING = "TokenSecretMissing"  # noqa: S105 - a reason, not a secret
    UNAUTHORIZED = "Unauthorized"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    AMBIGUOUS_CLUSTER_NAME = "AmbiguousClusterName"
    SUSPENDED = "Suspended"


class ReconcilingReason(enum.Enum):
    RENEWING = "Renewing"
    RATE_LIMITED = "RateLimited"
    RETRYING_AFTER_ERROR = "RetryingAfterError"


class StalledReason(enum.Enum):
    """Problems that need a human: retried only slowly, or when the spec or token Secret changes."""

    INVALID_SPEC = "InvalidSpec"
    TOKEN_SECRET_MISSING = "TokenSecretMissing"  # noqa: S105 - a reason, not a secret
    UNAUTHORIZED = "Unauthorized"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    AMBIGUOUS_CLUSTER_NAME = "AmbiguousClusterName"
    SECRET_CONFLICT = "SecretConflict"  # noqa: S105 - a reason, not a secret


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


_STALLED_MESSAGES = {
    StalledReason.INVALID_SPEC: "The spec is invalid.",
    StalledReason.TOKEN_SECRET_MISSING: "The DigitalOcean API token Secret is missing or empty.",
    StalledReason.UNAUTHORIZED: "DigitalOcean refused the API token.",
    StalledReason.CLUSTER_NOT_FOUND: "DigitalOcean knows no such cluster for this API token.",
    StalledReason.AMBIGUOUS_CLUSTER_NAME: "Several clusters have this name.",
    StalledReason.SECRET_CONFLICT: "The target Secret exists and is not managed by this object.",
}
_RECONCILING_MESSAGES = {
    ReconcilingReason.RENEWING: "Fetching a new credential.",
    ReconcilingReason.RATE_LIMITED: "Waiting for DigitalOcean's rate limit.",
    ReconcilingReason.RETRYING_AFTER_ERROR: "Fetching a credential failed; retrying.",
}
# Failures that have an event of their own rather than RenewalFailed.
_OWN_EVENT_FAILURES = frozenset({"RateLimited", "SecretConflict"})


@dataclasses.dataclass(frozen=True)
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

    def __post_init__(self) -> None:
        if self.reconciling is not None and self.stalled is not None:
            raise ValueError("an object is either reconciling or stalled, not both")


@dataclasses.dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: bool
    reason: str
    message: str
    observed_generation: int
    last_transition_time: datetime.datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.type.value,
            "status": "True" if self.status else "False",
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": bookkeeping.format_timestamp(self.last_transition_time),
            "reason": self.reason,
            "message": self.message,
        }


@dataclasses.dataclass(frozen=True)
class Status:
    """The whole ``status`` of a DOClusterAccess (DESIGN 2); None fields are absent."""

    observed_generation: int
    conditions: tuple[Condition, ...]
    cluster_id: str | None = None
    cluster_name: str | None = None
    server: str | None = None
    secret_name: str | None = None
    issued_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    renewal_time: datetime.datetime | None = None
    identity: str | None = None
    failed_attempts: int = 0
    last_failure_time: datetime.datetime | None = None
    last_failure_reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Every status field, None for the absent ones (a merge patch's way to remove a field)."""
        return {
            "observedGeneration": self.observed_generation,
            "conditions": [condition.to_dict() for condition in self.conditions],
            "clusterID": self.cluster_id,
            "clusterName": self.cluster_name,
            "server": self.server,
            "secretName": self.secret_name,
            "issuedAt": _timestamp(self.issued_at),
            "expiresAt": _timestamp(self.expires_at),
            "renewalTime": _timestamp(self.renewal_time),
            "identity": self.identity,
            "failedAttempts": self.failed_attempts,
            "lastFailureTime": _timestamp(self.last_failure_time),
            "lastFailureReason": self.last_failure_reason,
        }

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is kind), None)


@dataclasses.dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


def conditions_for(
    *,
    situation: Situation,
    now: datetime.datetime,
    previous: Sequence[Mapping[str, object]] = (),
) -> tuple[Condition, ...]:
    """Ready, then Reconciling and Stalled when True; ``previous`` is ``status.conditions``."""
    candidates = [
        (ConditionType.READY, *_ready(situation, now=now)),
        (ConditionType.RECONCILING, *_reconciling(situation)),
        (ConditionType.STALLED, *_stalled(situation)),
    ]
    return tuple(
        Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message,
            observed_generation=situation.generation,
            last_transition_time=_transition_time(previous, kind=kind, status=status, now=now),
        )
        for kind, status, reason, message in candidates
        if kind is ConditionType.READY or status
    )


def status_patch(
    *, previous: Mapping[str, object] | None, current: Status
) -> dict[str, object] | None:
    """The merge patch from ``previous`` (the object's status) to ``current``; None: no change.

    Only the operator's fields are compared, so fields it does not know are left alone.
    """
    before = previous or {}
    patch = {key: value for key, value in current.to_dict().items() if before.get(key) != value}
    return patch or None


def events_for(*, previous: Mapping[str, object] | None, current: Status) -> tuple[Event, ...]:
    """The events that the change from ``previous`` (a status dict) to ``current`` deserves."""
    before = previous or {}
    candidates = (
        _issued_event(before, current),
        _entered(before, current, ConditionType.READY, "Expired"),
        _entered(before, current, ConditionType.STALLED, "SecretConflict"),
        _entered(before, current, ConditionType.RECONCILING, "RateLimited"),
        _failure_event(before, current),
    )
    return tuple(event for event in candidates if event is not None)


def _ready(situation: Situation, *, now: datetime.datetime) -> tuple[bool, str, str]:
    expires_at = situation.expires_at
    suspended = "Refreshing is suspended. " if situation.suspended else ""
    if expires_at is not None and now < expires_at:
        reason = ReadyReason.SUSPENDED if situation.suspended else ReadyReason.ISSUED
        held = f"Secret {situation.secret_name} holds a credential valid until"
        return True, reason.value, f"{suspended}{held} {_timestamp(expires_at)}."
    if expires_at is not None:
        expired = f"The credential in Secret {situation.secret_name} expired at"
        message = _join(f"{suspended}{expired} {_timestamp(expires_at)}.", situation)
        return False, ReadyReason.EXPIRED.value, message
    if situation.stalled is not None:
        message = _join(_STALLED_MESSAGES[situation.stalled], situation)
        return False, situation.stalled.value, message
    if situation.suspended:
        return False, ReadyReason.SUSPENDED.value, f"{suspended}There is no credential yet."
    return False, ReadyReason.PENDING.value, _join("Waiting for the first credential.", situation)


def _reconciling(situation: Situation) -> tuple[bool, str, str]:
    if situation.reconciling is None:
        return False, "", ""
    message = _join(_RECONCILING_MESSAGES[situation.reconciling], situation)
    return True, situation.reconciling.value, message


def _stalled(situation: Situation) -> tuple[bool, str, str]:
    if situation.stalled is None:
        return False, "", ""
    return True, situation.stalled.value, _join(_STALLED_MESSAGES[situation.stalled], situation)


def _join(message: str, situation: Situation) -> str:
    return f"{message} {situation.detail}" if situation.detail else message


def _transition_time(
    previous: Sequence[Mapping[str, object]],
    *,
    kind: ConditionType,
    status: bool,
    now: datetime.datetime,
) -> datetime.datetime:
    """The previous transition time while the status stays the same, else ``now``."""
    before = next((c for c in previous if c.get("type") == kind.value), None)
    if before is None or before.get("status") != ("True" if status else "False"):
        return now
    return bookkeeping.parse_timestamp(before.get("lastTransitionTime")) or now


def _issued_event(before: Mapping[str, object], current: Status) -> Event | None:
    if current.issued_at is None or before.get("issuedAt") == _timestamp(current.issued_at):
        return None
    reason = "Issued" if before.get("issuedAt") is None else "Renewed"
    message = (
        f"{reason} a credential valid until {_timestamp(current.expires_at)}"
        f" and wrote it to Secret {current.secret_name}."
    )
    return Event(type=EventType.NORMAL, reason=reason, message=message)


def _entered(
    before: Mapping[str, object], current: Status, kind: ConditionType, reason: str
) -> Event | None:
    """A Warning named ``reason`` when condition ``kind`` has just taken that reason."""
    condition = current.condition(kind)
    if condition is None or condition.reason != reason or _reason(before, kind) == reason:
        return None
    return Event(type=EventType.WARNING, reason=reason, message=condition.message)


def _failure_event(before: Mapping[str, object], current: Status) -> Event | None:
    reason = current.last_failure_reason
    if current.failed_attempts < 1 or reason is None or reason in _OWN_EVENT_FAILURES:
        return None
    streak_went_on = _failed_attempts(before) > 0 and before.get("lastFailureReason") == reason
    if streak_went_on:
        return None
    problem = current.condition(ConditionType.STALLED) or current.condition(
        ConditionType.RECONCILING
    )
    message = f"Fetching a credential failed ({reason})."
    if problem is not None:
        message = f"{message} {problem.message}"
    return Event(type=EventType.WARNING, reason="RenewalFailed", message=message)


def _reason(status: Mapping[str, object], kind: ConditionType) -> object:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == kind.value:
            return condition.get("reason")
    return None


def _failed_attempts(status: Mapping[str, object]) -> int:
    attempts = status.get("failedAttempts")
    return attempts if isinstance(attempts, int) else 0


def _timestamp(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else bookkeeping.format_timestamp(moment)
