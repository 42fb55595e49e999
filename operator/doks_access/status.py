"""The ``status`` of a DOClusterAccess as one typed value, and the events its changes earn (pure).

A reconciliation ends in a :class:`Report` of what it found; :func:`status_for` renders the
:class:`Status` of DESIGN 2 from it and the previous status; :func:`status_patch` says what to
PATCH (nothing when nothing changed: an idle check writes nothing) and :func:`events_for` which
events the change deserves -- one per change of state, never one per retry (DESIGN 3).

The previous status is read from the API once, into a :class:`Status` (:meth:`Status.from_dict`),
and kept in that form between reconciliations; after each PATCH, the status written replaces it.

Decisions where the design is silent:

- Fetch failures give a ``RenewalFailed`` event when a streak starts or its reason changes;
  rate limiting and Secret conflicts have events of their own, and so does the lifetime guard
  finding the held credential refused (``CredentialRejected``).
- ``clusterName``, ``server`` and ``identity`` describe the last credential written: they are set
  when one is, and otherwise carried over.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping

from doks_access import bookkeeping
from doks_access.conditions import (
    Condition,
    ConditionType,
    ReadyReason,
    ReconcilingReason,
    Situation,
    StalledReason,
    conditions_for,
)
from doks_access.failures import CLEAR, FailureReason, FailureState

__all__ = [
    "Event",
    "EventType",
    "Held",
    "Issued",
    "Report",
    "Status",
    "events_for",
    "status_for",
    "status_patch",
]


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


# Failures that have an event of their own rather than RenewalFailed.
_OWN_EVENT_FAILURES = frozenset({FailureReason.RATE_LIMITED, StalledReason.SECRET_CONFLICT})


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """The credential the target Secret holds for the current spec."""

    cluster_id: str
    issued_at: datetime.datetime
    expires_at: datetime.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Issued:
    """What a credential written by this reconciliation adds to the status."""

    server: str
    cluster_name: str | None  # spec.clusterName it was resolved from; None for spec.clusterID
    identity: str | None  # who it authenticates as, when spec.verify proved it


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """What one reconciliation found: the one value status, events and metrics are rendered from."""

    generation: int  # metadata.generation of the spec this is about
    secret_name: str
    held: Held | None = None
    renewal_time: datetime.datetime | None = None  # the next planned fetch, or retry
    suspended: bool = False
    failures: FailureState = CLEAR
    # Whether the last failure is the current situation (it just happened, or its retry is what
    # the object waits for), rather than history kept in the failure count.
    failing: bool = False
    # A problem outside the fetch (InvalidSpec, SecretConflict), with one sentence about it.
    stalled: StalledReason | None = None
    detail: str | None = None
    issued: Issued | None = None
    # The lifetime guard found that the cluster refuses the held credential (not replaced yet).
    rejected: bool = False

    def situation(self) -> Situation:
        held = self.held.expires_at if self.held is not None else None
        last = self.failures.last
        if self.stalled is not None or not self.failing or last is None:
            return Situation(
                generation=self.generation,
                secret_name=self.secret_name,
                expires_at=held,
                suspended=self.suspended,
                stalled=self.stalled,
                detail=self.detail,
                rejected=self.rejected,
            )
        return Situation(
            generation=self.generation,
            secret_name=self.secret_name,
            expires_at=held,
            suspended=self.suspended,
            reconciling=last.reason.reconciling,
            stalled=last.reason.stalled,
            detail=last.detail,
            rejected=self.rejected,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """The whole ``status`` of a DOClusterAccess (DESIGN 2); None fields are absent."""

    observed_generation: int | None
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

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Status:
        """The status as stored; what does not parse is treated as absent."""
        conditions = raw.get("conditions")
        parsed = (
            (Condition.from_dict(c) for c in conditions if isinstance(c, Mapping))
            if isinstance(conditions, list)
            else ()
        )
        generation = raw.get("observedGeneration")
        attempts = raw.get("failedAttempts")
        return cls(
            observed_generation=generation if isinstance(generation, int) else None,
            conditions=tuple(c for c in parsed if c is not None),
            cluster_id=_text(raw.get("clusterID")),
            cluster_name=_text(raw.get("clusterName")),
            server=_text(raw.get("server")),
            secret_name=_text(raw.get("secretName")),
            issued_at=bookkeeping.parse_timestamp(raw.get("issuedAt")),
            expires_at=bookkeeping.parse_timestamp(raw.get("expiresAt")),
            renewal_time=bookkeeping.parse_timestamp(raw.get("renewalTime")),
            identity=_text(raw.get("identity")),
            failed_attempts=attempts if isinstance(attempts, int) else 0,
            last_failure_time=bookkeeping.parse_timestamp(raw.get("lastFailureTime")),
            last_failure_reason=_text(raw.get("lastFailureReason")),
        )

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is kind), None)

    @property
    def ready(self) -> str:
        """The Ready condition's status as the API shows it: True, False or Unknown."""
        ready = self.condition(ConditionType.READY)
        if ready is None:
            return "Unknown"
        return "True" if ready.status else "False"


