"""Status conditions, the status patch and events: exact, quiet, and one event per change."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from doks_access.conditions import (
    Condition,
    ConditionType,
    ReadyReason,
    ReconcilingReason,
    Situation,
    StalledReason,
    conditions_for,
)
from doks_access.status import Event, EventType, Status, events_for, status_patch

NOW = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
EARLIER = NOW - datetime.timedelta(hours=1)
EXPIRES = NOW + datetime.timedelta(days=7)
SECRET = "prod-kubeconfig"


def situation(**changes: Any) -> Situation:
    fields: dict[str, Any] = {"generation": 3, "secret_name": SECRET, "expires_at": EXPIRES}
    fields.update(changes)
    return Situation(**fields)


def conditions(**changes: Any) -> dict[str, Condition]:
    return {c.type.value: c for c in conditions_for(situation=situation(**changes), now=NOW)}


def status(*, now: datetime.datetime = NOW, **fields: Any) -> Status:
    which = fields.pop("situation", situation())
    return Status(
        observed_generation=3,
        conditions=conditions_for(situation=which, now=now),
        **fields,
    )


def as_stored(current: Status) -> dict[str, Any]:
    """``current`` as read back from the API server, which drops null fields."""
    return {key: value for key, value in current.to_dict().items() if value is not None}


def stored(current: Status | dict[str, Any]) -> Status:
    """``current`` as the operator keeps it after reading it back from the API server."""
    return Status.from_dict(current if isinstance(current, dict) else as_stored(current))


def parsed(conditions: list[dict[str, Any]]) -> list[Condition]:
    return [c for c in map(Condition.from_dict, conditions) if c is not None]


# --- Ready, Reconciling, Stalled ----------------------------------------------------------------


def test_is_ready_while_the_secret_holds_an_unexpired_credential() -> None:
    ready = conditions()["Ready"]

    assert ready.status is True
    assert ready.reason == ReadyReason.ISSUED.value
    assert ready.message == f"Secret {SECRET} holds a credential valid until 2030-01-08T12:00:00Z."


def test_a_healthy_object_shows_only_ready() -> None:
    assert list(conditions()) == ["Ready"]


@pytest.mark.parametrize("reason", list(ReconcilingReason))
def test_stays_ready_while_a_renewal_is_retried(reason: ReconcilingReason) -> None:
    shown = conditions(reconciling=reason, detail="DigitalOcean answered 503.")

    assert shown["Ready"].status is True
    assert shown["Reconciling"].status is True
    assert shown["Reconciling"].reason == reason.value
    assert shown["Reconciling"].message.endswith(" DigitalOcean answered 503.")
    assert "Stalled" not in shown


def test_stays_ready_while_a_renewal_is_refused_and_says_it_is_stalled() -> None:
    shown = conditions(stalled=StalledReason.UNAUTHORIZED)

    assert shown["Ready"].status is True
    assert shown["Stalled"].status is True
    assert shown["Stalled"].reason == "Unauthorized"
    assert "Reconciling" not in shown


def test_a_held_credential_the_cluster_refuses_is_not_ready() -> None:
    shown = conditions(rejected=True, detail="It was refused 31s into its 120s lifetime.")

    assert shown["Ready"].status is False
    assert shown["Ready"].reason == ReadyReason.CREDENTIAL_REJECTED.value == "CredentialRejected"
    assert shown["Ready"].message == (
        f"The cluster no longer accepts the credential in Secret {SECRET} (the lifetime guard's"
        " SelfSubjectReview was answered 401); fetching a new one. It was refused 31s into its"
        " 120s lifetime."
    )


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (StalledReason.REQUEST_REFUSED, "DigitalOcean refused to issue a credential as asked."),
        (
            StalledReason.SSO_REQUIRED,
            "The cluster requires SSO: DigitalOcean issues no token credential that it accepts.",
        ),
    ],
)
def test_a_refused_request_is_stalled_and_not_ready_without_a_credential(
    reason: StalledReason, message: str
) -> None:
    shown = conditions(expires_at=None, stalled=reason, detail="HTTP 422: no.")

    assert (shown["Ready"].status, shown["Ready"].reason) == (False, reason.value)
    assert shown["Stalled"].message == f"{message} HTTP 422: no."


def test_is_not_ready_once_the_credential_has_expired() -> None:
    shown = conditions(
        expires_at=NOW,
        reconciling=ReconcilingReason.RETRYING_AFTER_ERROR,
        detail="DigitalOcean answered 503.",
    )

    assert shown["Ready"].status is False
    assert shown["Ready"].reason == "Expired"
    assert shown["Ready"].message == (
        f"The credential in Secret {SECRET} expired at 2030-01-01T12:00:00Z."
        " DigitalOcean answered 503."
    )


def test_is_pending_until_the_first_credential() -> None:
    shown = conditions(expires_at=None, reconciling=ReconcilingReason.RENEWING)

    assert shown["Ready"].status is False
    assert shown["Ready"].reason == "Pending"
    assert shown["Reconciling"].reason == "Renewing"


@pytest.mark.parametrize("reason", list(StalledReason))
def test_without_a_credential_ready_gives_the_reason_it_is_stalled(reason: StalledReason) -> None:
    shown = conditions(expires_at=None, stalled=reason, detail="Fix it.")

    assert shown["Ready"].status is False
    assert shown["Ready"].reason == reason.value
    assert ReadyReason(shown["Ready"].reason)  # a Ready reason of DESIGN 3
    assert shown["Stalled"].reason == reason.value
    assert shown["Stalled"].message.endswith(" Fix it.")


def test_a_suspended_object_stays_ready_while_its_credential_lasts() -> None:
    ready = conditions(suspended=True)["Ready"]

    assert ready.status is True
    assert ready.reason == "Suspended"
    assert ready.message.startswith("Refreshing is suspended. ")


def test_a_suspended_object_without_a_credential_is_not_ready() -> None:
    ready = conditions(suspended=True, expires_at=None)["Ready"]

    assert ready.status is False
    assert ready.reason == "Suspended"


def test_a_suspended_object_whose_credential_expired_says_both() -> None:
    ready = conditions(suspended=True, expires_at=NOW)["Ready"]

    assert ready.reason == "Expired"
    assert ready.message.startswith("Refreshing is suspended. ")


def test_an_object_is_never_reconciling_and_stalled_at_once() -> None:
    with pytest.raises(ValueError, match="not both"):
        situation(reconciling=ReconcilingReason.RENEWING, stalled=StalledReason.UNAUTHORIZED)


def test_every_condition_names_the_generation_it_was_computed_for() -> None:
    shown = conditions(generation=7, reconciling=ReconcilingReason.RENEWING)

    assert {c.observed_generation for c in shown.values()} == {7}


def test_a_condition_has_every_field_the_crd_requires() -> None:
    ready = conditions()["Ready"].to_dict()

    assert ready == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 3,
        "lastTransitionTime": "2030-01-01T12:00:00Z",
        "reason": "Issued",
        "message": f"Secret {SECRET} holds a credential valid until 2030-01-08T12:00:00Z.",
    }


# --- lastTransitionTime -------------------------------------------------------------------------


def previous_ready(
    *, status: str, reason: str = "Issued", when: str = "2030-01-01T11:00:00Z"
) -> list[dict[str, Any]]:
    return [{"type": "Ready", "status": status, "reason": reason, "lastTransitionTime": when}]


def transition_time(previous: list[dict[str, Any]], **changes: Any) -> datetime.datetime:
    shown = conditions_for(situation=situation(**changes), now=NOW, previous=parsed(previous))
    return shown[0].last_transition_time


def test_keeps_the_transition_time_while_the_status_stays() -> None:
    assert transition_time(previous_ready(status="True")) == EARLIER


def test_keeps_the_transition_time_when_only_the_reason_changes() -> None:
    previous = previous_ready(status="False", reason="Pending")

    assert transition_time(previous, expires_at=NOW) == EARLIER


def test_moves_the_transition_time_when_the_status_flips() -> None:
    assert transition_time(previous_ready(status="False", reason="Pending")) == NOW


def test_a_first_condition_transitions_now() -> None:
    assert transition_time([]) == NOW


def test_an_unreadable_previous_transition_time_is_replaced() -> None:
    assert transition_time(previous_ready(status="True", when="yesterday")) == NOW


def test_a_reappearing_condition_transitions_now() -> None:
    previous = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2030-01-01T11:00:00Z"},
        {"type": "Stalled", "status": "False", "lastTransitionTime": "2030-01-01T11:00:00Z"},
    ]

    shown = conditions_for(
        situation=situation(stalled=StalledReason.UNAUTHORIZED), now=NOW, previous=parsed(previous)
    )

    assert [c.last_transition_time for c in shown] == [EARLIER, NOW]


# --- the status and its patch -------------------------------------------------------------------


def test_renders_the_status_fields_with_rfc3339_utc_times() -> None:
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    current = status(
        cluster_id="bd5f5959-5e1e-4205-a714-a914373942af",
        cluster_name="prod-cluster-01",
        server="https://bd5f5959-5e1e-4205-a714-a914373942af.k8s.ondigitalocean.com",
        secret_name=SECRET,
        issued_at=NOW,
        expires_at=EXPIRES,
        renewal_time=datetime.datetime(2030, 1, 6, 14, 0, 0, 999_999, tzinfo=plus_two),
        identity="kube-admin",
        failed_attempts=2,
        last_failure_time=EARLIER,
        last_failure_reason="ServerError",
    )

    rendered = current.to_dict()

    assert rendered["issuedAt"] == "2030-01-01T12:00:00Z"
    assert rendered["expiresAt"] == "2030-01-08T12:00:00Z"
    assert rendered["renewalTime"] == "2030-01-06T12:00:00Z"
    assert rendered["lastFailureTime"] == "2030-01-01T11:00:00Z"
    assert rendered["failedAttempts"] == 2
    assert rendered["lastFailureReason"] == "ServerError"
    assert rendered["clusterID"] == "bd5f5959-5e1e-4205-a714-a914373942af"
    assert rendered["clusterName"] == "prod-cluster-01"
    assert rendered["secretName"] == SECRET
    assert rendered["identity"] == "kube-admin"
    assert rendered["observedGeneration"] == 3
    assert rendered["conditions"] == [c.to_dict() for c in current.conditions]


def test_patches_nothing_when_nothing_changed() -> None:
    current = status(secret_name=SECRET, issued_at=EARLIER, expires_at=EXPIRES)

    assert status_patch(previous=stored(current), current=current) is None


def test_patches_nothing_when_an_idle_check_recomputes_the_same_status() -> None:
    previous = stored(status(secret_name=SECRET, issued_at=EARLIER))
    later = NOW + datetime.timedelta(minutes=30)

    again = Status(
        observed_generation=3,
        conditions=conditions_for(situation=situation(), now=later, previous=previous.conditions),
        secret_name=SECRET,
        issued_at=EARLIER,
    )

    assert status_patch(previous=previous, current=again) is None


def test_patches_only_what_changed_and_removes_what_is_gone() -> None:
    before = status(issued_at=EARLIER, failed_attempts=2, last_failure_reason="ServerError")
    after = status(issued_at=NOW, failed_attempts=0, last_failure_reason=None)

    patch = status_patch(previous=stored(before), current=after)

    assert patch == {
        "issuedAt": "2030-01-01T12:00:00Z",
        "failedAttempts": 0,
        "lastFailureReason": None,
    }


def test_leaves_status_fields_it_does_not_know_alone() -> None:
    current = status()
    with_others = {**as_stored(current), "kopf": {"progress": {}}}

    assert status_patch(previous=stored(with_others), current=current) is None


def test_patches_the_whole_status_of_a_new_object() -> None:
    current = status(secret_name=SECRET)

    patch = status_patch(previous=None, current=current)

    assert patch is not None
    assert patch["secretName"] == SECRET
    assert patch["conditions"] == [c.to_dict() for c in current.conditions]
    assert "issuedAt" not in patch


# --- events -------------------------------------------------------------------------------------


def test_the_first_credential_is_an_issued_event() -> None:
    before = status(situation=situation(expires_at=None, reconciling=ReconcilingReason.RENEWING))
    after = status(secret_name=SECRET, issued_at=NOW, expires_at=EXPIRES)

    assert events_for(previous=stored(before), current=after) == (
        Event(
            type=EventType.NORMAL,
            reason="Issued",
            message=(
                "Issued a credential valid until 2030-01-08T12:00:00Z"
                f" and wrote it to Secret {SECRET}."
            ),
        ),
    )


def test_a_refused_held_credential_is_one_warning_event() -> None:
    before = status(secret_name=SECRET, issued_at=EARLIER, expires_at=EXPIRES)
    refused = status(
        secret_name=SECRET,
        issued_at=EARLIER,
        expires_at=EXPIRES,
        situation=situation(rejected=True),
    )

    events = events_for(previous=stored(before), current=refused)
    again = events_for(previous=stored(refused), current=refused)

    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, "CredentialRejected")]
    assert events[0].message.startswith("The cluster no longer accepts the credential")
    assert again == ()


def test_a_new_object_gets_its_issued_event_too() -> None:
    after = status(secret_name=SECRET, issued_at=NOW, expires_at=EXPIRES)

    assert [e.reason for e in events_for(previous=None, current=after)] == ["Issued"]


def test_a_new_credential_is_a_renewed_event() -> None:
    before = status(secret_name=SECRET, issued_at=EARLIER, expires_at=EXPIRES)
    after = status(secret_name=SECRET, issued_at=NOW, expires_at=EXPIRES)

    (event,) = events_for(previous=stored(before), current=after)

    assert (event.type, event.reason) == (EventType.NORMAL, "Renewed")


def test_an_idle_check_has_no_event() -> None:
    current = status(secret_name=SECRET, issued_at=EARLIER, expires_at=EXPIRES)

    assert events_for(previous=stored(current), current=current) == ()


def failing(attempts: int, reason: str, **changes: Any) -> Status:
    which = situation(reconciling=ReconcilingReason.RETRYING_AFTER_ERROR, **changes)
    return status(
        situation=which,
        issued_at=EARLIER,
        failed_attempts=attempts,
        last_failure_time=NOW,
        last_failure_reason=reason,
    )


def test_the_first_failure_of_a_streak_is_a_renewal_failed_warning() -> None:
    before = status(issued_at=EARLIER)
    after = failing(1, "ServerError", detail="DigitalOcean answered 503.")

    (event,) = events_for(previous=stored(before), current=after)

    assert event.type is EventType.WARNING
    assert event.reason == "RenewalFailed"
    assert event.message == (
        "Fetching a credential failed (ServerError). Fetching a credential failed; retrying."
        " DigitalOcean answered 503."
    )


def test_retrying_the_same_failure_has_no_event() -> None:
    before = failing(1, "ServerError")

    assert events_for(previous=stored(before), current=failing(2, "ServerError")) == ()


def test_a_failure_for_a_new_reason_has_a_new_event() -> None:
    before = failing(1, "ServerError")

    (event,) = events_for(previous=stored(before), current=failing(2, "InvalidResponse"))

    assert event.reason == "RenewalFailed"


def test_a_stalling_failure_says_why_in_its_event() -> None:
    after = status(
        situation=situation(stalled=StalledReason.UNAUTHORIZED),
        issued_at=EARLIER,
        failed_attempts=1,
        last_failure_reason="Unauthorized",
    )

    (event,) = events_for(previous=stored(status(issued_at=EARLIER)), current=after)

    assert event.message == (
        "Fetching a credential failed (Unauthorized). DigitalOcean refused the API token."
    )


def test_being_rate_limited_is_one_warning_not_one_per_retry() -> None:
    first = status(
        situation=situation(reconciling=ReconcilingReason.RATE_LIMITED),
        failed_attempts=1,
        last_failure_reason="RateLimited",
    )
    second = status(
        situation=situation(reconciling=ReconcilingReason.RATE_LIMITED),
        failed_attempts=2,
        last_failure_reason="RateLimited",
    )

    events = events_for(previous=stored(status()), current=first)

    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, "RateLimited")]
    assert events_for(previous=stored(first), current=second) == ()


def test_a_secret_conflict_is_one_warning() -> None:
    conflict = status(
        situation=situation(expires_at=None, stalled=StalledReason.SECRET_CONFLICT),
        failed_attempts=1,
        last_failure_reason="SecretConflict",
    )

    events = events_for(previous=None, current=conflict)

    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, "SecretConflict")]
    assert events[0].message == conflict.conditions[1].message
    assert events_for(previous=stored(conflict), current=conflict) == ()


def test_an_account_taking_a_permission_away_is_one_renewals_stopped_warning() -> None:
    ready = status(issued_at=EARLIER)
    stopped = status(
        situation=situation(
            stalled=StalledReason.CLUSTER_NOT_ALLOWED, detail="Granted by none of the rules."
        ),
        issued_at=EARLIER,
    )

    events = events_for(previous=stored(ready), current=stopped)

    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, "RenewalsStopped")]
    assert "Granted by none of the rules." in events[0].message
    assert events_for(previous=stored(stopped), current=stopped) == ()


def test_a_fetch_the_account_refused_is_a_renewal_failed_warning_only() -> None:
    refused = status(
        situation=situation(expires_at=None, stalled=StalledReason.CLUSTER_NOT_ALLOWED),
        failed_attempts=1,
        last_failure_reason="ClusterNotAllowed",
    )

    events = events_for(previous=None, current=refused)

    assert [e.reason for e in events] == ["RenewalFailed"]


def test_expiry_is_one_warning() -> None:
    before = failing(5, "ServerError")
    expired = failing(6, "ServerError", expires_at=NOW)

    events = events_for(previous=stored(before), current=expired)

    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, "Expired")]
    assert (
        events_for(previous=stored(expired), current=failing(7, "ServerError", expires_at=NOW))
        == ()
    )


def test_the_same_failure_after_a_recovery_is_a_new_warning() -> None:
    recovered = status(issued_at=EARLIER, failed_attempts=0, last_failure_reason="ServerError")

    (event,) = events_for(previous=stored(recovered), current=failing(1, "ServerError"))

    assert event.reason == "RenewalFailed"


def test_recovery_after_failures_is_a_renewed_event() -> None:
    before = failing(3, "ServerError")
    after = status(issued_at=NOW, expires_at=EXPIRES, last_failure_reason="ServerError")

    assert [e.reason for e in events_for(previous=stored(before), current=after)] == ["Renewed"]


def test_the_condition_type_names_are_kstatus_names() -> None:
    assert [t.value for t in ConditionType] == ["Ready", "Reconciling", "Stalled"]
