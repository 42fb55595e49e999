"""A set's status and events follow from what one reconciliation found."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from doks_access.conditions import Condition, ConditionType
from doks_access.selection import CLUSTER_ID_LABEL, Child, ClusterState, Entry, Plan
from doks_access.setstatus import (
    MAX_LISTED,
    SetEvent,
    SetReport,
    SetStalledReason,
    SetStatus,
    events_for,
    refused,
    status_for,
    status_patch,
)

NOW = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)
SYNCED = NOW - datetime.timedelta(seconds=30)


def cluster_id(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


def entry(number: int, state: ClusterState, *, message: str | None = None) -> Entry:
    has_child = state not in (ClusterState.PENDING, ClusterState.SSO_REQUIRED)
    return Entry(
        cluster_id=cluster_id(number),
        cluster_name=f"cluster-{number:02d}",
        region="nyc1",
        state=state,
        child=f"fleet-{number:08d}" if has_child else None,
        secret_name=f"fleet-{number:08d}-kubeconfig" if has_child else None,
        message=message,
    )


def entries(*states: ClusterState) -> tuple[Entry, ...]:
    return tuple(entry(number, state) for number, state in enumerate(states))


def report(plan: Plan | None, **fields: Any) -> SetReport:
    fields.setdefault("synced_at", SYNCED)
    return SetReport(generation=3, plan=plan, **fields)


def status(
    plan: Plan | None,
    *,
    previous: SetStatus | None = None,
    now: datetime.datetime = NOW,
    **fields: Any,
) -> SetStatus:
    return status_for(previous=previous or SetStatus(), report=report(plan, **fields), now=now)


def condition(current: SetStatus, kind: ConditionType) -> Condition:
    found = current.condition(kind)
    assert found is not None, f"no {kind} condition"
    return found


def summary(current: SetStatus) -> dict[str, tuple[bool, str]]:
    return {str(c.type): (c.status, c.reason) for c in current.conditions}


READY, NOT_READY, PENDING = ClusterState.READY, ClusterState.NOT_READY, ClusterState.PENDING
COLLISION, INVALID = ClusterState.COLLISION, ClusterState.INVALID
SSO, STALLED = ClusterState.SSO_REQUIRED, ClusterState.STALLED
SSO_MESSAGE = "the cluster requires SSO"


# --- counts and the list of clusters ------------------------------------------------------------


def test_counts_every_selected_cluster_ready_and_pending() -> None:
    current = status(Plan(entries=entries(READY, READY, NOT_READY, PENDING, COLLISION, SSO)))

    assert (current.matched, current.ready, current.pending) == (6, 2, 1)
    assert current.observed_generation == 3
    assert current.last_sync_time == SYNCED


def test_lists_at_most_fifty_clusters_those_needing_attention_first() -> None:
    states = [READY] * 50 + [PENDING, NOT_READY, INVALID, COLLISION, NOT_READY, SSO, STALLED]

    current = status(Plan(entries=entries(*states)))

    assert current.matched == 57  # the counts stay complete
    assert len(current.clusters) == MAX_LISTED
    assert [c["state"] for c in current.clusters[:8]] == [
        "Collision",
        "Invalid",
        "SSORequired",
        "Stalled",
        "NotReady",
        "NotReady",
        "Pending",
        "Ready",
    ]
    assert [c["name"] for c in current.clusters[4:6]] == ["cluster-51", "cluster-54"]
    assert current.clusters[7]["name"] == "cluster-00"


def test_a_listed_cluster_leaves_out_what_it_does_not_have() -> None:
    current = status(Plan(entries=(entry(1, PENDING, message="the cluster is provisioning"),)))

    assert current.clusters == (
        {
            "id": cluster_id(1),
            "name": "cluster-01",
            "region": "nyc1",
            "state": "Pending",
            "message": "the cluster is provisioning",
        },
    )


# --- Ready --------------------------------------------------------------------------------------


def test_is_ready_when_every_child_is_ready() -> None:
    current = status(Plan(entries=entries(READY, READY)))

    assert summary(current) == {"Ready": (True, "AllReady")}
    assert condition(current, ConditionType.READY).message == "2 of 2 children are Ready."


def test_is_not_ready_while_a_child_is_not_and_says_it_is_issuing() -> None:
    current = status(Plan(entries=entries(READY, NOT_READY, NOT_READY)))

    assert summary(current) == {
        "Ready": (False, "ChildrenNotReady"),
        "Reconciling": (True, "Issuing"),
    }
    assert condition(current, ConditionType.READY).message == "1 of 3 children are Ready."
    assert condition(current, ConditionType.RECONCILING).message == "2 child(ren) not Ready yet."


def test_pending_clusters_are_reconciling_and_named() -> None:
    current = status(
        Plan(entries=(entry(0, READY), entry(1, PENDING, message="the cluster is provisioning")))
    )

    assert summary(current) == {
        "Ready": (True, "AllReady"),
        "Reconciling": (True, "ClustersPending"),
    }
    assert condition(current, ConditionType.READY).message == (
        "1 of 1 children are Ready; 1 cluster(s) pending."
    )
    assert condition(current, ConditionType.RECONCILING).message == (
        f"1 cluster(s) pending: cluster-01 ({cluster_id(1)}). First: the cluster is provisioning"
    )


def test_conditions_carry_the_generation_and_the_time() -> None:
    ready = condition(status(Plan(entries=entries(READY))), ConditionType.READY)

    assert ready.observed_generation == 3
    assert ready.last_transition_time == NOW


# --- Reconciling: a failed listing --------------------------------------------------------------


def test_a_failed_listing_keeps_the_counts_list_and_readiness_it_had() -> None:
    before = status(Plan(entries=entries(READY, READY, PENDING)))

    current = status(None, previous=before, now=LATER, list_failed=True, detail="HTTP 503.")

    assert (current.matched, current.ready, current.pending) == (3, 2, 1)
    assert current.clusters == before.clusters
    assert current.last_sync_time == SYNCED
    assert summary(current) == {"Ready": (True, "AllReady"), "Reconciling": (True, "ListFailed")}
    assert condition(current, ConditionType.READY) == condition(before, ConditionType.READY)
    assert condition(current, ConditionType.RECONCILING).message == (
        "Listing the clusters failed; retrying. HTTP 503."
    )


def test_a_failed_first_listing_is_not_ready() -> None:
    current = status(None, list_failed=True, synced_at=None)

    assert summary(current) == {"Ready": (False, "ListFailed"), "Reconciling": (True, "ListFailed")}
    assert current.last_sync_time is None
    assert (current.matched, current.ready, current.pending) == (0, 0, 0)
    assert condition(current, ConditionType.READY).message == (
        "Listing the clusters failed; retrying."
    )


def test_a_failed_listing_with_an_older_one_to_go_on_reports_both() -> None:
    current = status(Plan(entries=entries(READY)), list_failed=True, detail="timeout")

    assert summary(current) == {"Ready": (True, "AllReady"), "Reconciling": (True, "ListFailed")}


# --- Stalled ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(SetStalledReason))
def test_a_problem_of_the_set_stalls_it_and_is_not_ready(reason: SetStalledReason) -> None:
    current = status(Plan(entries=entries(NOT_READY)), stalled=reason, detail="Fix it.")

    assert summary(current) == {"Ready": (False, str(reason)), "Stalled": (True, str(reason))}
    assert condition(current, ConditionType.STALLED).message == "Fix it."
    assert condition(current, ConditionType.READY).message == "Fix it."


def test_a_set_stalled_without_a_listing_keeps_its_counts() -> None:
    before = status(Plan(entries=entries(READY, READY)))

    current = status(None, previous=before, stalled=SetStalledReason.UNAUTHORIZED, detail="401")

    assert (current.matched, current.ready) == (2, 2)
    assert summary(current) == {"Ready": (False, "Unauthorized"), "Stalled": (True, "Unauthorized")}


def test_colliding_clusters_stall_the_set_naming_them() -> None:
    plan = Plan(
        entries=(
            entry(0, READY),
            entry(1, COLLISION, message="target Secret x is also rendered for cluster-02"),
            entry(2, COLLISION, message="target Secret x is also rendered for cluster-01"),
            entry(3, INVALID, message="bad name"),
        )
    )

    current = status(plan)

    assert summary(current) == {"Ready": (False, "Collision"), "Stalled": (True, "Collision")}
    assert condition(current, ConditionType.STALLED).message == (
        f"2 cluster(s) refused: target names collide: cluster-01 ({cluster_id(1)}), "
        f"cluster-02 ({cluster_id(2)}). First: target Secret x is also rendered for cluster-02"
    )


def test_invalid_renderings_stall_the_set_as_an_invalid_template() -> None:
    plan = Plan(entries=tuple(entry(n, INVALID, message="bad name") for n in range(5)))

    current = status(plan)

    assert summary(current) == {
        "Ready": (False, "InvalidTemplate"),
        "Stalled": (True, "InvalidTemplate"),
    }
    message = condition(current, ConditionType.STALLED).message
    assert message.startswith("5 cluster(s) refused: invalid child: cluster-00")
    assert "cluster-02" in message
    assert "cluster-03" not in message
    assert message.endswith(" and 2 more. First: bad name")


def test_clusters_that_require_sso_stall_the_set_naming_them() -> None:
    plan = Plan(entries=(entry(0, READY), entry(1, SSO, message=SSO_MESSAGE)))

    current = status(plan)

    assert summary(current) == {"Ready": (False, "SSORequired"), "Stalled": (True, "SSORequired")}
    assert condition(current, ConditionType.STALLED).message == (
        f"1 cluster(s) refused: SSO required: cluster-01 ({cluster_id(1)}). First: {SSO_MESSAGE}"
    )
    assert (current.matched, current.ready, current.pending) == (2, 1, 0)


@pytest.mark.parametrize(
    ("states", "reason"),
    [
        ((SSO, COLLISION), "Collision"),
        ((SSO, INVALID), "InvalidTemplate"),
        ((STALLED, SSO), "SSORequired"),
        ((PENDING, NOT_READY, SSO), "SSORequired"),
    ],
)
def test_collisions_and_invalid_children_come_before_sso_and_sso_before_stalled_ones(
    states: tuple[ClusterState, ...], reason: str
) -> None:
    current = status(Plan(entries=entries(*states)))

    assert summary(current) == {"Ready": (False, reason), "Stalled": (True, reason)}


# --- transition times and patches ---------------------------------------------------------------


def test_transition_times_stay_while_a_status_stays_and_move_when_it_flips() -> None:
    issuing = status(Plan(entries=entries(NOT_READY)))
    still_issuing = status(Plan(entries=entries(NOT_READY)), previous=issuing, now=LATER)
    ready = status(Plan(entries=entries(READY)), previous=still_issuing, now=LATER)

    assert condition(still_issuing, ConditionType.READY).last_transition_time == NOW
    assert condition(still_issuing, ConditionType.RECONCILING).last_transition_time == NOW
    assert condition(ready, ConditionType.READY).last_transition_time == LATER
    assert ready.condition(ConditionType.RECONCILING) is None


def test_a_reason_change_without_a_status_flip_keeps_the_transition_time() -> None:
    unauthorized = status(None, stalled=SetStalledReason.UNAUTHORIZED, detail="401")
    missing = status(
        None, previous=unauthorized, now=LATER, stalled=SetStalledReason.TOKEN_SECRET_MISSING
    )

    stalled = condition(missing, ConditionType.STALLED)
    assert (stalled.reason, stalled.last_transition_time) == ("TokenSecretMissing", NOW)


def test_no_patch_when_nothing_changed() -> None:
    plan = Plan(entries=entries(READY, NOT_READY))
    before = status(plan)

    again = status(plan, previous=before, now=LATER)

    assert again == before
    assert status_patch(previous=before, current=again) is None


def test_the_patch_holds_only_what_changed() -> None:
    before = status(Plan(entries=entries(READY)))
    later_sync = SYNCED + datetime.timedelta(minutes=5)

    current = status(Plan(entries=entries(READY)), previous=before, now=LATER, synced_at=later_sync)

    assert status_patch(previous=before, current=current) == {
        "lastSyncTime": "2030-01-01T12:04:30Z"
    }


def test_the_first_patch_writes_every_count_zeros_too() -> None:
    current = status(Plan(entries=entries(READY)))

    patch = status_patch(previous=SetStatus.from_dict({}), current=current)

    assert patch is not None
    assert patch == {
        "observedGeneration": 3,
        "matched": 1,
        "ready": 1,
        "pending": 0,
        "lastSyncTime": "2030-01-01T11:59:30Z",
        "clusters": [dict(current.clusters[0])],
        "conditions": [condition(current, ConditionType.READY).to_dict()],
    }


def test_a_status_survives_a_round_trip_through_the_api() -> None:
    current = status(Plan(entries=entries(READY, NOT_READY, PENDING, COLLISION, SSO)))

    assert SetStatus.from_dict(current.to_dict()) == current


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"matched": "3", "ready": True, "lastSyncTime": "yesterday", "clusters": ["x"]},
        {"conditions": [{"type": "Unknown", "status": "True"}, "junk", {"type": "Ready"}]},
    ],
)
def test_a_stored_status_of_the_wrong_shape_reads_as_empty(raw: dict[str, Any]) -> None:
    assert SetStatus.from_dict(raw) == SetStatus()


# --- events -------------------------------------------------------------------------------------


def child(number: int) -> Child:
    return Child(
        name=f"fleet-{number:08d}",
        uid=f"uid-{number}",
        cluster_id=cluster_id(number),
        spec={},
        labels={},
        annotations={},
        ready=True,
        ready_message="",
        stalled=False,
        secret_name=f"fleet-{number:08d}-kubeconfig",
    )


def manifest(number: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"fleet-{number:08d}",
            "labels": {CLUSTER_ID_LABEL: cluster_id(number)},
        }
    }


def events(
    plan: Plan | None,
    *,
    previous: SetStatus | None = None,
    reported: frozenset[str] = frozenset(),
    **fields: Any,
) -> tuple[SetEvent, ...]:
    before = previous or SetStatus()
    current = status(plan, previous=before, **fields)
    return events_for(previous=before, current=current, plan=plan, reported=reported)


def test_an_event_for_every_cluster_added_and_removed() -> None:
    plan = Plan(
        create=(manifest(1), manifest(2)),
        remove=(child(3),),
        entries=(entry(1, NOT_READY), entry(2, NOT_READY)),
    )

    assert events(plan) == (
        SetEvent(
            "Normal",
            "ClusterAdded",
            f"Cluster {cluster_id(1)} is selected: DOClusterAccess fleet-00000001 created.",
        ),
        SetEvent(
            "Normal",
            "ClusterAdded",
            f"Cluster {cluster_id(2)} is selected: DOClusterAccess fleet-00000002 created.",
        ),
        SetEvent(
            "Normal",
            "ClusterRemoved",
            f"Cluster {cluster_id(3)} is no longer selected or no longer exists: "
            "DOClusterAccess fleet-00000003 removed.",
        ),
    )


def test_no_event_when_nothing_changed() -> None:
    plan = Plan(entries=entries(READY, NOT_READY, PENDING))
    before = status(plan)

    assert events(plan, previous=before) == ()


def test_a_warning_for_each_newly_refused_cluster_only() -> None:
    plan = Plan(
        entries=(
            entry(1, COLLISION, message="target Secret x is also rendered for cluster-02"),
            entry(2, COLLISION, message="target Secret x is also rendered for cluster-01"),
            entry(3, INVALID, message="bad name"),
        )
    )

    found = events(plan, reported=frozenset({cluster_id(2)}))

    assert found == (
        SetEvent(
            "Warning",
            "Collision",
            f"Cluster cluster-01 ({cluster_id(1)}): "
            "target Secret x is also rendered for cluster-02",
        ),
        SetEvent("Warning", "Invalid", f"Cluster cluster-03 ({cluster_id(3)}): bad name"),
    )  # no set-level Stalled event on top: the clusters had theirs


def test_a_warning_once_for_a_cluster_that_requires_sso() -> None:
    plan = Plan(entries=(entry(0, READY), entry(1, SSO, message=SSO_MESSAGE)))
    first = events(plan)
    before = status(plan)

    again = events(plan, previous=before, reported=refused(plan, before=frozenset()))

    assert first == (
        SetEvent("Warning", "SSORequired", f"Cluster cluster-01 ({cluster_id(1)}): {SSO_MESSAGE}"),
    )  # and no set-level Stalled event on top
    assert again == ()


def test_no_warning_for_clusters_already_reported() -> None:
    plan = Plan(
        entries=(
            entry(1, COLLISION, message="x"),
            entry(2, INVALID, message="y"),
            entry(3, SSO, message="z"),
        )
    )
    reported = refused(plan, before=frozenset())
    before = status(plan)

    assert events(plan, previous=before, reported=reported) == ()


def test_a_warning_when_the_set_enters_a_stalled_reason_and_none_while_it_stays() -> None:
    entered = events(None, stalled=SetStalledReason.UNAUTHORIZED, detail="The token is refused.")
    before = status(None, stalled=SetStalledReason.UNAUTHORIZED, detail="The token is refused.")
    stayed = events(
        None, previous=before, stalled=SetStalledReason.UNAUTHORIZED, detail="The token is refused."
    )
    changed = events(
        None, previous=before, stalled=SetStalledReason.TOKEN_SECRET_MISSING, detail="No Secret."
    )

    assert entered == (SetEvent("Warning", "Unauthorized", "The token is refused."),)
    assert stayed == ()
    assert changed == (SetEvent("Warning", "TokenSecretMissing", "No Secret."),)


def test_no_event_for_a_failed_listing() -> None:
    assert events(None, list_failed=True, detail="HTTP 503.") == ()


# --- refused clusters ---------------------------------------------------------------------------


def test_the_refused_clusters_are_the_colliding_invalid_and_sso_required_ones() -> None:
    plan = Plan(entries=entries(READY, COLLISION, INVALID, PENDING, NOT_READY, SSO, STALLED))

    assert refused(plan, before=frozenset({"old"})) == {cluster_id(1), cluster_id(2), cluster_id(5)}


def test_the_refused_clusters_stay_as_they_were_without_a_listing() -> None:
    assert refused(None, before=frozenset({"old"})) == {"old"}
