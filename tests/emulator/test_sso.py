"""Clusters with SSO enabled or required: the ``sso`` object, the exec kubeconfig, and the two
ways a required-SSO cluster refuses a token (a 422 from the API, or a 401 from the cluster).

The 422 and its message are a model: DigitalOcean does not document that answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, Cluster, Emulator, EmulatorConfig
from doks_access_testkit.emulator.app import SSO_REQUIRED_MESSAGE
from doks_access_testkit.emulator.kubeconfigs import exec_user
from doks_access_testkit.emulator.listing import cluster_resource
from tests.emulator.conftest import authenticates

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
SSO = DEMO_CLUSTER_IDS["sso-cluster"]
ISSUER = "https://login.example.org/realms/doks"


def _required(**fields: Any) -> Cluster:
    return Cluster(name="locked", sso=True, sso_required=True, **fields)


def _user(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    user: dict[str, Any] = yaml.safe_load(response.text)["users"][0]["user"]
    return user


class TestValidation:
    def test_sso_can_only_be_required_when_enabled(self) -> None:
        with pytest.raises(ValueError, match="sso_required can only be true when sso is enabled"):
            Cluster(name="c", sso_required=True)

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"sso_refusal": "kubelet"}, "sso_refusal must be one of api, cluster"),
            ({"sso_issuer_url": "sso.example.com"}, "absolute http"),
            ({"sso_issuer_url": ""}, "absolute http"),
            ({"sso_client_id": " "}, "sso_client_id"),
            ({"sso": "yes"}, "true or false"),
            ({"sso_refusal": "cluster", "mode": "certificate"}, "certificate-mode"),
        ],
    )
    def test_bad_sso_settings_are_refused(self, fields: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Cluster(**{"name": "c", "sso": True, "sso_required": True, **fields})

    def test_a_certificate_cluster_may_require_sso_refused_by_the_api(self) -> None:
        assert _required(mode="certificate").refuses_tokens_at_api


class TestTheClusterObject:
    def test_without_sso_only_enabled_and_required_are_shown(self) -> None:
        assert cluster_resource(Cluster(name="c"))["sso"] == {"enabled": False, "required": False}

    def test_with_sso_the_issuer_and_client_are_shown(self) -> None:
        cluster = _required(sso_issuer_url=ISSUER, sso_client_id="doks-prod")
        assert cluster_resource(cluster)["sso"] == {
            "enabled": True,
            "required": True,
            "issuer_url": ISSUER,
            "client_id": "doks-prod",
        }

    def test_enabled_sso_has_the_documented_example_values_by_default(
        self, do_api: httpx.Client
    ) -> None:
        cluster = do_api.get(f"/v2/kubernetes/clusters/{SSO}").json()["kubernetes_cluster"]
        assert cluster["sso"] == {
            "enabled": True,
            "required": False,
            "issuer_url": "https://sso.example.com",
            "client_id": "doks-cluster-client",
        }


class TestExecKubeconfig:
    def test_an_sso_kubeconfig_names_the_issuer_and_client(self, do_api: httpx.Client) -> None:
        args = _user(do_api.get(f"/v2/kubernetes/clusters/{SSO}/kubeconfig"))["exec"]["args"]
        assert "--issuer-url=https://sso.example.com" in args
        assert "--client-id=doks-cluster-client" in args
        assert args[-1] == SSO

    def test_without_sso_the_exec_kubeconfig_has_no_issuer(self, do_api: httpx.Client) -> None:
        user = _user(do_api.get(f"/v2/kubernetes/clusters/{PROD}/kubeconfig?type=sso"))
        assert not [a for a in user["exec"]["args"] if a.startswith(("--issuer", "--client"))]

    def test_exec_user_follows_the_clusters_settings(self) -> None:
        cluster = Cluster(name="c", sso=True, sso_issuer_url=ISSUER, sso_client_id="cid")
        args = exec_user(cluster)["exec"]["args"]
        assert args[-3:] == [f"--issuer-url={ISSUER}", "--client-id=cid", cluster.id]


class TestRefusedByTheApi:
    @pytest.mark.parametrize(
        ("suffix", "params"),
        [
            ("kubeconfig", {"type": "token"}),
            ("kubeconfig", {"type": "token", "expiry_seconds": "60"}),
            ("credentials", {}),
            ("credentials", {"expiry_seconds": "60"}),
        ],
    )
    def test_a_token_is_a_422_with_a_clear_message_and_nothing_is_minted(
        self, emulator: Emulator, do_api: httpx.Client, suffix: str, params: dict[str, str]
    ) -> None:
        cluster = emulator.add_cluster(_required())
        response = do_api.get(f"/v2/kubernetes/clusters/{cluster.id}/{suffix}", params=params)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        body = response.json()
        assert body == {
            "id": "unprocessable_entity",
            "message": SSO_REQUIRED_MESSAGE,
            "request_id": response.headers["x-request-id"],
        }
        assert "requires SSO" in body["message"]
        assert "token credentials are not available" in body["message"]
        assert emulator.issued_credentials() == []
        assert emulator.stats()[suffix] == {"422": 1}

    def test_a_certificate_cluster_that_requires_sso_mints_no_certificate(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        cluster = emulator.add_cluster(_required(mode="certificate"))
        for suffix in ("kubeconfig?type=token", "credentials"):
            assert do_api.get(f"/v2/kubernetes/clusters/{cluster.id}/{suffix}").status_code == 422
        assert emulator.issued_credentials() == []

    def test_the_sso_kubeconfig_is_still_given(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        cluster = emulator.add_cluster(_required())
        for params in ({}, {"type": "sso"}):
            path = f"/v2/kubernetes/clusters/{cluster.id}/kubeconfig"
            assert "exec" in _user(do_api.get(path, params=params))
        assert emulator.issued_credentials() == []

    def test_a_bad_parameter_is_still_a_400(self, emulator: Emulator, do_api: httpx.Client) -> None:
        cluster = emulator.add_cluster(_required())
        path = f"/v2/kubernetes/clusters/{cluster.id}/credentials"
        assert do_api.get(path, params={"expiry_seconds": "-1"}).status_code == 400

    def test_tokens_issued_before_sso_was_required_keep_working(
        self, emulator: Emulator, do_api: httpx.Client, webhook: httpx.Client
    ) -> None:
        token = do_api.get(f"/v2/kubernetes/clusters/{SSO}/credentials").json()["token"]
        emulator.update_cluster(SSO, sso_required=True)
        assert do_api.get(f"/v2/kubernetes/clusters/{SSO}/credentials").status_code == 422
        assert authenticates(webhook, emulator, token)


class TestRefusedByTheCluster:
    def test_tokens_are_minted_but_the_webhook_refuses_them(
        self, emulator: Emulator, do_api: httpx.Client, webhook: httpx.Client
    ) -> None:
        cluster = emulator.add_cluster(_required(sso_refusal="cluster"))
        path = f"/v2/kubernetes/clusters/{cluster.id}/kubeconfig"
        token = _user(do_api.get(path, params={"type": "token"}))["token"]
        body = do_api.get(f"/v2/kubernetes/clusters/{cluster.id}/credentials").json()
        assert len(emulator.issued_credentials(cluster_id=cluster.id)) == 2
        assert not authenticates(webhook, emulator, token)
        assert not authenticates(webhook, emulator, body["token"])
        assert emulator.stats()["token_review"] == {"rejected": 2}

    def test_the_webhook_judges_by_the_clusters_setting_now(
        self, emulator: Emulator, do_api: httpx.Client, webhook: httpx.Client
    ) -> None:
        token = do_api.get(f"/v2/kubernetes/clusters/{SSO}/credentials").json()["token"]
        emulator.update_cluster(SSO, sso_required=True, sso_refusal="cluster")
        assert not authenticates(webhook, emulator, token)
        emulator.update_cluster(SSO, sso_required=False)
        assert authenticates(webhook, emulator, token)


class TestSettingSso:
    def test_a_config_file_sets_every_sso_field(self, tmp_path: Path) -> None:
        path = tmp_path / "emulator.yaml"
        path.write_text(
            "accounts:\n"
            "  - clusters:\n"
            "      - name: locked\n"
            "        sso: true\n"
            "        sso_required: true\n"
            "        sso_refusal: cluster\n"
            f"        sso_issuer_url: {ISSUER}\n"
            "        sso_client_id: doks-prod\n"
        )
        (cluster,) = EmulatorConfig.from_yaml(path).clusters
        assert (cluster.sso, cluster.sso_required, cluster.sso_refusal) == (True, True, "cluster")
        assert (cluster.sso_issuer_url, cluster.sso_client_id) == (ISSUER, "doks-prod")

    @pytest.mark.parametrize(
        ("cluster", "message"),
        [
            ({"name": "c", "sso_required": True}, "only be true when sso is enabled"),
            ({"name": "c", "sso": True, "sso_refusal": "later"}, "sso_refusal"),
            ({"name": "c", "sso": "true"}, "true or false"),
        ],
    )
    def test_a_config_file_refuses_bad_sso_settings(
        self, cluster: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            EmulatorConfig.from_dict({"accounts": [{"clusters": [cluster]}]})

    def test_python_updates_every_sso_field(self, emulator: Emulator) -> None:
        changed = emulator.update_cluster(
            PROD,
            sso=True,
            sso_required=True,
            sso_refusal="cluster",
            sso_issuer_url=ISSUER,
            sso_client_id="doks-prod",
        )
        assert (changed.sso, changed.sso_required, changed.sso_refusal) == (True, True, "cluster")
        assert (changed.sso_issuer_url, changed.sso_client_id) == (ISSUER, "doks-prod")
        with pytest.raises(ValueError, match="only be true when sso is enabled"):
            emulator.update_cluster(PROD, sso=False)
        assert emulator.update_cluster(PROD, sso=False, sso_required=False).sso is False

    def test_the_admin_api_requires_sso_and_the_api_then_refuses(
        self, admin: httpx.Client, do_api: httpx.Client
    ) -> None:
        changes = {"sso": True, "sso_required": True, "sso_issuer_url": ISSUER}
        response = admin.patch(f"/_emulator/clusters/{PROD}", json=changes)
        assert response.status_code == 200
        described = response.json()["cluster"]
        assert described["sso"]["required"] is True
        assert described["sso"]["issuer_url"] == ISSUER
        assert described["sso_refusal"] == "api"
        assert do_api.get(f"/v2/kubernetes/clusters/{PROD}/credentials").status_code == 422
        refusal = admin.patch(f"/_emulator/clusters/{PROD}", json={"sso_refusal": "cluster"})
        assert refusal.json()["cluster"]["sso_refusal"] == "cluster"
        assert do_api.get(f"/v2/kubernetes/clusters/{PROD}/credentials").status_code == 200

    def test_the_admin_api_adds_a_cluster_that_requires_sso(self, admin: httpx.Client) -> None:
        body = {"name": "locked", "sso": True, "sso_required": True, "sso_client_id": "x"}
        created = admin.post("/_emulator/clusters", json=body)
        assert created.status_code == 201
        assert created.json()["cluster"]["sso"]["client_id"] == "x"

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"sso_required": True}, "only be true when sso is enabled"),
            ({"sso": "yes"}, "must be true or false"),
            ({"sso": True, "sso_refusal": 1}, "must be a string"),
            ({"sso": True, "sso_issuer_url": "nope"}, "absolute http"),
        ],
    )
    def test_the_admin_api_refuses_bad_sso_changes(
        self, admin: httpx.Client, emulator: Emulator, body: dict[str, Any], message: str
    ) -> None:
        before = emulator.clusters()
        response = admin.patch(f"/_emulator/clusters/{PROD}", json=body)
        assert (response.status_code, response.json()["id"]) == (400, "bad_request")
        assert message in response.json()["message"]
        assert emulator.clusters() == before
