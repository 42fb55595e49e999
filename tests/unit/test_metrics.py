"""Metrics: per-object series follow the object and vanish with it; counters count."""

from __future__ import annotations

import datetime

from prometheus_client.parser import text_string_to_metric_families

from doks_access.metrics import Metrics, ObjectState

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
A, B = "bd5f5959-5e1e-4205-a714-a914373942af", "0c8d5a27-3f61-4b6c-9a55-6f3e2d1b7c40"


def _samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _state(cluster_id: str = A, *, expires_in: int = 3600, ready: str = "True") -> ObjectState:
    return ObjectState(
        cluster_id=cluster_id,
        expires_at=NOW + datetime.timedelta(seconds=expires_in),
        renewal_time=NOW + datetime.timedelta(seconds=expires_in * 2 // 3),
        ready=ready,
        failures=2,
    )


def _labels(cluster_id: str = A, **extra: str) -> frozenset[tuple[str, str]]:
    return frozenset({"namespace": "ns", "name": "prod", "cluster_id": cluster_id, **extra}.items())


def test_an_object_has_its_expiry_renewal_ready_and_failures() -> None:
    metrics = Metrics()
    metrics.observe_object(namespace="ns", name="prod", state=_state(), now=NOW)

    samples = _samples(metrics)

    expiry = samples[("doks_access_credential_expiration_timestamp_seconds", _labels())]
    assert expiry == (NOW + datetime.timedelta(hours=1)).timestamp()
    assert samples[("doks_access_consecutive_failures", _labels())] == 2
    assert samples[("doks_access_ready", _labels(status="True"))] == 1
    assert samples[("doks_access_ready", _labels(status="False"))] == 0
    assert samples[("doks_access_managed_objects", frozenset())] == 1
    assert samples[("doks_access_expired_objects", frozenset())] == 0


def test_an_expired_object_is_counted() -> None:
    metrics = Metrics()
    metrics.observe_object(
        namespace="ns", name="prod", state=_state(expires_in=-5, ready="False"), now=NOW
    )
    assert _samples(metrics)[("doks_access_expired_objects", frozenset())] == 1


def test_a_forgotten_object_leaves_no_series() -> None:
    metrics = Metrics()
    metrics.observe_object(namespace="ns", name="prod", state=_state(), now=NOW)

    metrics.forget_object(namespace="ns", name="prod")

    assert not [key for key in _samples(metrics) if ("name", "prod") in key[1]]
    assert _samples(metrics)[("doks_access_managed_objects", frozenset())] == 0


def test_a_new_cluster_id_replaces_the_old_series() -> None:
    metrics = Metrics()
    metrics.observe_object(namespace="ns", name="prod", state=_state(A), now=NOW)
    metrics.observe_object(namespace="ns", name="prod", state=_state(B), now=NOW)

    clusters = {dict(key[1]).get("cluster_id") for key in _samples(metrics)}
    assert clusters - {None} == {B}


def test_responses_are_counted_by_endpoint_and_code_with_the_quota_per_token() -> None:
    metrics = Metrics()
    for code in ("200", "200", "429"):
        metrics.response(
            endpoint="kubeconfig", code=code, seconds=0.05, token_key="abc123", remaining=4321
        )

    samples = _samples(metrics)

    requests = "doks_access_digitalocean_requests_total"
    assert samples[(requests, frozenset({"endpoint": "kubeconfig", "code": "200"}.items()))] == 2
    assert samples[(requests, frozenset({"endpoint": "kubeconfig", "code": "429"}.items()))] == 1
    remaining = ("doks_access_digitalocean_ratelimit_remaining", frozenset({("token", "abc123")}))
    assert samples[remaining] == 4321
    count = (
        "doks_access_digitalocean_request_duration_seconds_count",
        frozenset({("endpoint", "kubeconfig")}),
    )
    assert samples[count] == 3
