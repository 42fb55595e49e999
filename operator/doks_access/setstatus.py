"""The status and events of a DOClusterAccessSet, from what one reconciliation found (pure).

Counts are complete (``matched``, ``ready``, ``pending``); the list of clusters is bounded, those
needing attention first. Conditions follow the kstatus convention of the single object
(:mod:`doks_access.conditions`): ``Ready`` always, ``Reconciling`` and ``Stalled`` only while True,
``lastTransitionTime`` moving only when a status flips.

- ``Stalled``: a problem of the set that needs a human -- an invalid spec, a missing token Secret,
  a token DigitalOcean refuses, tags the token cannot see -- or of some of its clusters: target
  names that collide, a template that renders an invalid child for a cluster, a cluster that
  requires SSO (no token credential works on it). These three are the *refused* clusters: one
  event each when first refused, counted in ``matched`` but neither ``ready`` nor ``pending``.
  The first kind found, in that order (Stalled children last), gives the reason: what the
  template can fix comes before what needs a change in DigitalOcean.
- ``Reconciling``: children being issued, clusters pending (not running yet), a listing that
  failed and is being retried. A failed listing changes no child: the set goes on with what it had.
- ``Ready``: every child is Ready and nothing is stalled.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from doks_access import bookkeeping
from doks_access.conditions import Condition, ConditionType, transition_time
from doks_access.selection import ClusterState, Entry, Plan

__all__ = [
    "MAX_LISTED",
    "SetEvent",
    "SetReport",
    "SetStalledReason",
    "SetStatus",
    "events_for",
    "refused",
    "status_for",
    "status_patch",
]

MAX_LISTED = 50
_ORDER = {
    ClusterState.COLLISION: 0,
    ClusterState.INVALID: 1,
    ClusterState.SSO_REQUIRED: 2,
    ClusterState.STALLED: 3,
    ClusterState.NOT_READY: 4,
    ClusterState.PENDING: 5,
    ClusterState.READY: 6,
}
# Selected clusters given no credential (or kept as they were) until a human acts.
_REFUSED = frozenset({ClusterState.COLLISION, ClusterState.INVALID, ClusterState.SSO_REQUIRED})
_NAMED = 3  # clusters named in a condition's message


class SetStalledReason(enum.StrEnum):
    INVALID_SPEC = "InvalidSpec"
    TOKEN_SECRET_MISSING = "TokenSecretMissing"  # noqa: S105 - a reason, not a secret
    UNAUTHORIZED = "Unauthorized"
    TAGS_NOT_VISIBLE = "TagsNotVisible"
    COLLISION = "Collision"
    INVALID_TEMPLATE = "InvalidTemplate"
    SSO_REQUIRED = "SSORequired"
    CHILDREN_STALLED = "ChildrenStalled"
    # The set's ClusterDOAccount (spec.accountRef) does not serve it.
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    ACCOUNT_NOT_FOUND = "AccountNotFound"
    INVALID_ACCOUNT = "InvalidAccount"


class SetReconcilingReason(enum.StrEnum):
    ISSUING = "Issuing"
    CLUSTERS_PENDING = "ClustersPending"
    LIST_FAILED = "ListFailed"


class SetReadyReason(enum.StrEnum):
    ALL_READY = "AllReady"
    CHILDREN_NOT_READY = "ChildrenNotReady"


@dataclasses.dataclass(frozen=True)
class SetReport:
    """What one reconciliation of a set found."""

    generation: int
    plan: Plan | None  # None: no listing could be used; the counts stay as they were
    synced_at: datetime.datetime | None = None  # when the listing used was made
    stalled: SetStalledReason | None = None  # a problem of the set itself
    detail: str = ""  # what that problem, or a failed listing, is; never credential material
    list_failed: bool = False


@dataclasses.dataclass(frozen=True)
class SetStatus:
    """The status subresource of a set."""

    # None: absent from the object (so that a first status writes every count, zeros too).
    observed_generation: int | None = None
    matched: int | None = None
    ready: int | None = None
    pending: int | None = None
    last_sync_time: datetime.datetime | None = None
    clusters: tuple[Mapping[str, str], ...] = ()
    conditions: tuple[Condition, ...] = ()

    def to_dict(self) -> dict[str, object]:
        sync = self.last_sync_time
        return {
            "observedGeneration": self.observed_generation,
            "matched": self.matched,
            "ready": self.ready,
            "pending": self.pending,
            "lastSyncTime": None if sync is None else bookkeeping.format_timestamp(sync),
            "clusters": [dict(entry) for entry in self.clusters],
            "conditions": [condition.to_dict() for condition in self.conditions],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SetStatus:
        conditions = tuple(
            condition
            for item in raw.get("conditions") or ()
            if isinstance(item, Mapping) and (condition := Condition.from_dict(item)) is not None
        )
        clusters = tuple(
            {str(k): str(v) for k, v in item.items()}
            for item in raw.get("clusters") or ()
            if isinstance(item, Mapping)
        )
        return cls(
            observed_generation=_integer(raw.get("observedGeneration")),
            matched=_integer(raw.get("matched")),
            ready=_integer(raw.get("ready")),
            pending=_integer(raw.get("pending")),
            last_sync_time=bookkeeping.parse_timestamp(raw.get("lastSyncTime")),
            clusters=clusters,
            conditions=conditions,
        )

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is kind), None)


@dataclasses.dataclass(frozen=True)
class SetEvent:
    type: str  # Normal or Warning
    reason: str
    message: str


def status_for(*, previous: SetStatus, report: SetReport, now: datetime.datetime) -> SetStatus:
    """The status ``report`` calls for."""
    plan = report.plan
    if plan is None:
        counts = (previous.matched or 0, previous.ready or 0, previous.pending or 0)
        clusters, sync = previous.clusters, previous.last_sync_time
    else:
        counts = (
            len(plan.entries),
            plan.count(ClusterState.READY),
            plan.count(ClusterState.PENDING),
        )
        clusters, sync = _listed(plan.entries), report.synced_at
    candidates = [
        (ConditionType.READY, *_ready(report, previous)),
        (ConditionType.RECONCILING, *_reconciling(report)),
        (ConditionType.STALLED, *_stalled(report)),
    ]
    conditions = tuple(
        Condition(
            type=kind,
            status=status,
            reason=str(reason),
            message=message,
            observed_generation=report.generation,
            last_transition_time=transition_time(
                previous.conditions, kind=kind, status=status, now=now
            ),
        )
        for kind, status, reason, message in candidates
        if kind is ConditionType.READY or status
    )
    return SetStatus(
        observed_generation=report.generation,
        matched=counts[0],
        ready=counts[1],
        pending=counts[2],
        last_sync_time=sync,
        clusters=clusters,
        conditions=conditions,
    )


def status_patch(*, previous: SetStatus, current: SetStatus) -> dict[str, object] | None:
    """The merge patch from ``previous`` to ``current``; None: no change."""
    before = previous.to_dict()
    patch = {key: value for key, value in current.to_dict().items() if before.get(key) != value}
    return patch or None


def events_for(
    *, previous: SetStatus, current: SetStatus, plan: Plan | None, reported: frozenset[str]
) -> tuple[SetEvent, ...]:
    """One event per change: a cluster added or removed, a cluster newly refused (``reported``
    are the clusters refused before), the set entering Stalled."""
    events: list[SetEvent] = []
    if plan is not None:
        for manifest in plan.create:
            labels = manifest["metadata"]["labels"]
            events.append(
                SetEvent(
                    "Normal",
                    "ClusterAdded",
                    f"Cluster {labels['doks-access.dev/cluster-id']} is selected: "
                    f"DOClusterAccess {manifest['metadata']['name']} created.",
                )
            )
        for child in plan.remove:
            events.append(
                SetEvent(
                    "Normal",
                    "ClusterRemoved",
                    f"Cluster {child.cluster_id} is no longer selected or no longer exists: "
                    f"DOClusterAccess {child.name} removed.",
                )
            )
        for entry in plan.entries:
            if entry.state in _REFUSED and entry.cluster_id not in reported:
                events.append(
                    SetEvent(
                        "Warning",
                        str(entry.state),
                        f"Cluster {entry.cluster_name} ({entry.cluster_id}): {entry.message}",
                    )
                )
    stalled, before = (
        current.condition(ConditionType.STALLED),
        previous.condition(ConditionType.STALLED),
    )
    # Refusals had an event per cluster above; stalled children have their own events.
    per_cluster = {
        SetStalledReason.COLLISION,
        SetStalledReason.INVALID_TEMPLATE,
        SetStalledReason.SSO_REQUIRED,
        SetStalledReason.CHILDREN_STALLED,
    }
    if (
        stalled is not None
        and stalled.reason not in per_cluster
        and (before is None or before.reason != stalled.reason)
    ):
        events.append(SetEvent("Warning", stalled.reason, stalled.message))
    return tuple(events)


def refused(plan: Plan | None, *, before: frozenset[str]) -> frozenset[str]:
    """The clusters refused now (collisions, invalid renderings, SSO required); ``before`` when
    unknown."""
    if plan is None:
        return before
    return frozenset(entry.cluster_id for entry in plan.entries if entry.state in _REFUSED)


def _ready(report: SetReport, previous: SetStatus) -> tuple[bool, str, str]:
    stalled = _stalled(report)
    if stalled[0]:
        return False, stalled[1], stalled[2]
    plan = report.plan
    if plan is None:
        before = previous.condition(ConditionType.READY)
        if before is not None:  # nothing new is known: as it was
            return before.status, before.reason, before.message
        return False, SetReconcilingReason.LIST_FAILED, _failed(report)
    children = [e for e in plan.entries if e.state is not ClusterState.PENDING]
    ready = plan.count(ClusterState.READY)
    summary = f"{ready} of {len(children)} children are Ready"
    pending = plan.count(ClusterState.PENDING)
    if pending:
        summary += f"; {pending} cluster(s) pending"
    if ready == len(children):
        return True, SetReadyReason.ALL_READY, summary + "."
    return False, SetReadyReason.CHILDREN_NOT_READY, summary + "."


def _reconciling(report: SetReport) -> tuple[bool, str, str]:
    if _stalled(report)[0]:
        return False, "", ""
    if report.list_failed:
        return True, SetReconcilingReason.LIST_FAILED, _failed(report)
    plan = report.plan
    if plan is None:
        return False, "", ""
    issuing = plan.count(ClusterState.NOT_READY)
    if issuing:
        return True, SetReconcilingReason.ISSUING, f"{issuing} child(ren) not Ready yet."
    pending = [e for e in plan.entries if e.state is ClusterState.PENDING]
    if pending:
        return True, SetReconcilingReason.CLUSTERS_PENDING, _named(pending, "pending")
    return False, "", ""


def _stalled(report: SetReport) -> tuple[bool, str, str]:
    if report.stalled is not None:
        return True, report.stalled, report.detail
    plan = report.plan
    if plan is None:
        return False, "", ""
    collided = [e for e in plan.entries if e.state is ClusterState.COLLISION]
    if collided:
        return True, SetStalledReason.COLLISION, _named(collided, "refused: target names collide")
    invalid = [e for e in plan.entries if e.state is ClusterState.INVALID]
    if invalid:
        return True, SetStalledReason.INVALID_TEMPLATE, _named(invalid, "refused: invalid child")
    sso = [e for e in plan.entries if e.state is ClusterState.SSO_REQUIRED]
    if sso:
        return True, SetStalledReason.SSO_REQUIRED, _named(sso, "refused: SSO required")
    stalled = [e for e in plan.entries if e.state is ClusterState.STALLED]
    if stalled:
        return True, SetStalledReason.CHILDREN_STALLED, _named(stalled, "with a Stalled child")
    return False, "", ""


def _failed(report: SetReport) -> str:
    return f"Listing the clusters failed; retrying. {report.detail}".strip()


def _named(entries: Sequence[Entry], what: str) -> str:
    names = ", ".join(f"{e.cluster_name} ({e.cluster_id})" for e in entries[:_NAMED])
    more = f" and {len(entries) - _NAMED} more" if len(entries) > _NAMED else ""
    first = entries[0].message or ""
    return f"{len(entries)} cluster(s) {what}: {names}{more}. First: {first}"


def _listed(entries: Sequence[Entry]) -> tuple[Mapping[str, str], ...]:
    ordered = sorted(entries, key=lambda e: (_ORDER[e.state], e.cluster_name, e.cluster_id))
    return tuple(_entry_dict(entry) for entry in ordered[:MAX_LISTED])


def _entry_dict(entry: Entry) -> Mapping[str, str]:
    values = {
        "id": entry.cluster_id,
        "name": entry.cluster_name,
        "region": entry.region,
        "state": str(entry.state),
        "child": entry.child,
        "secretName": entry.secret_name,
        "message": entry.message,
    }
    return {key: value for key, value in values.items() if value}


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
