"""The failure/retry state machine: every transition at exact times, no I/O, no clock."""

from __future__ import annotations

import datetime

import pytest

from doks_access import failures
from doks_access.bookkeeping import ObservedSecret
from doks_access.conditions import ReconcilingReason, StalledReason
from doks_access.failures import CLEAR, Failure, FailureReason, FailureState
from doks_access.scheduling import (
    STALLED_RETRY,
    FetchNow,
    FetchReason,
    Plan,
    Suspended,
    WaitUntil,
    next_action,
)
from doks_access.spec import parse_spec

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)
HOUR = datetime.timedelta(hours=1)
EXPIRES = NOW + 6 * HOUR  # the credential consumers hold
SERVER_ERROR = Failure(FailureReason.SERVER, "GET /v2/...: HTTP 503")
REFUSED = Failure(FailureReason.UNAUTHORIZED, "GET /v2/...: HTTP 401")
SPEC = parse_spec(
    {
        "metadata": {"name": "prod", "namespace": "platform"},
        "spec": {
            "clusterID": "bd5f5959-5e1e-4205-a714-a914373942af",
            "tokenSecretRef": {"name": "digitalocean-api"},
        },
    }
)


def fail(
    state: FailureState = CLEAR,
    failure: Failure = SERVER_ERROR,
    *,
    now: datetime.datetime = NOW,
    expires_at: datetime.datetime | None = EXPIRES,
    jitter: float = 1.0,
    token_version: str | None = None,
) -> FailureState:
    return failures.failed(
        state,
        failure,
        now=now,
        expires_at=expires_at,
        jitter_fraction=jitter,
        token_version=token_version,
    )


def retry_in(state: FailureState, *, now: datetime.datetime = NOW) -> datetime.timedelta:
    assert state.retry_at is not None
    return state.retry_at - now


# --- reasons ------------------------------------------------------------------------------------


def test_reasons_are_what_the_api_shows() -> None:
    assert [reason.value for reason in FailureReason] == [
        "Server",
        "Transport",
        "InvalidResponse",
        "CredentialRejected",
        "RateLimited",
        "Unauthorized",
        "ClusterNotFound",
        "AmbiguousClusterName",
        "TokenSecretMissing",
        "RequestRefused",
        "SSORequired",
        "NamespaceNotAllowed",
        "ClusterNotAllowed",
        "ExpiryTooLong",
        "VerifyRequired",
        "AccountNotFound",
        "InvalidAccount",
    ]


@pytest.mark.parametrize(
    ("reason", "reconciling", "stalled"),
    [
        (FailureReason.SERVER, ReconcilingReason.RETRYING_AFTER_ERROR, None),
        (FailureReason.TRANSPORT, ReconcilingReason.RETRYING_AFTER_ERROR, None),
        (FailureReason.INVALID_RESPONSE, ReconcilingReason.RETRYING_AFTER_ERROR, None),
        (FailureReason.RATE_LIMITED, ReconcilingReason.RATE_LIMITED, None),
        (FailureReason.UNAUTHORIZED, None, StalledReason.UNAUTHORIZED),
        (FailureReason.CLUSTER_NOT_FOUND, None, StalledReason.CLUSTER_NOT_FOUND),
        (FailureReason.AMBIGUOUS_CLUSTER_NAME, None, StalledReason.AMBIGUOUS_CLUSTER_NAME),
        (FailureReason.TOKEN_SECRET_MISSING, None, StalledReason.TOKEN_SECRET_MISSING),
        (FailureReason.CREDENTIAL_REJECTED, ReconcilingReason.RETRYING_AFTER_ERROR, None),
        (FailureReason.REQUEST_REFUSED, None, StalledReason.REQUEST_REFUSED),
        (FailureReason.SSO_REQUIRED, None, StalledReason.SSO_REQUIRED),
    ],
)
def test_a_failure_is_either_retried_by_itself_or_needs_a_human(
    reason: FailureReason,
    reconciling: ReconcilingReason | None,
    stalled: StalledReason | None,
) -> None:
    assert (reason.reconciling, reason.stalled) == (reconciling, stalled)


# --- failing ------------------------------------------------------------------------------------


