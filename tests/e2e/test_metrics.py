"""The operator's /metrics, scraped while it works: values agree with status and the emulator."""

from __future__ import annotations

import datetime
import urllib.request

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from doks_access_testkit.emulator import Emulator, Fault
from tests import kube
from tests.e2e.objects import (
    CLUSTER_ID,
    GROUP,
    PLURAL,
    VERSION,
    apply_access,
    create_token_secret,
    request_refresh,
    wait_for_condition,
)
from tests.running_operator import OperatorRunner

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(operator: OperatorRunner) -> Samples:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    # Kept for the session's witness, which greps every scrape for token material.
    with (operator.log_path.parent / "scrapes.prom").open("a") as kept:
        kept.write(text)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _reachable(operator: OperatorRunner) -> Samples | None:
    try:
        return _scrape(operator)
    except OSError:  # not listening yet: the session's operator may be starting
        return None


def _value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def _requests(samples: Samples, code: str) -> float:
    found = _value(
        samples, "doks_access_digitalocean_requests_total", endpoint="kubeconfig", code=code
    )
    return found or 0.0


def test_metrics_follow_issue_failure_and_deletion(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, operator: OperatorRunner
) -> None:
    before = kube.eventually(lambda: _reachable(operator), what="the metrics endpoint")
    emulator_before = digitalocean.stats().get("kubeconfig", {}).get("200", 0)
    create_token_secret(api, namespace)
    apply_access(api, namespace, "watched", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    obj = wait_for_condition(api, namespace, "watched", "Ready", "True", "Issued")
    labels = {"namespace": namespace, "name": "watched", "cluster_id": CLUSTER_ID}

    issued = kube.eventually(
        lambda: (
            (s := _scrape(operator))
            and _value(s, "doks_access_ready", **labels, status="True") == 1
            and s
        ),
        what="the object's series",
    )

    expires = datetime.datetime.fromisoformat(obj["status"]["expiresAt"]).timestamp()
    renewal = datetime.datetime.fromisoformat(obj["status"]["renewalTime"]).timestamp()
    assert _value(issued, "doks_access_credential_expiration_timestamp_seconds", **labels) == (
        pytest.approx(expires, abs=1)
    )
    assert _value(issued, "doks_access_credential_renewal_timestamp_seconds", **labels) == (
        pytest.approx(renewal, abs=1)
    )
    assert _value(issued, "doks_access_consecutive_failures", **labels) == 0
    # Other objects of the session may be fetching too: the two counts agree once nothing is
    # in flight.
    kube.eventually(
        lambda: (
            _requests(_scrape(operator), "200") - _requests(before, "200")
            == digitalocean.stats()["kubeconfig"]["200"] - emulator_before
        ),
        what="the request counter to agree with the emulator's",
    )
    successes = _value(issued, "doks_access_renewals_total", result="success") or 0
    assert successes >= 1
    assert (_value(issued, "doks_access_managed_objects") or 0) >= 1

    request_refresh(api, namespace, "watched", "renew")
    renewed = kube.eventually(
        lambda: (
            (s := _scrape(operator))
            and (_value(s, "doks_access_renewals_total", result="success") or 0) > successes
            and s
        ),
        what="a successful renewal to be counted",
    )
    assert (_value(renewed, "doks_access_kubernetes_writes_total", kind="Secret") or 0) >= 2

    fault = digitalocean.add_fault(Fault(kind="status", status=500, endpoint="kubeconfig"))
    try:
        request_refresh(api, namespace, "watched", "fail")
        failing = kube.eventually(
            lambda: (
                (s := _scrape(operator))
                and (_value(s, "doks_access_consecutive_failures", **labels) or 0) >= 1
                and s
            ),
            what="the failure to show in the metrics",
        )
    finally:
        digitalocean.remove_fault(fault.id)
    assert _requests(failing, "500") > _requests(before, "500")
    assert (_value(failing, "doks_access_renewals_total", result="Server") or 0) >= 1
    assert _value(failing, "doks_access_ready", **labels, status="True") == 1

    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "watched"
    )

    gone = kube.eventually(
        lambda: (
            (s := _scrape(operator))
            and _value(s, "doks_access_credential_expiration_timestamp_seconds", **labels) is None
            and s
        ),
        what="the deleted object's series to disappear",
    )
    assert not [key for key in gone if ("name", "watched") in key[1]]
