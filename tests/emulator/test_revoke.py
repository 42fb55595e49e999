"""Revoking bearer tokens: all of a cluster's, or one; the webhook refuses them at once.

DigitalOcean has no revoke; a test needs one to make a credential die before its expiry (a leak,
a rotation). Client certificates cannot be revoked (the apiserver checks them by TLS), so asking
to revoke a certificate-mode cluster's credentials is an error, not a silent no-op.
"""

from __future__ import annotations

import httpx
import pytest

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, Emulator
from doks_access_testkit.emulator.state import AccountState, Cluster, Identity, IssuedCredential
from tests.emulator.conftest import authenticates, client_for

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
STAGING = DEMO_CLUSTER_IDS["staging-cluster-01"]
LEGACY = DEMO_CLUSTER_IDS["legacy-cluster"]
T0 = 1_700_000_000.0


def _token(do_api: httpx.Client, cluster_id: str) -> str:
    path = f"/v2/kubernetes/clusters/{cluster_id}/credentials"
    token: str = do_api.get(path, params={"expiry_seconds": 600}).json()["token"]
    return token


def _credential(cluster_id: str, *, token: str | None, kind: str = "token") -> IssuedCredential:
    return IssuedCredential(
        id=f"id-{token}",
        cluster_id=cluster_id,
        kind="token" if kind == "token" else "certificate",
        identity=Identity(username="u"),
        issued_at=T0,
        expires_at=T0 + 60,
        token=token,
    )


class TestAccountState:
    def test_a_clusters_tokens_are_revoked_and_counted_once(self) -> None:
        state = AccountState()
        mine, other = state.add_clusters([Cluster(name="a"), Cluster(name="b")], now=T0)
        for token in ("one", "two"):
            state.record(_credential(mine.id, token=token))
        state.record(_credential(other.id, token="three"))
        assert state.revoke(cluster_id=mine.id) == 2
        assert state.revoke(cluster_id=mine.id) == 0  # already revoked
        assert state.review("one", now=T0) is None
        assert state.review("two", now=T0) is None
        assert state.review("three", now=T0) is not None
        assert [c.revoked for c in state.credentials()] == [True, True, False]

    def test_one_token_is_revoked_by_its_secret(self) -> None:
        state = AccountState()
        cluster = state.add_cluster(Cluster(name="a"), now=T0)
        state.record(_credential(cluster.id, token="one"))
        state.record(_credential(cluster.id, token="two"))
        assert state.revoke(token="one") == 1
        assert state.revoke(token="one") == 0
        assert state.revoke(token="unknown") == 0
        assert state.review("one", now=T0) is None
        assert state.review("two", now=T0) is not None

    def test_a_token_minted_after_the_revoke_works(self) -> None:
        state = AccountState()
        cluster = state.add_cluster(Cluster(name="a"), now=T0)
        state.record(_credential(cluster.id, token="old"))
        state.revoke(cluster_id=cluster.id)
        state.record(_credential(cluster.id, token="new"))
        assert state.review("new", now=T0) is not None

    @pytest.mark.parametrize(
        "arguments", [{}, {"cluster_id": "x", "token": "y"}], ids=["neither", "both"]
    )
    def test_exactly_one_of_cluster_and_token(self, arguments: dict[str, str]) -> None:
        with pytest.raises(ValueError, match="exactly one of a cluster_id or a token"):
            AccountState().revoke(**arguments)

    def test_an_unknown_cluster_is_a_key_error(self) -> None:
        with pytest.raises(KeyError):
            AccountState().revoke(cluster_id="00000000-0000-4000-8000-000000000000")

    def test_certificates_cannot_be_revoked(self) -> None:
        state = AccountState()
        cluster = state.add_cluster(Cluster(name="a", mode="certificate"), now=T0)
        state.record(_credential(cluster.id, token=None, kind="certificate"))
        with pytest.raises(ValueError, match="certificates cannot be revoked"):
            state.revoke(cluster_id=cluster.id)
        assert [c.revoked for c in state.credentials()] == [False]