def test_the_first_transient_failure_retries_within_five_seconds() -> None:
    state = fail()

    assert state.attempts == 1
    assert state.last == SERVER_ERROR
    assert state.last_time == NOW
    assert retry_in(state) == 5 * SECOND


def test_each_further_transient_failure_doubles_the_backoff_ceiling() -> None:
    state = CLEAR
    waits = []
    for _ in range(4):
        state = fail(state)
        waits.append(retry_in(state))

    assert waits == [5 * SECOND, 10 * SECOND, 20 * SECOND, 40 * SECOND]
    assert state.attempts == 4


def test_the_backoff_is_fully_jittered() -> None:
    assert retry_in(fail(fail(), jitter=0.5)) == 5 * SECOND


def test_the_backoff_leaves_room_for_retries_before_the_credential_expires() -> None:
    state = CLEAR
    for _ in range(10):
        state = fail(state, expires_at=NOW + 8 * MINUTE)

    assert retry_in(state) == 2 * MINUTE  # a quarter of what remains


def test_without_a_credential_the_backoff_is_capped_at_thirty_seconds() -> None:
    state = CLEAR
    for _ in range(10):
        state = fail(state, expires_at=None)

    assert retry_in(state) == 30 * SECOND
    assert state.uncovered


def test_an_expired_credential_counts_as_none() -> None:
    assert fail(expires_at=NOW).uncovered
    assert not fail(expires_at=NOW + SECOND).uncovered


def test_a_rate_limit_waits_exactly_as_long_as_digitalocean_asked() -> None:
    limited = Failure(FailureReason.RATE_LIMITED, "HTTP 429", retry_after=42 * SECOND)

    assert retry_in(fail(failure=limited)) == 42 * SECOND


def test_a_retry_is_never_planned_for_right_now() -> None:
    limited = Failure(FailureReason.RATE_LIMITED, "HTTP 429", retry_after=datetime.timedelta(0))

    assert retry_in(fail(failure=limited)) == failures.MIN_RETRY


def test_a_failure_that_needs_a_human_is_retried_slowly() -> None:
    state = fail(failure=REFUSED)

    assert retry_in(state) == STALLED_RETRY == 5 * MINUTE


@pytest.mark.parametrize("reason", [FailureReason.REQUEST_REFUSED, FailureReason.SSO_REQUIRED])
def test_a_refused_request_is_retried_ever_slower_up_to_an_hour(reason: FailureReason) -> None:
    refusal = Failure(reason, "GET /v2/...: HTTP 422: expiry_seconds is too large")
    state, waits = CLEAR, []
    for _ in range(6):
        state = fail(state, refusal)
        waits.append(retry_in(state))

    assert waits == [5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 40 * MINUTE, HOUR, HOUR]


def test_a_401_is_not_retried_ever_slower() -> None:
    state = fail(fail(fail(failure=REFUSED), REFUSED), REFUSED)

    assert retry_in(state) == STALLED_RETRY


# --- recovering ---------------------------------------------------------------------------------


def test_a_success_forgets_every_failure() -> None:
    assert failures.succeeded(fail(fail())) == CLEAR


def test_a_spec_change_resets_the_backoff() -> None:
    assert failures.spec_changed(fail(fail(failure=REFUSED))) == CLEAR


def test_a_token_failure_watches_the_token_secret() -> None:
    missing = Failure(FailureReason.TOKEN_SECRET_MISSING, "no such Secret")

    assert fail(failure=REFUSED, token_version="7").watching_token
    assert fail(failure=missing, token_version=None).watching_token
    assert not fail(token_version="7").watching_token
    assert fail(token_version="7").token_version is None  # only a token failure keeps it


def test_a_changed_token_secret_retries_at_once() -> None:
    state = fail(failure=REFUSED, token_version="7")

    changed = failures.token_changed(state, version="8")

    assert changed.retry_at is None
    assert changed.attempts == 1  # still a failure streak
    assert failures.postpone(FetchNow(FetchReason.DUE), changed, now=NOW) == FetchNow(
        FetchReason.DUE
    )


def test_a_token_secret_created_after_it_was_missing_retries_at_once() -> None:
    missing = Failure(FailureReason.TOKEN_SECRET_MISSING, "no such Secret")
    state = fail(failure=missing, token_version=None)

    assert failures.token_changed(state, version="1").retry_at is None


