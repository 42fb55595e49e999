"""The TokenReview webhook, over HTTPS as the apiserver calls it, on the emulator's clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    Cluster,
    Emulator,
    Identity,
    ManualClock,
)

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]


@pytest.fixture
def webhook(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=emulator.client_ssl_context(), timeout=10) as client:
        yield client


def _review(webhook: httpx.Client, emulator: Emulator, token: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, **spec},
    }
    response = webhook.post(emulator.token_webhook.url, json=body)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    assert (answer["apiVersion"], answer["kind"]) == ("authentication.k8s.io/v1", "TokenReview")
    return answer


def _token(do_api: httpx.Client, cluster_id: str, expiry_seconds: int) -> str:
    path = f"/v2/kubernetes/clusters/{cluster_id}/credentials"
    token: str = do_api.get(path, params={"expiry_seconds": expiry_seconds}).json()["token"]
    return token


def test_the_webhook_is_https_with_the_emulators_ca(emulator: Emulator) -> None:
    assert emulator.token_webhook.url.startswith("https://127.0.0.1:")
    assert emulator.token_webhook.url.endswith("/authenticate")
    assert emulator.token_webhook.ca_pem == emulator.ca_pem


def test_a_fresh_token_authenticates_as_the_clusters_identity(
    do_api: httpx.Client, webhook: httpx.Client, emulator: Emulator
) -> None:
    token = _token(do_api, PROD, 60)
    answer = _review(webhook, emulator, token)
    (credential,) = emulator.issued_credentials()
    assert answer["status"] == {
        "authenticated": True,
        "user": {
            "username": "doks-emulator-admin",
            "uid": credential.id,
            "groups": ["system:masters"],
        },
    }


def test_a_configured_identity_is_what_the_apiserver_sees(
    do_api: httpx.Client, webhook: httpx.Client, emulator: Emulator
) -> None:
    cluster = emulator.add_cluster(
        Cluster(name="team", identity=Identity(username="alice", groups=("devs",)))
    )
    user = _review(webhook, emulator, _token(do_api, cluster.id, 60))["status"]["user"]
    assert (user["username"], user["groups"]) == ("alice", ["devs"])


def test_a_token_stops_authenticating_at_its_expiry(
    do_api: httpx.Client, webhook: httpx.Client, emulator: Emulator, clock: ManualClock
) -> None:
    token = _token(do_api, PROD, 5)
    clock.advance(4.999)
    assert _review(webhook, emulator, token)["status"]["authenticated"] is True
    clock.advance(0.001)
    assert _review(webhook, emulator, token)["status"] == {"authenticated": False}


def test_a_seven_day_token_lasts_seven_days(
    do_api: httpx.Client, webhook: httpx.Client, emulator: Emulator, clock: ManualClock
) -> None:
    token = _token(do_api, PROD, 0)
    clock.advance(7 * 24 * 3600 - 1)
    assert _review(webhook, emulator, token)["status"]["authenticated"] is True
    clock.advance(1)
    assert _review(webhook, emulator, token)["status"]["authenticated"] is False


@pytest.mark.parametrize("token", ["unknown", "", "dop_v1_" + "d3m0" * 16])
def test_an_unknown_token_or_an_api_token_does_not_authenticate(
    webhook: httpx.Client, emulator: Emulator, token: str
) -> None:
    assert _review(webhook, emulator, token)["status"] == {"authenticated": False}


def test_requested_audiences_are_granted(
    do_api: httpx.Client, webhook: httpx.Client, emulator: Emulator
) -> None:
    audiences = ["https://kubernetes.default.svc.cluster.local"]
    answer = _review(webhook, emulator, _token(do_api, PROD, 60), audiences=audiences)
    assert answer["status"]["audiences"] == audiences


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"kind": "TokenReview"}', b'{"kind": "Pod", "spec": {}}']
)
def test_a_malformed_review_is_a_400(
    webhook: httpx.Client, emulator: Emulator, body: bytes
) -> None:
    assert webhook.post(emulator.token_webhook.url, content=body).status_code == 400


def test_reviews_are_counted(
    do_api: httpx.Client, webhook: httpx.Client, emulator: Emulator
) -> None:
    _review(webhook, emulator, _token(do_api, PROD, 60))
    _review(webhook, emulator, "unknown")
    assert emulator.stats()["token_review"] == {"authenticated": 1, "rejected": 1}