class TestEmulator:
    def test_revoked_tokens_stop_authenticating_at_once_and_are_marked(
        self, emulator: Emulator, do_api: httpx.Client, webhook: httpx.Client
    ) -> None:
        first, second, staging = _token(do_api, PROD), _token(do_api, PROD), _token(do_api, STAGING)
        assert authenticates(webhook, emulator, first)
        assert emulator.revoke(cluster_id=PROD) == 2
        assert not authenticates(webhook, emulator, first)
        assert not authenticates(webhook, emulator, second)
        assert authenticates(webhook, emulator, staging)
        revoked = {c.token: c.revoked for c in emulator.issued_credentials()}
        assert revoked == {first: True, second: True, staging: False}
        assert authenticates(webhook, emulator, _token(do_api, PROD))  # a new one works

    def test_one_token_is_revoked(
        self, emulator: Emulator, do_api: httpx.Client, webhook: httpx.Client
    ) -> None:
        leaked, kept = _token(do_api, PROD), _token(do_api, PROD)
        assert emulator.revoke(token=leaked) == 1
        assert not authenticates(webhook, emulator, leaked)
        assert authenticates(webhook, emulator, kept)

    def test_a_certificate_cluster_and_an_unknown_one_are_refused(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        do_api.get(f"/v2/kubernetes/clusters/{LEGACY}/kubeconfig")
        with pytest.raises(ValueError, match="TLS"):
            emulator.revoke(cluster_id=LEGACY)
        with pytest.raises(KeyError):
            emulator.revoke(cluster_id="00000000-0000-4000-8000-000000000000")


class TestAdminApi:
    def test_a_clusters_tokens_are_revoked_and_listed_as_revoked(
        self,
        admin: httpx.Client,
        emulator: Emulator,
        do_api: httpx.Client,
        webhook: httpx.Client,
    ) -> None:
        token = _token(do_api, PROD)
        _token(do_api, STAGING)
        response = admin.post(f"/_emulator/clusters/{PROD}/revoke")
        assert (response.status_code, response.json()) == (200, {"revoked": 1})
        assert admin.post(f"/_emulator/clusters/{PROD}/revoke", json={}).json() == {"revoked": 0}
        assert not authenticates(webhook, emulator, token)
        listed = admin.get("/_emulator/credentials").json()["credentials"]
        assert [(c["cluster_id"], c["revoked"]) for c in listed] == [
            (PROD, True),
            (STAGING, False),
        ]

    def test_one_token_is_revoked(
        self,
        admin: httpx.Client,
        emulator: Emulator,
        do_api: httpx.Client,
        webhook: httpx.Client,
    ) -> None:
        token = _token(do_api, PROD)
        response = admin.post("/_emulator/credentials/revoke", json={"token": token})
        assert (response.status_code, response.json()) == (200, {"revoked": 1})
        assert not authenticates(webhook, emulator, token)
        unknown = admin.post("/_emulator/credentials/revoke", json={"token": "nope"})
        assert unknown.json() == {"revoked": 0}

    @pytest.mark.parametrize(
        ("path", "body", "status", "message"),
        [
            (f"/_emulator/clusters/{LEGACY}/revoke", None, 400, "certificates cannot be revoked"),
            (f"/_emulator/clusters/{PROD}/revoke", {"token": "x"}, 400, "unknown key"),
            (
                "/_emulator/clusters/00000000-0000-4000-8000-000000000000/revoke",
                None,
                404,
                "no such cluster",
            ),
            ("/_emulator/credentials/revoke", {}, 400, "the bearer token to revoke"),
            ("/_emulator/credentials/revoke", {"token": 7}, 400, "the bearer token to revoke"),
            ("/_emulator/credentials/revoke", {"token": "x", "all": 1}, 400, "unknown key"),
        ],
    )
    def test_bad_requests_are_refused_with_a_reason(
        self, admin: httpx.Client, path: str, body: object, status: int, message: str
    ) -> None:
        response = admin.post(path, json=body) if body is not None else admin.post(path)
        assert response.status_code == status
        assert message in response.json()["message"]

    def test_revoking_needs_the_admin_token(self, emulator: Emulator, do_api: httpx.Client) -> None:
        _token(do_api, PROD)
        with client_for(emulator, do_api.headers["Authorization"].split()[1]) as client:
            assert client.post(f"/_emulator/clusters/{PROD}/revoke").status_code == 401
        assert not any(c.revoked for c in emulator.issued_credentials())