def test_an_unchanged_token_secret_changes_nothing() -> None:
    state = fail(failure=REFUSED, token_version="7")

    assert failures.token_changed(state, version="7") is state


def test_a_token_change_does_not_hurry_a_failure_about_something_else() -> None:
    state = fail(token_version=None)

    assert failures.token_changed(state, version="9") is state


def test_a_changed_account_retries_its_refusal_at_once() -> None:
    refused = Failure(FailureReason.CLUSTER_NOT_ALLOWED, "granted by none of the rules")
    state = fail(failure=refused)
    assert state.retry_at is not None  # the slow retry of a failure that needs a human

    changed = failures.account_changed(state)

    assert changed.retry_at is None
    assert changed.last == refused  # still the situation until the next attempt says otherwise
    assert failures.postpone(FetchNow(FetchReason.DUE), changed, now=NOW) == FetchNow(
        FetchReason.DUE
    )


@pytest.mark.parametrize(
    "reason",
    [
        FailureReason.NAMESPACE_NOT_ALLOWED,
        FailureReason.EXPIRY_TOO_LONG,
        FailureReason.VERIFY_REQUIRED,
        FailureReason.ACCOUNT_NOT_FOUND,
        FailureReason.INVALID_ACCOUNT,
    ],
)
def test_every_refusal_of_an_account_is_about_the_account(reason: FailureReason) -> None:
    assert reason.concerns_the_account
    assert failures.account_changed(fail(failure=Failure(reason, "refused"))).retry_at is None


def test_an_account_change_does_not_hurry_a_failure_about_something_else() -> None:
    for state in (fail(), fail(failure=REFUSED, token_version="7"), CLEAR):
        assert failures.account_changed(state) is state


def test_the_token_secret_is_looked_at_every_few_seconds_while_watched() -> None:
    watched = fail(failure=REFUSED, token_version="7")
    retry = NOW + STALLED_RETRY

    assert failures.next_look(watched, wait_until=retry, now=NOW) == NOW + failures.TOKEN_POLL
    assert failures.next_look(fail(), wait_until=retry, now=NOW) == retry
    soon = NOW + SECOND
    assert failures.next_look(watched, wait_until=soon, now=NOW) == soon


# --- what a pending retry postpones -------------------------------------------------------------


def plan(
    *,
    now: datetime.datetime,
    seen: ObservedSecret | None,
    refresh_request: str | None = None,
    retry_at: datetime.datetime | None = None,
) -> Plan:
    state = CLEAR
    if retry_at is not None:
        state = FailureState(attempts=1, last=SERVER_ERROR, last_time=NOW, retry_at=retry_at)
    planned = next_action(
        now=now,
        spec=SPEC,
        observed=seen,
        last_secret_name=SPEC.target.name,
        refresh_request=refresh_request,
        jitter_fraction=0.0,
    )
    return failures.postpone(planned, state, now=now)


ISSUED = NOW


def observed() -> ObservedSecret:
    """The Secret of a 6-hour credential issued at ISSUED: renewed at ISSUED + 4 h."""
    return ObservedSecret(
        issued_at=ISSUED,
        expires_at=ISSUED + 6 * HOUR,
        cluster_id="bd5f5959-5e1e-4205-a714-a914373942af",
        spec_hash=SPEC.credential_hash(),
        handled_refresh_request=None,
    )


def test_a_pending_retry_postpones_a_fetch() -> None:
    retry_at = ISSUED + 4 * HOUR + MINUTE

    assert plan(now=ISSUED + 4 * HOUR, seen=observed(), retry_at=retry_at) == WaitUntil(retry_at)


def test_a_pending_retry_postpones_even_a_requested_refresh() -> None:
    retry_at = ISSUED + HOUR + MINUTE

    action = plan(now=ISSUED + HOUR, seen=observed(), refresh_request="now", retry_at=retry_at)

    assert action == WaitUntil(retry_at)


def refused_at(refresh_request: str | None) -> FailureState:
    refusal = Failure(FailureReason.REQUEST_REFUSED, "GET /v2/...: HTTP 422")
    return failures.failed(
        CLEAR,
        refusal,
        now=NOW,
        expires_at=EXPIRES,
        jitter_fraction=1.0,
        refresh_request=refresh_request,
    )


