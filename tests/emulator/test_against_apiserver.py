"""Issued credentials work against a real kube-apiserver, and stop working when they expire.

The local control plane is started with the emulator's TokenReview webhook (so bearer tokens are
judged by the emulator, on the emulator's clock) and with its client CA lent to the emulator (so
certificate-mode kubeconfigs carry certificates the apiserver verifies, NotAfter included). The
identity checks go through ``SelfSubjectReview``, which any authenticated user may create. A
cluster's lifetime cap, a revoke and an SSO requirement refused "at the cluster" are enforced here
by the same real apiserver.
"""

from __future__ import annotations

import base64
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config

from doks_access_testkit.binaries import control_plane_bin_dir
from doks_access_testkit.controlplane import ControlPlane
from doks_access_testkit.emulator import (
    Cluster,
    Emulator,
    EmulatorConfig,
    Identity,
    JumpingClock,
)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.controlplane,
    pytest.mark.skipif(
        bool(os.environ.get("DOKS_ACCESS_TEST_KUBECONFIG")),
        reason="needs the local control plane (DOKS_ACCESS_TEST_KUBECONFIG is set)",
    ),
]

TOKEN_USER = Identity(username="alice@example.com", groups=("doks-access:testers",))
CERT_USER = Identity(username="bob@example.com", groups=("doks-access:legacy",))
TOKEN_CLUSTER = Cluster(name="token-cluster", region="ams3", identity=TOKEN_USER)
CERT_CLUSTER = Cluster(name="cert-cluster", region="ams3", mode="certificate", identity=CERT_USER)
REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
APISERVER_TOKEN_CACHE_SECONDS = 10


@pytest.fixture(scope="module")
def jumping_clock() -> JumpingClock:
    return JumpingClock()


@pytest.fixture(scope="module")
def stack(jumping_clock: JumpingClock) -> Iterator[tuple[Emulator, ControlPlane]]:
    # The order the harness is built for: the emulator's addresses and TLS material exist before
    # the control plane is created with its webhook; then each learns the other; then both start.
    emulator = Emulator(
        config=EmulatorConfig(tls=True, clusters=(TOKEN_CLUSTER, CERT_CLUSTER)),
        clock=jumping_clock,
    )
    token = emulator.add_token("dop_v1_apiserver_test")
    assert token.token == "dop_v1_apiserver_test"
    plane = ControlPlane(bin_dir=control_plane_bin_dir(), token_webhook=emulator.token_webhook)
    emulator.use_control_plane(plane)
    with emulator, plane:
        yield emulator, plane


@pytest.fixture
def emulator(
    stack: tuple[Emulator, ControlPlane], jumping_clock: JumpingClock
) -> Iterator[Emulator]:
    jumping_clock.reset()
    yield stack[0]
    jumping_clock.reset()


@pytest.fixture
def do_api(emulator: Emulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer dop_v1_apiserver_test"}
    verify = emulator.client_ssl_context()
    with httpx.Client(base_url=emulator.api_url, headers=headers, verify=verify) as c:
        yield c


def _kubeconfig(do_api: httpx.Client, cluster: Cluster, expiry_seconds: int) -> dict[str, Any]:
    path = f"/v2/kubernetes/clusters/{cluster.id}/kubeconfig"
    response = do_api.get(path, params={"expiry_seconds": expiry_seconds, "type": "token"})
    assert response.status_code == 200
    document: dict[str, Any] = yaml.safe_load(response.text)
    return document


def _review(document: dict[str, Any], tmp_path: Path) -> httpx.Response:
    """POST a SelfSubjectReview with the kubeconfig's credential, over a new connection."""
    server = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(server["certificate-authority-data"]).decode()
    )
    headers = {}
    if "token" in user:
        headers["Authorization"] = f"Bearer {user['token']}"
    else:
        cert, key = tmp_path / "client.crt", tmp_path / "client.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        context.load_cert_chain(cert, key)
    with httpx.Client(verify=context, timeout=10) as kube:
        return kube.post(server["server"] + REVIEW_PATH, json=REVIEW, headers=headers)


def test_the_kubeconfig_points_at_the_local_apiserver(
    do_api: httpx.Client, stack: tuple[Emulator, ControlPlane]
) -> None:
    document = _kubeconfig(do_api, TOKEN_CLUSTER, 60)
    assert document["clusters"][0]["cluster"]["server"] == stack[1].server


def test_a_token_kubeconfig_works_with_the_kubernetes_client_as_the_configured_user(
    do_api: httpx.Client,
) -> None:
    document = _kubeconfig(do_api, TOKEN_CLUSTER, 60)
    new_client: Any = config.new_client_from_config_dict  # the kubernetes client is untyped here
    with new_client(document) as kube:
        authentication: Any = client.AuthenticationV1Api(kube)
        review = authentication.create_self_subject_review(REVIEW)
    assert review.status.user_info.username == TOKEN_USER.username
    assert set(TOKEN_USER.groups) <= set(review.status.user_info.groups)


