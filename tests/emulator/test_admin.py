"""The ``/_emulator`` endpoints: faults, counters, clusters, tokens and issued credentials."""

from __future__ import annotations

import base64

import httpx
import pytest

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, DEMO_TOKEN, Emulator, ManualClock
from tests.emulator.conftest import client_for

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
KUBECONFIG = f"/v2/kubernetes/clusters/{PROD}/kubeconfig"


def test_health_needs_no_token(emulator: Emulator) -> None:
    with client_for(emulator, None) as client:
        assert client.get("/_emulator/health").json() == {"status": "ok"}


@pytest.mark.parametrize("token", [None, DEMO_TOKEN, "nope"])
def test_everything_else_needs_the_admin_token(emulator: Emulator, token: str | None) -> None:
    with client_for(emulator, token) as client:
        for method, path in [("GET", "/_emulator/stats"), ("POST", "/_emulator/faults")]:
            response = client.request(method, path, json={"kind": "drop"})
            assert (response.status_code, response.json()["id"]) == (401, "unauthorized")
    assert emulator.faults() == []


def test_admin_requests_are_neither_counted_nor_rate_limited(
    admin: httpx.Client, emulator: Emulator
) -> None:
    for _ in range(3):
        admin.get("/_emulator/stats")
    assert admin.get("/_emulator/stats").json() == {"requests": {}, "total": 0}


def test_faults_are_added_listed_removed_and_cleared(
    admin: httpx.Client, do_api: httpx.Client
) -> None:
    created = admin.post("/_emulator/faults", json={"kind": "status", "status": 503, "count": 2})
    assert created.status_code == 201
    (fault,) = created.json()["faults"]
    assert fault == {"kind": "status", "status": 503, "count": 2, "id": fault["id"]}
    assert do_api.get(KUBECONFIG).status_code == 503
    assert admin.get("/_emulator/faults").json()["faults"][0]["count"] == 1
    assert admin.delete(f"/_emulator/faults/{fault['id']}").status_code == 204
    assert admin.delete(f"/_emulator/faults/{fault['id']}").status_code == 404
    many = [{"kind": "latency", "seconds": 0}, {"kind": "drop", "endpoint": "credentials"}]
    assert len(admin.post("/_emulator/faults", json={"faults": many}).json()["faults"]) == 2
    assert len(admin.post("/_emulator/faults", json=many).json()["faults"]) == 2
    assert admin.delete("/_emulator/faults").status_code == 204
    assert admin.get("/_emulator/faults").json() == {"faults": []}


def test_a_binary_body_fault_travels_as_base64(admin: httpx.Client, do_api: httpx.Client) -> None:
    garbage = base64.b64encode(b"\x00\xfe garbage").decode()
    fault = {"kind": "body", "body_base64": garbage, "content_type": "application/octet-stream"}
    created = admin.post("/_emulator/faults", json=fault)
    assert created.status_code == 201
    assert created.json()["faults"][0]["body_base64"] == garbage
    answer = do_api.get(KUBECONFIG)
    assert (answer.content, answer.headers["content-type"]) == (
        b"\x00\xfe garbage",
        "application/octet-stream",
    )


@pytest.mark.parametrize(
    "body",
    [{"kind": "earthquake"}, [{"kind": "drop"}, {"kind": "status"}], "drop", {"faults": 3}],
)
def test_invalid_faults_are_a_400_and_none_is_added(
    admin: httpx.Client, emulator: Emulator, body: object
) -> None:
    response = admin.post("/_emulator/faults", json=body)
    assert (response.status_code, response.json()["id"]) == (400, "bad_request")
    assert emulator.faults() == []


def test_a_non_json_body_is_a_400(admin: httpx.Client) -> None:
    assert admin.post("/_emulator/faults", content=b"{").status_code == 400


def test_stats_count_per_endpoint_and_status_and_reset(
    admin: httpx.Client, do_api: httpx.Client, emulator: Emulator
) -> None:
    do_api.get("/v2/kubernetes/clusters")
    do_api.get(KUBECONFIG)
    do_api.get(KUBECONFIG, params={"expiry_seconds": "-1"})
    expected = {"kubeconfig": {"200": 1, "400": 1}, "list_clusters": {"200": 1}}
    assert admin.get("/_emulator/stats").json() == {"requests": expected, "total": 3}
    assert emulator.stats() == expected
    assert emulator.request_count("kubeconfig") == 2
    assert emulator.request_count(outcome=200) == 2
    assert admin.delete("/_emulator/stats").status_code == 204
    assert emulator.request_count() == 0


def test_rate_limits_can_be_reset(admin: httpx.Client, do_api: httpx.Client) -> None:
    do_api.get("/v2/kubernetes/clusters")
    assert admin.delete("/_emulator/ratelimits").status_code == 204
    assert do_api.get("/v2/kubernetes/clusters").headers["ratelimit-remaining"] == "4999"


def test_clusters_are_added_at_run_time(admin: httpx.Client, do_api: httpx.Client) -> None:
    created = admin.post(
        "/_emulator/clusters",
        json={
            "name": "new-one",
            "region": "lon1",
            "mode": "certificate",
            "identity": {"username": "bob", "groups": ["ops"]},
        },
    )
    assert created.status_code == 201
    cluster = created.json()["cluster"]
    assert (cluster["mode"], cluster["identity"]) == (
        "certificate",
        {"username": "bob", "groups": ["ops"]},
    )
    assert (
        do_api.get(f"/v2/kubernetes/clusters/{cluster['id']}").json()["kubernetes_cluster"]["name"]
        == "new-one"
    )
    names = [c["name"] for c in admin.get("/_emulator/clusters").json()["clusters"]]
    assert names[-1] == "new-one"
    assert admin.post("/_emulator/clusters", json={"region": "x"}).status_code == 400


def test_tokens_are_added_at_run_time(admin: httpx.Client, emulator: Emulator) -> None:
    created = admin.post("/_emulator/tokens", json={"scopes": ["kubernetes:read"]}).json()
    assert created["token"].startswith("dop_v1_")
    assert created["scopes"] == ["kubernetes:read"]
    with client_for(emulator, created["token"]) as client:
        assert client.get("/v2/kubernetes/clusters").status_code == 200
        assert client.get(KUBECONFIG).status_code == 403
    chosen = admin.post("/_emulator/tokens", json={"token": "dop_v1_mine"}).json()
    assert chosen["token"] == "dop_v1_mine"
    assert admin.post("/_emulator/tokens", json={"tokn": "x"}).status_code == 400


def test_issued_credentials_are_listed_without_their_secrets(
    admin: httpx.Client, do_api: httpx.Client, clock: ManualClock
) -> None:
    token = do_api.get(f"/v2/kubernetes/clusters/{PROD}/credentials", params={"expiry_seconds": 5})
    secret = token.json()["token"]
    listing = admin.get("/_emulator/credentials")
    assert secret not in listing.text
    (credential,) = listing.json()["credentials"]
    assert credential["cluster_id"] == PROD
    assert credential["kind"] == "token"
    assert credential["expires_at"] == token.json()["expires_at"]
    assert credential["expired"] is False
    clock.advance(5)
    assert admin.get("/_emulator/credentials").json()["credentials"][0]["expired"] is True
    other = admin.get("/_emulator/credentials", params={"cluster_id": "x"}).json()
    assert other == {"credentials": []}
