"""The reliability suites' arithmetic: what counts as a lost object, a wasted fetch, two leaders."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import yaml

from doks_access import bookkeeping
from reliability import ledger, report
from reliability.consumers import credential_from_secret
from reliability.ledger import Attempt, ConsumerTally, Interval, SecretState
from reliability.rig import KEY_MARKERS, leaks
from reliability.scenarios import Outcome

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def _at(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def test_an_object_is_lost_without_a_secret_or_with_an_expired_credential() -> None:
    assert ledger.audit(NOW, SecretState(exists=False), grace=10) == "no Secret"
    expired = SecretState(exists=True, expires_at=_at(-1))
    assert "expired" in (ledger.audit(NOW, expired, grace=10) or "")
    assert ledger.audit(NOW, SecretState(exists=True, expires_at=_at(60)), grace=10) is None


def test_an_object_is_stale_only_once_its_renewal_is_overdue_by_more_than_the_grace() -> None:
    due = SecretState(exists=True, expires_at=_at(60), renewal_time=_at(-10))
    assert ledger.audit(NOW, due, grace=10) is None
    assert "not renewed" in (ledger.audit(NOW, due, grace=9) or "")


def test_the_secret_state_is_read_from_the_operators_annotations_and_status() -> None:
    annotations = {bookkeeping.EXPIRES_AT: bookkeeping.format_timestamp(_at(30))}
    state = ledger.secret_state(annotations, {"renewalTime": bookkeeping.format_timestamp(_at(20))})
    assert state == SecretState(exists=True, expires_at=_at(30), renewal_time=_at(20))
    assert ledger.secret_state(None, None) == SecretState(exists=False)


def test_fetches_are_bounded_by_one_per_renewal_with_the_jitter_allowed_for() -> None:
    # 60 s credentials renewed 20-22 s early follow each other at least every 38 s.
    assert ledger.fetch_bound(lifetime=60, duration=0) == 1
    assert ledger.fetch_bound(lifetime=60, duration=38) == 2
    assert ledger.fetch_bound(lifetime=60, duration=39) == 3


def test_a_wasted_fetch_is_a_credential_issued_and_never_seen_in_its_secret() -> None:
    assert ledger.wasted_fetches({"a": 3, "b": 2}, {"a": 3, "b": 1}) == 1
    assert ledger.wasted_fetches({"a": 1}, {}) == 1
    assert ledger.wasted_fetches({"a": 1}, {"a": 2}) == 0


def test_two_replicas_leading_at_the_same_moment_are_found() -> None:
    a, b = Interval("a", 0, 10), Interval("b", 10, 20)
    assert ledger.overlaps([b, a]) == []
    late_kill = Interval("a", 0, 10.5)
    assert ledger.overlaps([late_kill, b]) == [(late_kill, b)]
    assert ledger.overlaps([Interval("a", 0, 10), Interval("a", 5, 15)]) == []


def test_reconciling_outside_ones_own_leadership_is_found() -> None:
    leading = [Interval("a", 0, 10), Interval("a", 20, 30)]
    assert ledger.outside([1, 10, 25], leading) == []
    assert ledger.outside([15, 31], leading) == [15, 31]


def test_a_tally_counts_outcomes_and_credentials_and_when_they_were_first_used() -> None:
    tally = ConsumerTally("c")
    tally.record(Attempt.AUTHENTICATED, at=1, credential="x")
    tally.record(Attempt.AUTHENTICATED, at=2, credential="x")
    tally.record(Attempt.REFUSED, at=3, credential="y")
    tally.record(Attempt.UNREACHABLE, at=4, credential="y")
    assert tally.attempts == 4
    assert tally.credentials == ["x", "y"]
    assert tally.new_credential_after(2.5) == 3
    assert tally.new_credential_after(3.5) is None
    assert tally.refused_outside([(2.5, 3.5)]) == 0
    assert tally.refused_outside([(0, 2)]) == 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_consumer_reads_the_credential_from_a_kubeconfig_or_an_argo_cd_secret() -> None:
    kubeconfig = {
        "clusters": [
            {"cluster": {"server": "https://k", "certificate-authority-data": _b64(b"CA")}}
        ],
        "users": [{"user": {"token": "t0ken"}}],
    }
    plain = credential_from_secret(
        {"value": _b64(yaml.safe_dump(kubeconfig).encode())}, key="value"
    )
    assert plain is not None
    assert (plain.server, plain.ca_pem, plain.token) == ("https://k", b"CA", "t0ken")

    config = {
        "tlsClientConfig": {"caData": _b64(b"CA"), "certData": _b64(b"C"), "keyData": _b64(b"K")}
    }
    argo = credential_from_secret(
        {"server": _b64(b"https://k/"), "config": _b64(json.dumps(config).encode())}, key="config"
    )
    assert argo is not None
    assert (argo.server, argo.cert_pem, argo.key_pem, argo.token) == ("https://k", b"C", b"K", None)
    assert argo.fingerprint != plain.fingerprint


def test_a_secret_without_a_usable_credential_gives_none() -> None:
    assert credential_from_secret(None, key="kubeconfig") is None
    assert credential_from_secret({"other": _b64(b"x")}, key="kubeconfig") is None
    assert credential_from_secret({"kubeconfig": _b64(b"clusters: 3")}, key="kubeconfig") is None


def test_the_secrecy_search_finds_a_token_or_a_private_key_in_any_file(tmp_path: Path) -> None:
    token = "dop_v1_" + "0123456789abcdef" * 4
    key = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"
    (tmp_path / "clean.log").write_text("fetching a credential (Due)\n")
    (tmp_path / "a.log").write_text(f"oops {token}\n")
    nested = tmp_path / "ns"
    nested.mkdir()
    (nested / "b.recorded").write_text(f"client-key-data: {_b64(key)}")
    (nested / "c.metrics").write_text(key.decode())

    found = leaks(tmp_path, [token])

    assert found == [
        "a.log: dop_v1…",
        "b.recorded: " + leaks_marker(key),
        "c.metrics: PRIVATE KEY-----",
    ]
    assert all(token not in line for line in found)
    assert leaks(tmp_path / "ns", ["absent"]) == found[1:]


def leaks_marker(key: bytes) -> str:
    """The base64 marker that matched a base64-encoded EC key."""
    (marker,) = [m for m in KEY_MARKERS if m in _b64(key)]
    return marker


def test_a_row_of_reliability_md_shows_failures_losses_calls_and_how_to_rerun() -> None:
    failed = Outcome("outage", "t", load="4 objects", faults="refused", seconds=90)
    failed.consumer_attempts, failed.consumer_refused, failed.objects = 1000, 3, 4
    failed.refusals_expected = " (expected)"
    failed.check("recovered", False)
    quiet = Outcome("secrecy", "t")
    quiet.check("no secret found", True)

    header, rule, outage, secrecy = report.markdown_rows([failed, quiet]).splitlines()

    assert header.count("|") == rule.count("|") == outage.count("|") == secrecy.count("|")
    assert "| 3 of 1,000 (expected) | 0 of 4 |" in outage
    assert "**FAIL**" in outage
    assert "`make chaos SCENARIO=outage`" in outage
    assert "| — | — | — | pass |" in secrecy