def test_the_apiserver_asks_the_emulator_and_its_clock_decides(
    do_api: httpx.Client, jumping_clock: JumpingClock, tmp_path: Path
) -> None:
    almost = _kubeconfig(do_api, TOKEN_CLUSTER, 5)
    expired = _kubeconfig(do_api, TOKEN_CLUSTER, 5)
    jumping_clock.jump(4.9)
    accepted = _review(almost, tmp_path)
    assert accepted.status_code == 201
    assert accepted.json()["status"]["userInfo"]["username"] == TOKEN_USER.username
    jumping_clock.jump(0.1)
    assert _review(expired, tmp_path).status_code == 401


def test_a_token_that_worked_is_refused_soon_after_it_expires(
    do_api: httpx.Client, tmp_path: Path
) -> None:
    document = _kubeconfig(do_api, TOKEN_CLUSTER, 2)
    assert _review(document, tmp_path).status_code == 201
    expires_at = time.monotonic() + 2
    # The apiserver caches a successful token review for up to APISERVER_TOKEN_CACHE_SECONDS
    # (independently of --authentication-token-webhook-cache-ttl), so refusal may lag expiry.
    deadline = expires_at + APISERVER_TOKEN_CACHE_SECONDS + 2
    while time.monotonic() < deadline:
        status = _review(document, tmp_path).status_code
        if time.monotonic() < expires_at:
            assert status == 201
        elif status == 401:
            return
        time.sleep(0.25)
    pytest.fail("the expired token was still accepted")


def test_a_credentials_token_works_too(do_api: httpx.Client, tmp_path: Path) -> None:
    body = do_api.get(f"/v2/kubernetes/clusters/{TOKEN_CLUSTER.id}/credentials").json()
    document = {
        "clusters": [
            {
                "cluster": {
                    "server": body["server"],
                    "certificate-authority-data": body["certificate_authority_data"],
                }
            }
        ],
        "users": [{"user": {"token": body["token"]}}],
    }
    assert _review(document, tmp_path).status_code == 201


def test_a_certificate_kubeconfig_works_until_its_not_after(
    do_api: httpx.Client, emulator: Emulator, tmp_path: Path
) -> None:
    document = _kubeconfig(do_api, CERT_CLUSTER, 3)
    assert "token" not in document["users"][0]["user"]
    accepted = _review(document, tmp_path)
    assert accepted.status_code == 201
    assert accepted.json()["status"]["userInfo"]["username"] == CERT_USER.username
    not_after = emulator.issued_credentials(cluster_id=CERT_CLUSTER.id)[-1].expires_at
    # The apiserver checks NotAfter on every request against its own (the real) clock.
    time.sleep(max(0.0, not_after - time.time() + 0.2))
    assert _review(document, tmp_path).status_code == 401


def test_a_capped_token_is_refused_at_the_cap_not_at_the_asked_expiry(
    do_api: httpx.Client, emulator: Emulator, jumping_clock: JumpingClock, tmp_path: Path
) -> None:
    capped = emulator.add_cluster(Cluster(name="capped", identity=TOKEN_USER, max_lifetime=5))
    almost, expired = _kubeconfig(do_api, capped, 3600), _kubeconfig(do_api, capped, 3600)
    jumping_clock.jump(4.9)
    assert _review(almost, tmp_path).status_code == 201
    jumping_clock.jump(0.1)
    assert _review(expired, tmp_path).status_code == 401


def test_a_capped_certificate_ends_at_the_cap(
    do_api: httpx.Client, emulator: Emulator, tmp_path: Path
) -> None:
    capped = emulator.add_cluster(
        Cluster(name="capped-cert", mode="certificate", identity=CERT_USER, max_lifetime=3)
    )
    document = _kubeconfig(do_api, capped, 3600)
    assert _review(document, tmp_path).status_code == 201
    not_after = emulator.issued_credentials(cluster_id=capped.id)[-1].expires_at
    assert not_after <= time.time() + 3
    time.sleep(max(0.0, not_after - time.time() + 0.2))
    assert _review(document, tmp_path).status_code == 401


def test_a_revoked_token_is_refused_and_its_sibling_is_not(
    do_api: httpx.Client, emulator: Emulator, tmp_path: Path
) -> None:
    # Revoked before the apiserver ever saw it: its ~10 s cache of good reviews cannot help it.
    revoked, kept = _kubeconfig(do_api, TOKEN_CLUSTER, 600), _kubeconfig(do_api, TOKEN_CLUSTER, 600)
    assert emulator.revoke(token=revoked["users"][0]["user"]["token"]) == 1
    assert _review(revoked, tmp_path).status_code == 401
    assert _review(kept, tmp_path).status_code == 201


def test_a_cluster_that_requires_sso_refuses_tokens_at_the_cluster_or_the_api(
    do_api: httpx.Client, emulator: Emulator, tmp_path: Path
) -> None:
    at_cluster = emulator.add_cluster(
        Cluster(name="sso-c", sso=True, sso_required=True, sso_refusal="cluster")
    )
    assert _review(_kubeconfig(do_api, at_cluster, 600), tmp_path).status_code == 401
    at_api = emulator.add_cluster(Cluster(name="sso-a", sso=True, sso_required=True))
    path = f"/v2/kubernetes/clusters/{at_api.id}/kubeconfig"
    assert do_api.get(path, params={"type": "token"}).status_code == 422
