"""A cluster's lifetime cap: credentials end at ``min(expiry_seconds, max_lifetime)``, unseen.

The kubeconfig carries no expiry (as on DigitalOcean), so the cap shows only where a client can
learn the truth: the token webhook's refusal, a certificate's NotAfter, ``/credentials``'
``expires_at``. Set at creation, in the config file, and at run time (Python and admin API).
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    Cluster,
    Emulator,
    EmulatorConfig,
    ManualClock,
)
from doks_access_testkit.emulator.state import AccountState
from tests.emulator.conftest import authenticates

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
CAP = 600


def _kubeconfig(do_api: httpx.Client, cluster_id: str, expiry_seconds: int) -> dict[str, Any]:
    path = f"/v2/kubernetes/clusters/{cluster_id}/kubeconfig"
    response = do_api.get(path, params={"expiry_seconds": expiry_seconds})
    assert response.status_code == 200
    document: dict[str, Any] = yaml.safe_load(response.text)
    return document


def _expires_at(text: str) -> float:
    return datetime.datetime.fromisoformat(text[:26] + "+00:00").timestamp()


class TestTheCap:
    def test_a_token_kubeconfig_lasts_the_cap_and_says_nothing_of_it(
        self,
        emulator: Emulator,
        do_api: httpx.Client,
        webhook: httpx.Client,
        clock: ManualClock,
    ) -> None:
        cluster = emulator.add_cluster(Cluster(name="capped", max_lifetime=CAP))
        response = do_api.get(
            f"/v2/kubernetes/clusters/{cluster.id}/kubeconfig", params={"expiry_seconds": 3600}
        )
        assert "expir" not in response.text.lower()  # nothing tells the client of the cap
        token = yaml.safe_load(response.text)["users"][0]["user"]["token"]
        (credential,) = emulator.issued_credentials(cluster_id=cluster.id)
        assert credential.expires_at == clock() + CAP
        clock.advance(CAP - 0.001)
        assert authenticates(webhook, emulator, token)
        clock.advance(0.001)
        assert not authenticates(webhook, emulator, token)

    def test_the_seven_day_default_is_capped_too(
        self, emulator: Emulator, do_api: httpx.Client, clock: ManualClock
    ) -> None:
        cluster = emulator.add_cluster(Cluster(name="capped", max_lifetime=CAP))
        assert do_api.get(f"/v2/kubernetes/clusters/{cluster.id}/kubeconfig").status_code == 200
        (credential,) = emulator.issued_credentials(cluster_id=cluster.id)
        assert credential.expires_at - credential.issued_at == CAP

    def test_credentials_report_the_capped_expiry(
        self, emulator: Emulator, do_api: httpx.Client, clock: ManualClock
    ) -> None:
        cluster = emulator.add_cluster(Cluster(name="capped", max_lifetime=CAP))
        path = f"/v2/kubernetes/clusters/{cluster.id}/credentials"
        body = do_api.get(path, params={"expiry_seconds": 86400}).json()
        assert abs(_expires_at(body["expires_at"]) - (clock() + CAP)) < 1e-5

    def test_a_shorter_request_is_not_lengthened(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        cluster = emulator.add_cluster(Cluster(name="capped", max_lifetime=CAP))
        _kubeconfig(do_api, cluster.id, 60)
        (credential,) = emulator.issued_credentials(cluster_id=cluster.id)
        assert credential.expires_at - credential.issued_at == 60

    @pytest.mark.parametrize("endpoint", ["kubeconfig", "credentials"])
    def test_a_certificates_not_after_is_the_capped_time(
        self, emulator: Emulator, do_api: httpx.Client, clock: ManualClock, endpoint: str
    ) -> None:
        cluster = emulator.add_cluster(Cluster(name="legacy", mode="certificate", max_lifetime=CAP))
        response = do_api.get(
            f"/v2/kubernetes/clusters/{cluster.id}/{endpoint}", params={"expiry_seconds": 86400}
        )
        if endpoint == "kubeconfig":
            pem = yaml.safe_load(response.text)["users"][0]["user"]["client-certificate-data"]
        else:
            pem = response.json()["client_certificate_data"]
            assert _expires_at(response.json()["expires_at"]) == int(clock() + CAP)
        certificate = x509.load_pem_x509_certificate(base64.b64decode(pem))
        assert certificate.not_valid_after_utc.timestamp() == int(clock() + CAP)
        (credential,) = emulator.issued_credentials(cluster_id=cluster.id)
        assert credential.expires_at == int(clock() + CAP)

    def test_other_clusters_are_not_capped(self, emulator: Emulator, do_api: httpx.Client) -> None:
        emulator.add_cluster(Cluster(name="capped", max_lifetime=CAP))
        _kubeconfig(do_api, PROD, 3600)
        (credential,) = emulator.issued_credentials(cluster_id=PROD)
        assert credential.expires_at - credential.issued_at == 3600


class TestSettingTheCap:
    def test_it_is_set_and_cleared_at_run_time_for_the_next_credentials(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        assert emulator.update_cluster(PROD, max_lifetime=CAP).max_lifetime == CAP
        _kubeconfig(do_api, PROD, 3600)
        assert emulator.update_cluster(PROD, name="renamed").max_lifetime == CAP  # None: kept
        assert emulator.update_cluster(PROD, max_lifetime=0).max_lifetime is None  # 0: cleared
        _kubeconfig(do_api, PROD, 3600)
        lifetimes = [c.expires_at - c.issued_at for c in emulator.issued_credentials()]
        assert lifetimes == [CAP, 3600]

    def test_a_new_cap_leaves_issued_credentials_alone(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        _kubeconfig(do_api, PROD, 3600)
        emulator.update_cluster(PROD, max_lifetime=60)
        (credential,) = emulator.issued_credentials()
        assert credential.expires_at - credential.issued_at == 3600

    def test_the_admin_api_sets_shows_and_clears_it(
        self, admin: httpx.Client, emulator: Emulator
    ) -> None:
        response = admin.patch(f"/_emulator/clusters/{PROD}", json={"max_lifetime": CAP})
        assert response.status_code == 200
        assert response.json()["cluster"]["max_lifetime"] == CAP
        assert emulator.clusters()[0].max_lifetime == CAP
        cleared = admin.patch(f"/_emulator/clusters/{PROD}", json={"max_lifetime": 0})
        assert cleared.json()["cluster"]["max_lifetime"] is None
        assert emulator.clusters()[0].max_lifetime is None

    @pytest.mark.parametrize("value", [None, -1, 1.5, "600", True])
    def test_the_admin_api_refuses_anything_but_a_whole_number(
        self, admin: httpx.Client, emulator: Emulator, value: object
    ) -> None:
        before = emulator.clusters()
        response = admin.patch(f"/_emulator/clusters/{PROD}", json={"max_lifetime": value})
        assert (response.status_code, response.json()["id"]) == (400, "bad_request")
        assert "max_lifetime" in response.json()["message"]
        assert emulator.clusters() == before

    def test_the_admin_api_creates_a_capped_cluster(self, admin: httpx.Client) -> None:
        created = admin.post("/_emulator/clusters", json={"name": "c", "max_lifetime": 60})
        assert created.json()["cluster"]["max_lifetime"] == 60

    def test_a_config_file_caps_a_cluster_and_0_means_no_cap(self, tmp_path: Path) -> None:
        path = tmp_path / "emulator.yaml"
        path.write_text(
            "accounts:\n"
            "  - clusters:\n"
            "      - {name: capped, max_lifetime: 900}\n"
            "      - {name: free, max_lifetime: 0}\n"
            "      - {name: plain}\n"
        )
        lifetimes = [c.max_lifetime for c in EmulatorConfig.from_yaml(path).clusters]
        assert lifetimes == [900, None, None]

    @pytest.mark.parametrize("value", [-5, "1h", None, True])
    def test_a_config_file_refuses_a_bad_cap(self, value: object) -> None:
        data = {"accounts": [{"clusters": [{"name": "c", "max_lifetime": value}]}]}
        with pytest.raises(ValueError, match="max_lifetime"):
            EmulatorConfig.from_dict(data)

    @pytest.mark.parametrize("value", [0, -1, True, 1.5])
    def test_a_cluster_refuses_a_cap_that_is_not_a_positive_whole_number(self, value: Any) -> None:
        with pytest.raises(ValueError, match="max_lifetime"):
            Cluster(name="c", max_lifetime=value)

    def test_the_state_refuses_a_bad_change_and_keeps_the_cluster(self) -> None:
        state = AccountState()
        cluster = state.add_cluster(Cluster(name="c", max_lifetime=60), now=0.0)
        with pytest.raises(ValueError, match="max_lifetime"):
            state.update_cluster(cluster.id, max_lifetime=-1)
        assert state.clusters() == [cluster]
        assert cluster.capped_lifetime(3600) == 60
        assert cluster.capped_lifetime(30) == 30
