"""The official DigitalOcean client, pydo, talks to the emulator over HTTPS like to the real API."""

from __future__ import annotations

from collections.abc import Iterator

import pydo
import pytest
import yaml
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
)
from azure.core.rest import HttpRequest

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    DEMO_READ_ONLY_TOKEN,
    DEMO_TOKEN,
    Emulator,
    EmulatorConfig,
    Fault,
    ManualClock,
)

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]


def _client(emulator: Emulator, token: str = DEMO_TOKEN) -> pydo.Client:
    # pydo is an Azure-core pipeline client: connection_verify reaches its requests transport.
    return pydo.Client(
        token=token, endpoint=emulator.api_url, connection_verify=str(emulator.ca_file)
    )


@pytest.fixture
def client(emulator: Emulator) -> Iterator[pydo.Client]:
    do = _client(emulator)
    with do:
        yield do


def test_lists_clusters_page_by_page(client: pydo.Client, emulator: Emulator) -> None:
    first = client.kubernetes.list_clusters(per_page=3)
    assert first["meta"]["total"] == 4
    assert len(first["kubernetes_clusters"]) == 3
    assert first["links"]["pages"]["next"].startswith(emulator.api_url)
    second = client.kubernetes.list_clusters(per_page=3, page=2)
    assert [c["name"] for c in second["kubernetes_clusters"]] == ["sso-cluster"]


def test_gets_a_cluster(client: pydo.Client) -> None:
    cluster = client.kubernetes.get_cluster(cluster_id=PROD)["kubernetes_cluster"]
    assert (cluster["id"], cluster["name"]) == (PROD, "prod-cluster-01")


def test_gets_credentials(client: pydo.Client, emulator: Emulator) -> None:
    credentials = client.kubernetes.get_credentials(cluster_id=PROD, expiry_seconds=120)
    (issued,) = emulator.issued_credentials()
    assert credentials["token"] == issued.token
    assert credentials["expires_at"].endswith("Z")
    assert issued.expires_at - issued.issued_at == 120


def test_gets_the_kubeconfig_bytes_through_send_request(client: pydo.Client) -> None:
    # get_kubeconfig itself cannot decode application/yaml (a known pydo issue).
    path = f"/v2/kubernetes/clusters/{PROD}/kubeconfig?expiry_seconds=300"
    response = client.send_request(HttpRequest("GET", path), stream=True)
    try:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/yaml"
        document = yaml.safe_load(response.read())
    finally:
        response.close()
    assert document["current-context"] == "do-nyc1-prod-cluster-01"
    assert "token" in document["users"][0]["user"]


def test_an_unknown_token_raises_pydos_authentication_error(emulator: Emulator) -> None:
    with _client(emulator, token="dop_v1_wrong") as do, pytest.raises(ClientAuthenticationError):
        do.kubernetes.list_clusters()


def test_pydo_retries_a_transient_server_error(client: pydo.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="status", status=503, endpoint="get_cluster", count=1))
    assert client.kubernetes.get_cluster(cluster_id=PROD)["kubernetes_cluster"]["id"] == PROD
    assert emulator.stats()["get_cluster"] == {"503": 1, "200": 1}


def test_a_missing_scope_reaches_pydo_as_a_403(emulator: Emulator) -> None:
    with (
        _client(emulator, token=DEMO_READ_ONLY_TOKEN) as do,
        pytest.raises(HttpResponseError) as raised,
    ):
        do.kubernetes.get_credentials(cluster_id=PROD)
    assert raised.value.status_code == 403


def test_plain_http_needs_enforce_https_false(clock: ManualClock) -> None:
    with (
        Emulator(config=EmulatorConfig.demo(tls=False), clock=clock) as emulator,
        pydo.Client(token=DEMO_TOKEN, endpoint=emulator.api_url, retry_total=0) as do,
    ):
        with pytest.raises(ServiceRequestError, match="https"):
            do.kubernetes.list_clusters()
        assert do.kubernetes.list_clusters(enforce_https=False)["meta"]["total"] == 4
