"""The timing policy: when a credential is renewed, how failures back off, what to do now."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from doks_access.bookkeeping import ObservedSecret
from doks_access.scheduling import (
    MAX_RENEWAL_JITTER,
    STALLED_RETRY,
    FetchNow,
    FetchReason,
    Suspended,
    WaitUntil,
    failure_backoff,
    guard_marks,
    next_action,
    next_guard,
    refused_retry,
    renewal_jitter,
    renewal_time,
)
from doks_access.spec import AccessSpec, parse_spec

ISSUED = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
EXPIRES = ISSUED + datetime.timedelta(hours=6)
HOUR = datetime.timedelta(hours=1)
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)


def make_spec(**spec: Any) -> AccessSpec:
    body = {
        "metadata": {"name": "prod", "namespace": "platform"},
        "spec": {
            "clusterID": "bd5f5959-5e1e-4205-a714-a914373942af",
            "tokenSecretRef": {"name": "digitalocean-api"},
            **spec,
        },
    }
    return parse_spec(body)


SPEC = make_spec()


def observed(
    *, spec_hash: str | None = None, handled_refresh_request: str | None = None
) -> ObservedSecret:
    """The Secret of a 6-hour credential issued at ISSUED, written for SPEC."""
    return ObservedSecret(
        issued_at=ISSUED,
        expires_at=EXPIRES,
        cluster_id="bd5f5959-5e1e-4205-a714-a914373942af",
        spec_hash=spec_hash or SPEC.credential_hash(),
        handled_refresh_request=handled_refresh_request,
    )


def plan(
    *,
    now: datetime.datetime,
    spec: AccessSpec = SPEC,
    seen: ObservedSecret | None = None,
    last_secret_name: str | None = SPEC.target.name,
    refresh_request: str | None = None,
) -> FetchNow | WaitUntil | Suspended:
    return next_action(
        now=now,
        spec=spec,
        observed=seen,
        last_secret_name=last_secret_name,
        refresh_request=refresh_request,
        jitter_fraction=0.0,
    )


# --- renewal time -------------------------------------------------------------------------------


def test_renews_a_third_of_the_lifetime_before_expiry_by_default() -> None:
    renewal = renewal_time(
        issued_at=ISSUED, expires_at=EXPIRES, renew_before=None, jitter_fraction=0.0
    )

    assert renewal == ISSUED + 4 * HOUR


def test_renews_the_asked_time_before_expiry() -> None:
    renewal = renewal_time(
        issued_at=ISSUED, expires_at=EXPIRES, renew_before=90 * MINUTE, jitter_fraction=0.0
    )

    assert renewal == EXPIRES - 90 * MINUTE


def test_jitter_moves_the_renewal_earlier_by_its_fraction_of_renew_before() -> None:
    renewal = renewal_time(
        issued_at=ISSUED, expires_at=EXPIRES, renew_before=2 * HOUR, jitter_fraction=0.1
    )

    assert renewal == EXPIRES - 2 * HOUR - 12 * MINUTE


@pytest.mark.parametrize("renew_before", [4 * HOUR, 6 * HOUR, 48 * HOUR])
def test_caps_renew_before_at_half_the_lifetime(renew_before: datetime.timedelta) -> None:
    renewal = renewal_time(
        issued_at=ISSUED, expires_at=EXPIRES, renew_before=renew_before, jitter_fraction=0.0
    )

    assert renewal == ISSUED + 3 * HOUR


def test_uses_a_credential_for_at_least_45_percent_of_its_lifetime() -> None:
    renewal = renewal_time(
        issued_at=ISSUED,
        expires_at=EXPIRES,
        renew_before=48 * HOUR,
        jitter_fraction=MAX_RENEWAL_JITTER,
    )

    assert renewal == ISSUED + 6 * HOUR * 0.45


@pytest.mark.parametrize("jitter_fraction", [-0.01, 0.11, 1.0])
def test_refuses_a_renewal_jitter_outside_zero_to_ten_percent(jitter_fraction: float) -> None:
    with pytest.raises(ValueError, match="jitter_fraction"):
        renewal_time(
            issued_at=ISSUED, expires_at=EXPIRES, renew_before=None, jitter_fraction=jitter_fraction
        )


def test_refuses_a_credential_that_expires_before_it_is_issued() -> None:
    with pytest.raises(ValueError, match="expire after"):
        renewal_time(issued_at=EXPIRES, expires_at=ISSUED, renew_before=None, jitter_fraction=0)


def test_the_renewal_jitter_of_a_seed_is_always_the_same() -> None:
    assert renewal_jitter(seed="uid-1/2030-01-01T00:00:00Z") == renewal_jitter(
        seed="uid-1/2030-01-01T00:00:00Z"
    )


def test_renewal_jitters_spread_over_zero_to_ten_percent() -> None:
    draws = [renewal_jitter(seed=f"uid-{n}") for n in range(1000)]

    assert all(0 <= draw < MAX_RENEWAL_JITTER for draw in draws)
    assert min(draws) < 0.01
    assert max(draws) > 0.09
    assert len(set(draws)) == 1000


# --- failure backoff ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(1, 5 * SECOND), (2, 10 * SECOND), (3, 20 * SECOND), (6, 160 * SECOND), (7, 5 * MINUTE)],
)
def test_backs_off_exponentially_from_five_seconds_to_five_minutes(
    failures: int, ceiling: datetime.timedelta
) -> None:
    delay = failure_backoff(failures=failures, now=ISSUED, expires_at=EXPIRES, jitter_fraction=1.0)

    assert delay == ceiling


@pytest.mark.parametrize("jitter_fraction", [0.0, 0.25, 0.5])
def test_jitters_the_whole_backoff(jitter_fraction: float) -> None:
    delay = failure_backoff(
        failures=3, now=ISSUED, expires_at=None, jitter_fraction=jitter_fraction
    )

    assert delay == 20 * SECOND * jitter_fraction


def test_caps_the_backoff_at_a_quarter_of_the_remaining_lifetime() -> None:
    now = EXPIRES - 8 * MINUTE

    delay = failure_backoff(failures=10, now=now, expires_at=EXPIRES, jitter_fraction=1.0)

    assert delay == 2 * MINUTE


def test_caps_the_backoff_at_five_minutes_while_much_lifetime_remains() -> None:
    delay = failure_backoff(failures=10, now=ISSUED, expires_at=EXPIRES, jitter_fraction=1.0)

    assert delay == 5 * MINUTE


def test_retries_at_least_once_a_second_just_before_expiry() -> None:
    now = EXPIRES - 2 * SECOND

    delay = failure_backoff(failures=10, now=now, expires_at=EXPIRES, jitter_fraction=1.0)

    assert delay == SECOND


@pytest.mark.parametrize(
    ("now", "expires_at"), [(EXPIRES + SECOND, EXPIRES), (ISSUED, None)], ids=["expired", "none"]
)
def test_retries_at_least_every_thirty_seconds_without_a_valid_credential(
    now: datetime.datetime, expires_at: datetime.datetime | None
) -> None:
    delay = failure_backoff(failures=10, now=now, expires_at=expires_at, jitter_fraction=1.0)

    assert delay == 30 * SECOND


def test_survives_an_endless_failure_streak() -> None:
    delay = failure_backoff(failures=10_000, now=ISSUED, expires_at=EXPIRES, jitter_fraction=1.0)

    assert delay == 5 * MINUTE


def test_honours_a_custom_base_and_cap() -> None:
    delay = failure_backoff(
        failures=4,
        now=ISSUED,
        expires_at=None,
        jitter_fraction=1.0,
        base=SECOND,
        cap=6 * SECOND,
    )

    assert delay == 6 * SECOND


def test_refuses_a_backoff_before_any_failure() -> None:
    with pytest.raises(ValueError, match="failures"):
        failure_backoff(failures=0, now=ISSUED, expires_at=None, jitter_fraction=1.0)


@pytest.mark.parametrize("jitter_fraction", [-0.1, 1.1])
def test_refuses_a_backoff_jitter_outside_zero_to_one(jitter_fraction: float) -> None:
    with pytest.raises(ValueError, match="jitter_fraction"):
        failure_backoff(failures=1, now=ISSUED, expires_at=None, jitter_fraction=jitter_fraction)


def test_retries_stalled_objects_every_five_minutes() -> None:
    assert STALLED_RETRY == 5 * MINUTE


# --- what to do now -----------------------------------------------------------------------------


def test_fetches_for_a_new_object() -> None:
    assert plan(now=ISSUED, last_secret_name=None) == FetchNow(FetchReason.NEW)


def test_fetches_when_the_secret_it_wrote_is_gone_or_changed() -> None:
    assert plan(now=ISSUED) == FetchNow(FetchReason.DRIFT)


def test_fetches_when_the_target_was_renamed() -> None:
    assert plan(now=ISSUED, last_secret_name="old-name") == FetchNow(FetchReason.SPEC_CHANGED)


def test_fetches_when_a_field_that_shapes_the_credential_changed() -> None:
    seen = observed(spec_hash=make_spec(expirySeconds=3600).credential_hash())

    assert plan(now=ISSUED + HOUR, seen=seen) == FetchNow(FetchReason.SPEC_CHANGED)


def test_waits_when_only_labels_changed() -> None:
    spec = make_spec(target={"labels": {"team": "platform"}})

    assert plan(now=ISSUED + HOUR, spec=spec, seen=observed()) == WaitUntil(ISSUED + 4 * HOUR)


def test_waits_for_the_renewal_time_of_a_fresh_credential() -> None:
    assert plan(now=ISSUED + HOUR, seen=observed()) == WaitUntil(ISSUED + 4 * HOUR)


def test_waits_for_the_renewal_time_that_renew_before_asks_for() -> None:
    spec = make_spec(renewBefore="1h")

    assert plan(now=ISSUED + HOUR, spec=spec, seen=observed()) == WaitUntil(EXPIRES - HOUR)


def test_fetches_when_the_renewal_time_has_come() -> None:
    assert plan(now=ISSUED + 4 * HOUR, seen=observed()) == FetchNow(FetchReason.DUE)


def test_fetches_when_the_credential_has_expired() -> None:
    assert plan(now=EXPIRES, seen=observed()) == FetchNow(FetchReason.EXPIRED)


def test_fetches_when_a_new_refresh_is_requested() -> None:
    seen = observed(handled_refresh_request="2030-01-01T00:00:00Z")

    action = plan(now=ISSUED + HOUR, seen=seen, refresh_request="2030-01-01T01:00:00Z")

    assert action == FetchNow(FetchReason.REQUESTED)


def test_fetches_for_a_refresh_request_the_secret_has_not_answered_yet() -> None:
    action = plan(now=ISSUED + HOUR, seen=observed(), refresh_request="now")

    assert action == FetchNow(FetchReason.REQUESTED)


def test_does_not_fetch_again_for_a_refresh_request_already_handled() -> None:
    seen = observed(handled_refresh_request="2030-01-01T00:00:00Z")

    action = plan(now=ISSUED + HOUR, seen=seen, refresh_request="2030-01-01T00:00:00Z")

    assert action == WaitUntil(ISSUED + 4 * HOUR)


def test_does_not_fetch_when_the_refresh_request_was_removed() -> None:
    seen = observed(handled_refresh_request="2030-01-01T00:00:00Z")

    assert plan(now=ISSUED + HOUR, seen=seen) == WaitUntil(ISSUED + 4 * HOUR)


def test_reports_an_expiry_before_a_refresh_request() -> None:
    assert plan(now=EXPIRES, seen=observed(), refresh_request="now") == FetchNow(
        FetchReason.EXPIRED
    )


def test_does_nothing_while_suspended() -> None:
    spec = make_spec(suspend=True)

    assert plan(now=ISSUED, spec=spec, last_secret_name=None) == Suspended()
    assert plan(now=EXPIRES, spec=spec, seen=observed()) == Suspended()


def test_jitter_moves_the_planned_renewal_earlier() -> None:
    action = next_action(
        now=ISSUED + HOUR,
        spec=SPEC,
        observed=observed(),
        last_secret_name="prod-kubeconfig",
        refresh_request=None,
        jitter_fraction=0.05,
    )

    assert action == WaitUntil(ISSUED + 4 * HOUR - 6 * MINUTE)


# --- the lifetime guard's marks -----------------------------------------------------------------


def test_the_guard_checks_a_credential_at_its_quarter_marks() -> None:
    issued = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    marks = guard_marks(issued_at=issued, expires_at=issued + 4 * HOUR)

    assert marks == (issued + HOUR, issued + 2 * HOUR, issued + 3 * HOUR)


def test_the_next_guard_mark_is_the_first_after_the_last_check() -> None:
    issued = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    expires = issued + 4 * HOUR

    assert next_guard(issued_at=issued, expires_at=expires, after=issued) == issued + HOUR
    assert next_guard(issued_at=issued, expires_at=expires, after=issued + HOUR) == (
        issued + 2 * HOUR
    )
    assert next_guard(issued_at=issued, expires_at=expires, after=issued + 3 * HOUR) is None


def test_with_the_default_renewal_the_guard_checks_twice_before_renewing() -> None:
    issued = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    expires = issued + 12 * HOUR
    renewal = renewal_time(
        issued_at=issued, expires_at=expires, renew_before=None, jitter_fraction=0.1
    )

    before = [m for m in guard_marks(issued_at=issued, expires_at=expires) if m < renewal]

    assert len(before) == 2


def test_a_refused_request_waits_five_minutes_then_doubles_up_to_an_hour() -> None:
    waits = [refused_retry(n) for n in (1, 2, 3, 4, 5, 50)]

    assert waits == [5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 40 * MINUTE, HOUR, HOUR]
    with pytest.raises(ValueError, match="at least 1"):
        refused_retry(0)
