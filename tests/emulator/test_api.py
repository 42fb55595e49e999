"""The four DOKS endpoints over HTTPS: answers, errors and headers as the real API gives them."""

from __future__ import annotations

import base64
import datetime
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml
from cryptography import x509

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    DEMO_READ_ONLY_TOKEN,
    Cluster,
    Emulator,
    EmulatorConfig,
    Identity,
    ManualClock,
    RateLimits,
)
from tests.emulator.conftest import client_for

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
LEGACY = DEMO_CLUSTER_IDS["legacy-cluster"]
SSO = DEMO_CLUSTER_IDS["sso-cluster"]
KUBECONFIG = f"/v2/kubernetes/clusters/{PROD}/kubeconfig"
CREDENTIALS = f"/v2/kubernetes/clusters/{PROD}/credentials"
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def _expires_at(text: str) -> datetime.datetime:
    assert len(text.split(".")[1]) == 10  # nine digits and "Z"
    return datetime.datetime.fromisoformat(text[:26] + "+00:00")


def _error(response: httpx.Response, status: int, error_id: str) -> dict[str, str]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body: dict[str, str] = response.json()
    assert body["id"] == error_id
    assert body["request_id"] == response.headers["x-request-id"]
    assert all(name in response.headers for name in RATE_HEADERS)
    return body


