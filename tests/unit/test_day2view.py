"""What the day-2 commands show and how they exit, computed without a cluster."""

from __future__ import annotations

import datetime
import json

import pytest

from doks_access import cli, day2view
from doks_access.day2view import Baseline, State

NOW = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)


def access(ready: str = "True", reason: str = "Issued", **status: object) -> dict[str, object]:
    conditions: list[dict[str, object]] = [{"type": "Ready", "status": ready, "reason": reason}]
    stalled = status.pop("stalled", None)
    if stalled:
        conditions.append({"type": "Stalled", "status": "True", "reason": stalled})
    return {
        "metadata": {"namespace": "team", "name": "prod"},
        "status": {"conditions": conditions, **status},
    }


def a_set(ready: str, matched: int, ready_count: int) -> dict[str, object]:
    return {
        "metadata": {"namespace": "team", "name": "fleet"},
        "status": {
            "matched": matched,
            "ready": ready_count,
            "pending": 0,
            "conditions": [{"type": "Ready", "status": ready, "reason": "ChildrenNotReady"}],
        },
    }


def test_the_exit_status_is_0_only_when_everything_shown_is_ready() -> None:
    ready = day2view.access_row(access(expiresAt="2030-01-01T13:00:00Z"))
    not_ready = day2view.set_row(a_set("False", matched=3, ready_count=2))
    assert day2view.exit_status([ready]) == 0
    assert day2view.exit_status([]) == 0
    assert day2view.exit_status([ready, not_ready]) == 1


def test_the_table_shows_expiry_relative_to_now_and_set_counts() -> None:
    rows = [
        day2view.access_row(access(expiresAt="2030-01-01T13:00:00Z")),
        day2view.set_row(a_set("False", matched=3, ready_count=2)),
    ]
    lines = day2view.table(rows, now=NOW).splitlines()
    assert lines[0].split()[:4] == ["NAMESPACE", "KIND", "NAME", "READY"]
    assert "in 1h0m" in lines[1]
    assert "2/3 ready" in lines[2]
    assert "2030-01-01T13:00:00Z" in day2view.table(rows, now=NOW, wide=True)


def test_the_json_shape_is_stable() -> None:
    row = day2view.access_row(
        access(
            "False",
            "TokenSecretMissing",
            stalled="TokenSecretMissing",
            lastFailureReason="TokenSecretMissing",
            lastFailureTime="2030-01-01T11:59:00Z",
            failedAttempts=2,
        )
    )
    shown = json.loads(json.dumps(day2view.status_json([row])))
    assert shown["allReady"] is False
    (item,) = shown["items"]
    assert set(item) == {
        "kind", "namespace", "name", "ready", "reason", "message", "stalled", "reconciling",
        "issuedAt", "expiresAt", "renewalTime", "secretName", "clusterID", "lastFailure",
        "clusters",
    }  # fmt: skip
    assert item["lastFailure"] == {
        "reason": "TokenSecretMissing",
        "time": "2030-01-01T11:59:00Z",
        "attempts": 2,
    }
    assert item["clusters"] is None


def test_a_renewal_is_done_when_issued_at_changes_and_ready() -> None:
    before = Baseline.of(access(issuedAt="2030-01-01T11:00:00Z"))
    same = access(issuedAt="2030-01-01T11:00:00Z")
    new = access(issuedAt="2030-01-01T12:00:01Z", expiresAt="2030-01-08T12:00:01Z")
    assert day2view.progress_of(same, before=before).state is State.WAITING
    assert day2view.progress_of(new, before=before).state is State.RENEWED


def test_a_renewal_fails_on_a_new_stalled_failure_or_a_hopeless_spec() -> None:
    before = Baseline.of(access(issuedAt="2030-01-01T11:00:00Z"))
    refused = access(
        issuedAt="2030-01-01T11:00:00Z",
        stalled="Unauthorized",
        lastFailureReason="Unauthorized",
        lastFailureTime="2030-01-01T12:00:00Z",
        failedAttempts=1,
    )
    invalid = access("False", "InvalidSpec", stalled="InvalidSpec")
    assert day2view.progress_of(refused, before=before).text.startswith(
        "failed: Stalled Unauthorized"
    )
    assert day2view.progress_of(invalid, before=before).state is State.FAILED


def test_a_lease_is_current_until_its_duration_has_passed() -> None:
    lease = {
        "metadata": {"namespace": "ops", "name": "doks-access-operator"},
        "spec": {
            "holderIdentity": "pod-1",
            "renewTime": "2030-01-01T11:59:55.000000Z",
            "leaseDurationSeconds": 15,
        },
    }
    assert day2view.lease_holder(lease, now=NOW)[0] is True
    later = NOW + datetime.timedelta(minutes=1)
    assert day2view.lease_holder(lease, now=later) == (
        False,
        "Lease ops/doks-access-operator is expired: last renewed 1m5s ago by pod-1",
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("2m", 120), ("1h30m", 5400), ("45", 45)]
)
def test_durations(text: str, seconds: int) -> None:
    assert day2view.parse_duration(text).total_seconds() == seconds


def test_targets_take_the_namespace_from_the_name_or_n_or_the_context() -> None:
    assert day2view.parse_target("a/b", namespace=None, default="d") == ("a", "b")
    assert day2view.parse_target("b", namespace="n", default="d") == ("n", "b")
    assert day2view.parse_target("b", namespace=None, default="d") == ("d", "b")
    with pytest.raises(ValueError, match="not in namespace n"):
        day2view.parse_target("a/b", namespace="n", default="d")


@pytest.mark.parametrize(
    "argv",
    [
        ["renew"],
        ["renew", "--all", "a/b"],
        ["renew", "a/b", "-l", "x=y"],
        ["renew", "a/b", "--timeout", "soon"],
        ["status", "-n", "a", "-A"],
        ["status", "-o", "yaml"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_the_kubectl_plugin_has_only_the_day2_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.kubectl_main(["fetch", "--cluster-id", "x"])
    assert exited.value.code == 2
    assert "usage: kubectl doca" in capsys.readouterr().err