@pytest.mark.parametrize("reason", [FetchReason.REQUESTED, FetchReason.NEW])
def test_a_new_refresh_request_is_tried_at_once_while_a_human_is_needed(
    reason: FetchReason,
) -> None:
    # Without a credential yet, the plan's reason is New: the request counts all the same.
    state = refused_at("first")

    assert failures.postpone(FetchNow(reason), state, now=NOW, refresh_request="second") == (
        FetchNow(reason)
    )
    assert failures.postpone(FetchNow(reason), refused_at(None), now=NOW, refresh_request="x") == (
        FetchNow(reason)
    )


def test_the_refresh_request_already_tried_waits_for_the_slow_retry() -> None:
    state = refused_at("first")
    requested = FetchNow(FetchReason.REQUESTED)

    assert failures.postpone(requested, state, now=NOW, refresh_request="first") == WaitUntil(
        NOW + STALLED_RETRY
    )


def test_a_refresh_request_does_not_hurry_a_transient_failure() -> None:
    state = fail()
    requested = FetchNow(FetchReason.REQUESTED)

    assert failures.postpone(requested, state, now=NOW, refresh_request="new") == WaitUntil(
        NOW + 5 * SECOND
    )


def test_fetches_once_the_retry_time_has_come() -> None:
    retry_at = ISSUED + 4 * HOUR + MINUTE

    assert plan(now=retry_at, seen=observed(), retry_at=retry_at) == FetchNow(FetchReason.DUE)


def test_a_stale_retry_time_does_not_move_a_planned_renewal() -> None:
    retry_at = ISSUED + 5 * HOUR

    assert plan(now=ISSUED + HOUR, seen=observed(), retry_at=retry_at) == WaitUntil(
        ISSUED + 4 * HOUR
    )


def test_a_suspended_object_stays_suspended_while_failing() -> None:
    state = fail()

    assert failures.postpone(Suspended(), state, now=NOW) == Suspended()


# --- an outage: consumers lose the credential they had -------------------------------------------


def test_a_secret_lost_during_a_backoff_is_fetched_again_at_once() -> None:
    # Renewals were failing, with a valid credential in the Secret; then the Secret was deleted.
    state = fail(fail(fail()))
    assert retry_in(state) == 20 * SECOND

    assert failures.postpone(FetchNow(FetchReason.DRIFT), state, now=NOW) == FetchNow(
        FetchReason.DRIFT
    )


def test_a_secret_lost_while_stalled_is_fetched_again_at_once() -> None:
    state = fail(failure=REFUSED, token_version="7")

    assert failures.postpone(FetchNow(FetchReason.DRIFT), state, now=NOW) == FetchNow(
        FetchReason.DRIFT
    )


def test_after_the_outage_attempt_failed_the_short_backoff_applies() -> None:
    state = fail(fail(fail()))
    later = NOW + SECOND
    # The attempt made at once, without a credential, failed too.
    state = fail(state, now=later, expires_at=None, jitter=1.0)

    assert retry_in(state, now=later) == 30 * SECOND  # 5 s * 2**3, capped: consumers have none
    assert failures.postpone(FetchNow(FetchReason.DRIFT), state, now=later) == WaitUntil(
        later + 30 * SECOND
    )


def test_a_lost_secret_still_waits_for_a_rate_limit() -> None:
    limited = Failure(FailureReason.RATE_LIMITED, "HTTP 429", retry_after=90 * SECOND)
    state = fail(failure=limited)

    assert failures.postpone(FetchNow(FetchReason.DRIFT), state, now=NOW) == WaitUntil(
        NOW + 90 * SECOND
    )


@pytest.mark.parametrize(
    "reason", [FetchReason.DUE, FetchReason.REQUESTED, FetchReason.EXPIRED, FetchReason.NEW]
)
def test_other_reasons_to_fetch_wait_for_the_retry(reason: FetchReason) -> None:
    state = fail()

    assert failures.postpone(FetchNow(reason), state, now=NOW) == WaitUntil(NOW + 5 * SECOND)