class TestListAndGet:
    def test_lists_the_accounts_clusters_with_meta_total(self, do_api: httpx.Client) -> None:
        response = do_api.get("/v2/kubernetes/clusters")
        assert response.status_code == 200
        body = response.json()
        assert body["meta"] == {"total": 4}
        assert body["links"] == {}
        assert [c["id"] for c in body["kubernetes_clusters"]] == list(DEMO_CLUSTER_IDS.values())

    def test_pages_link_with_absolute_urls_that_keep_per_page(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        body = do_api.get("/v2/kubernetes/clusters", params={"per_page": 3}).json()
        assert len(body["kubernetes_clusters"]) == 3
        base = f"{emulator.api_url}/v2/kubernetes/clusters"
        assert body["links"]["pages"] == {
            "next": f"{base}?page=2&per_page=3",
            "last": f"{base}?page=2&per_page=3",
        }
        second = do_api.get(body["links"]["pages"]["next"]).json()
        assert [c["name"] for c in second["kubernetes_clusters"]] == ["sso-cluster"]
        assert set(second["links"]["pages"]) == {"first", "prev"}

    def test_bad_page_parameters_are_a_400(self, do_api: httpx.Client) -> None:
        body = _error(
            do_api.get("/v2/kubernetes/clusters", params={"page": "0"}), 400, "bad_request"
        )
        assert "page" in body["message"]

    def test_gets_one_cluster(self, do_api: httpx.Client) -> None:
        response = do_api.get(f"/v2/kubernetes/clusters/{PROD}")
        assert response.status_code == 200
        cluster = response.json()["kubernetes_cluster"]
        assert (cluster["name"], cluster["region"]) == ("prod-cluster-01", "nyc1")
        assert cluster["endpoint"] == f"https://{PROD}.k8s.ondigitalocean.com"

    @pytest.mark.parametrize("cluster_id", [str(uuid.uuid4()), "not-a-uuid"])
    @pytest.mark.parametrize("suffix", ["", "/kubeconfig", "/credentials"])
    def test_an_unknown_cluster_is_a_404(
        self, do_api: httpx.Client, cluster_id: str, suffix: str
    ) -> None:
        body = _error(do_api.get(f"/v2/kubernetes/clusters/{cluster_id}{suffix}"), 404, "not_found")
        assert body["message"] == "The resource you requested could not be found."

    def test_another_accounts_cluster_is_a_404(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        theirs = emulator.add_cluster(Cluster(name="theirs", account="someone-else"))
        _error(do_api.get(f"/v2/kubernetes/clusters/{theirs.id}/kubeconfig"), 404, "not_found")
        assert theirs.id not in do_api.get("/v2/kubernetes/clusters").text

    def test_head_works_for_reading_but_not_for_minting(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        listed = do_api.head("/v2/kubernetes/clusters")
        assert (listed.status_code, listed.headers["ratelimit-remaining"]) == (200, "4999")
        assert do_api.head(KUBECONFIG).status_code == 405
        assert do_api.head(CREDENTIALS).status_code == 405
        assert emulator.issued_credentials() == []

    def test_an_unknown_path_is_a_json_404_and_a_wrong_method_a_405(
        self, do_api: httpx.Client
    ) -> None:
        _error(do_api.get("/v2/droplets"), 404, "not_found")
        _error(do_api.delete(f"/v2/kubernetes/clusters/{PROD}"), 405, "method_not_allowed")


class TestAuthentication:
    @pytest.mark.parametrize(
        "authorization", [None, "", "Bearer", "Token abc", "Basic dXNlcjpwYXNz", "Bearer wrong"]
    )
    def test_a_missing_malformed_or_unknown_token_is_a_401(
        self, emulator: Emulator, authorization: str | None
    ) -> None:
        headers = {"Authorization": authorization} if authorization is not None else {}
        with client_for(emulator, None) as client:
            response = client.get("/v2/kubernetes/clusters", headers=headers)
        body = _error(response, 401, "unauthorized")
        assert body["message"] == "Unable to authenticate you."

    def test_the_scheme_is_case_insensitive(self, emulator: Emulator) -> None:
        with client_for(emulator, None) as client:
            token = emulator.config.tokens[0].token
            response = client.get(
                "/v2/kubernetes/clusters", headers={"Authorization": f"bearer {token}"}
            )
        assert response.status_code == 200

    def test_a_read_only_token_lists_but_gets_403_for_credentials(self, emulator: Emulator) -> None:
        with client_for(emulator, DEMO_READ_ONLY_TOKEN) as client:
            assert client.get("/v2/kubernetes/clusters").status_code == 200
            assert client.get(f"/v2/kubernetes/clusters/{PROD}").status_code == 200
            for path in (KUBECONFIG, CREDENTIALS):
                body = _error(client.get(path), 403, "forbidden")
                assert body["message"] == "You do not have permission to perform this action."
        assert emulator.issued_credentials() == []

    def test_a_token_without_read_scope_cannot_list(self, emulator: Emulator) -> None:
        token = emulator.add_token(scopes=frozenset({"kubernetes:access_cluster"}))
        with client_for(emulator, token.token) as client:
            _error(client.get("/v2/kubernetes/clusters"), 403, "forbidden")
            assert client.get(KUBECONFIG).status_code == 200


class TestKubeconfig:
    def test_is_yaml_named_like_doctl_with_a_fresh_token_each_call(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        first, second = do_api.get(KUBECONFIG), do_api.get(KUBECONFIG)
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/yaml"
        document = yaml.safe_load(first.text)
        assert document["current-context"] == "do-nyc1-prod-cluster-01"
        assert document["users"][0]["name"] == "do-nyc1-prod-cluster-01-admin"
        token = document["users"][0]["user"]["token"]
        assert token != yaml.safe_load(second.text)["users"][0]["user"]["token"]
        # Standalone, the server is the documented endpoint and the CA decodes to PEM.
        cluster = document["clusters"][0]["cluster"]
        assert cluster["server"] == f"https://{PROD}.k8s.ondigitalocean.com"
        x509.load_pem_x509_certificate(base64.b64decode(cluster["certificate-authority-data"]))
        assert [c.token for c in emulator.issued_credentials()] == [
            token,
            yaml.safe_load(second.text)["users"][0]["user"]["token"],
        ]

    @pytest.mark.parametrize(
        ("query", "seconds"), [({}, 604800), ({"expiry_seconds": "0"}, 604800)]
    )
    def test_lasts_seven_days_when_expiry_is_absent_or_zero(
        self,
        do_api: httpx.Client,
        emulator: Emulator,
        clock: ManualClock,
        query: dict[str, str],
        seconds: int,
    ) -> None:
        assert do_api.get(KUBECONFIG, params=query).status_code == 200
        (credential,) = emulator.issued_credentials()
        assert credential.issued_at == clock()
        assert credential.expires_at == clock() + seconds

    def test_lasts_expiry_seconds_when_given(
        self, do_api: httpx.Client, emulator: Emulator, clock: ManualClock
    ) -> None:
        do_api.get(KUBECONFIG, params={"expiry_seconds": "300"})
        (credential,) = emulator.issued_credentials()
        assert credential.expires_at - credential.issued_at == 300

    @pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
    def test_a_negative_or_non_integer_expiry_is_a_400(
        self, do_api: httpx.Client, value: str
    ) -> None:
        body = _error(do_api.get(KUBECONFIG, params={"expiry_seconds": value}), 400, "bad_request")
        assert "expiry_seconds" in body["message"]

    def test_an_unknown_type_is_a_400(self, do_api: httpx.Client) -> None:
        _error(do_api.get(KUBECONFIG, params={"type": "oidc"}), 400, "bad_request")

    def test_type_sso_is_an_exec_kubeconfig_and_mints_nothing(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        document = yaml.safe_load(do_api.get(KUBECONFIG, params={"type": "sso"}).text)
        user = document["users"][0]["user"]
        assert set(user) == {"exec"}
        assert user["exec"]["command"] == "doctl"
        assert PROD in user["exec"]["args"]
        assert emulator.issued_credentials() == []

    def test_an_sso_cluster_defaults_to_sso_and_gives_a_token_when_asked(
        self, do_api: httpx.Client
    ) -> None:
        path = f"/v2/kubernetes/clusters/{SSO}/kubeconfig"
        assert "exec" in yaml.safe_load(do_api.get(path).text)["users"][0]["user"]
        asked = yaml.safe_load(do_api.get(path, params={"type": "token"}).text)
        assert "token" in asked["users"][0]["user"]

    def test_a_certificate_cluster_gives_a_client_certificate_that_ends_at_the_expiry(
        self, do_api: httpx.Client, emulator: Emulator, clock: ManualClock
    ) -> None:
        path = f"/v2/kubernetes/clusters/{LEGACY}/kubeconfig"
        document = yaml.safe_load(do_api.get(path, params={"expiry_seconds": "600"}).text)
        user = document["users"][0]["user"]
        assert set(user) == {"client-certificate-data", "client-key-data"}
        certificate = x509.load_pem_x509_certificate(
            base64.b64decode(user["client-certificate-data"])
        )
        (credential,) = emulator.issued_credentials()
        assert certificate.not_valid_after_utc.timestamp() == credential.expires_at
        assert credential.expires_at == int(clock() + 600)
        assert credential.token is None
        name = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert name == "doks-emulator-admin"


class TestCredentials:
    def test_are_json_with_a_token_and_nanosecond_expiry(
        self, do_api: httpx.Client, emulator: Emulator, clock: ManualClock
    ) -> None:
        response = do_api.get(CREDENTIALS, params={"expiry_seconds": "60"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        body = response.json()
        assert body["server"] == f"https://{PROD}.k8s.ondigitalocean.com"
        assert (body["client_certificate_data"], body["client_key_data"]) == (None, None)
        (credential,) = emulator.issued_credentials()
        assert body["token"] == credential.token
        expected = datetime.datetime.fromtimestamp(clock() + 60, datetime.UTC)
        assert abs((_expires_at(body["expires_at"]) - expected).total_seconds()) < 1e-5

    def test_a_certificate_cluster_fills_the_deprecated_fields(self, do_api: httpx.Client) -> None:
        body = do_api.get(f"/v2/kubernetes/clusters/{LEGACY}/credentials").json()
        assert "token" not in body
        certificate = x509.load_pem_x509_certificate(
            base64.b64decode(body["client_certificate_data"])
        )
        assert certificate.not_valid_after_utc == _expires_at(body["expires_at"])
        assert base64.b64decode(body["client_key_data"]).startswith(b"-----BEGIN PRIVATE KEY")

    def test_a_negative_expiry_is_a_400(self, do_api: httpx.Client) -> None:
        _error(do_api.get(CREDENTIALS, params={"expiry_seconds": "-5"}), 400, "bad_request")


class TestIdentity:
    def test_each_cluster_maps_credentials_to_its_configured_identity(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        cluster = emulator.add_cluster(
            Cluster(name="team", identity=Identity(username="alice", groups=("devs", "ops")))
        )
        do_api.get(f"/v2/kubernetes/clusters/{cluster.id}/credentials")
        (credential,) = emulator.issued_credentials(cluster_id=cluster.id)
        assert credential.identity == Identity(username="alice", groups=("devs", "ops"))


@pytest.fixture
def limited(clock: ManualClock) -> Iterator[Emulator]:
    config = EmulatorConfig.demo(rate_limits=RateLimits(per_hour=5, per_minute=3))
    with Emulator(config=config, clock=clock) as emulator:
        yield emulator


class TestRateLimits:
    def test_every_answer_carries_the_rate_limit_headers(self, do_api: httpx.Client) -> None:
        responses = [
            do_api.get("/v2/kubernetes/clusters"),
            do_api.get(KUBECONFIG),
            do_api.get(KUBECONFIG, params={"expiry_seconds": "-1"}),
            do_api.get(f"/v2/kubernetes/clusters/{uuid.uuid4()}"),
            do_api.get("/v2/kubernetes/clusters", headers={"Authorization": "Bearer nope"}),
        ]
        for response in responses:
            assert all(response.headers[name].isdigit() for name in RATE_HEADERS), response
        assert [r.headers["ratelimit-remaining"] for r in responses[:4]] == [
            "4999",
            "4998",
            "4997",
            "4996",
        ]

    def test_a_burst_gets_429_with_retry_after_then_the_minute_slides(
        self, limited: Emulator, clock: ManualClock
    ) -> None:
        start = clock()
        with client_for(limited, limited.config.tokens[0].token) as client:
            remaining = [client.get(KUBECONFIG).headers["ratelimit-remaining"] for _ in range(3)]
            assert remaining == ["4", "3", "2"]
            clock.advance(20)
            refused = client.get(KUBECONFIG)
            body = _error(refused, 429, "too_many_requests")
            assert body["message"] == "API rate limit exceeded."
            assert refused.headers["retry-after"] == "40"
            assert refused.headers["ratelimit-remaining"] == "0"
            assert refused.headers["ratelimit-reset"] == str(int(start) + 3600)
            clock.advance(40)
            assert client.get(KUBECONFIG).status_code == 200
        assert len(limited.issued_credentials()) == 4

    def test_the_hourly_limit_refuses_until_the_oldest_request_is_an_hour_old(
        self, limited: Emulator, clock: ManualClock
    ) -> None:
        with client_for(limited, limited.config.tokens[0].token) as client:
            for _ in range(5):
                assert client.get("/v2/kubernetes/clusters").status_code == 200
                clock.advance(61)
            refused = client.get("/v2/kubernetes/clusters")
            _error(refused, 429, "too_many_requests")
            assert "retry-after" not in refused.headers
            reset = int(refused.headers["ratelimit-reset"])
            clock.advance(reset - clock() - 0.5)
            assert client.get("/v2/kubernetes/clusters").status_code == 429
            clock.advance(0.5)
            assert client.get("/v2/kubernetes/clusters").status_code == 200

    def test_each_token_has_its_own_windows(self, limited: Emulator) -> None:
        other = limited.add_token()
        with client_for(limited, limited.config.tokens[0].token) as client:
            for _ in range(3):
                client.get("/v2/kubernetes/clusters")
            assert client.get("/v2/kubernetes/clusters").status_code == 429
        with client_for(limited, other.token) as client:
            assert client.get("/v2/kubernetes/clusters").status_code == 200

    def test_resetting_the_rate_limits_forgets_all_requests(self, limited: Emulator) -> None:
        with client_for(limited, limited.config.tokens[0].token) as client:
            for _ in range(3):
                client.get("/v2/kubernetes/clusters")
            limited.reset_rate_limits()
            assert client.get("/v2/kubernetes/clusters").headers["ratelimit-remaining"] == "4"


class TestPlainHttp:
    def test_the_api_can_be_served_without_tls(self, clock: ManualClock) -> None:
        with Emulator(config=EmulatorConfig.demo(tls=False), clock=clock) as emulator:
            assert emulator.api_url.startswith("http://")
            assert emulator.token_webhook.url.startswith("https://")
            with client_for(emulator, emulator.config.tokens[0].token) as client:
                assert client.get(KUBECONFIG).status_code == 200