NO_STATUS = Status(observed_generation=None, conditions=())


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    reason: str
    message: str


def status_for(*, previous: Status, report: Report, now: datetime.datetime) -> Status:
    """The status ``report`` calls for, given the object's ``previous`` status."""
    held, failures, issued = report.held, report.failures, report.issued
    return Status(
        observed_generation=report.generation,
        conditions=conditions_for(
            situation=report.situation(), now=now, previous=previous.conditions
        ),
        cluster_id=held.cluster_id if held is not None else previous.cluster_id,
        cluster_name=issued.cluster_name if issued is not None else previous.cluster_name,
        server=issued.server if issued is not None else previous.server,
        secret_name=report.secret_name if held is not None else previous.secret_name,
        issued_at=held.issued_at if held is not None else None,
        expires_at=held.expires_at if held is not None else None,
        renewal_time=report.renewal_time,
        identity=issued.identity if issued is not None else previous.identity,
        failed_attempts=failures.attempts,
        last_failure_time=failures.last_time,
        last_failure_reason=None if failures.last is None else failures.last.reason.value,
    )


def status_patch(*, previous: Status | None, current: Status) -> dict[str, object] | None:
    """The merge patch from ``previous`` to ``current``; None: no change.

    Only the operator's fields are compared, so fields it does not know are left alone.
    """
    before = (previous or NO_STATUS).to_dict()
    patch = {key: value for key, value in current.to_dict().items() if before.get(key) != value}
    return patch or None


def events_for(*, previous: Status | None, current: Status) -> tuple[Event, ...]:
    """The events that the change from ``previous`` to ``current`` deserves."""
    before = previous or NO_STATUS
    candidates = (
        _issued_event(before, current),
        _entered(before, current, ConditionType.READY, ReadyReason.EXPIRED),
        _entered(before, current, ConditionType.READY, ReadyReason.CREDENTIAL_REJECTED),
        _entered(before, current, ConditionType.STALLED, StalledReason.SECRET_CONFLICT),
        _renewals_stopped_event(before, current),
        _entered(before, current, ConditionType.RECONCILING, ReconcilingReason.RATE_LIMITED),
        _failure_event(before, current),
    )
    return tuple(event for event in candidates if event is not None)


def _issued_event(before: Status, current: Status) -> Event | None:
    if current.issued_at is None or before.issued_at == current.issued_at:
        return None
    reason = "Issued" if before.issued_at is None else "Renewed"
    message = (
        f"{reason} a credential valid until {_timestamp(current.expires_at)}"
        f" and wrote it to Secret {current.secret_name}."
    )
    return Event(type=EventType.NORMAL, reason=reason, message=message)


def _entered(before: Status, current: Status, kind: ConditionType, reason: str) -> Event | None:
    """A Warning named ``reason`` when condition ``kind`` has just taken that reason."""
    condition = current.condition(kind)
    if condition is None or condition.reason != reason:
        return None
    earlier = before.condition(kind)
    if earlier is not None and earlier.reason == reason:
        return None
    return Event(type=EventType.WARNING, reason=reason, message=condition.message)


# The refusals of a ClusterDOAccount, which also stop the renewals of a Ready object.
_ACCOUNT_REFUSALS = frozenset(
    reason.stalled for reason in FailureReason if reason.concerns_the_account
)


def _renewals_stopped_event(before: Status, current: Status) -> Event | None:
    """A Warning when a changed account stops the renewals of an object that holds a credential
    (no fetch failed: a refused fetch has its RenewalFailed event instead)."""
    condition = current.condition(ConditionType.STALLED)
    if condition is None or condition.reason not in _ACCOUNT_REFUSALS:
        return None
    if current.failed_attempts > 0:
        return None
    earlier = before.condition(ConditionType.STALLED)
    if earlier is not None and earlier.reason == condition.reason:
        return None
    return Event(type=EventType.WARNING, reason="RenewalsStopped", message=condition.message)


def _failure_event(before: Status, current: Status) -> Event | None:
    reason = current.last_failure_reason
    if current.failed_attempts < 1 or reason is None or reason in _OWN_EVENT_FAILURES:
        return None
    if before.failed_attempts > 0 and before.last_failure_reason == reason:
        return None  # the streak went on
    problem = current.condition(ConditionType.STALLED) or current.condition(
        ConditionType.RECONCILING
    )
    message = f"Fetching a credential failed ({reason})."
    if problem is not None:
        message = f"{message} {problem.message}"
    return Event(type=EventType.WARNING, reason="RenewalFailed", message=message)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else bookkeeping.format_timestamp(moment)
