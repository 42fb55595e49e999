"""Changing the account under a running client: tags and ``tag:read``, renames, new states,
removals, and whole fleets added at once, through Python and through the admin API.

Fleet discovery lists the account, selects clusters by tags, regions and names, and must notice
when the account changes; these are the changes a test makes while the operator runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    KUBERNETES_READ,
    TAG_READ,
    Cluster,
    Emulator,
)
from doks_access_testkit.emulator.faults import Fault
from doks_access_testkit.emulator.state import AccountState, Identity, IssuedCredential
from tests.emulator.conftest import client_for

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
STAGING = DEMO_CLUSTER_IDS["staging-cluster-01"]
T0 = 1_700_000_000.0


def _listed(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/v2/kubernetes/clusters", params={"per_page": 200})
    assert response.status_code == 200
    clusters: list[dict[str, Any]] = response.json()["kubernetes_clusters"]
    return clusters


def _got(client: httpx.Client, cluster_id: str) -> dict[str, Any]:
    response = client.get(f"/v2/kubernetes/clusters/{cluster_id}")
    assert response.status_code == 200
    cluster: dict[str, Any] = response.json()["kubernetes_cluster"]
    return cluster


def _token(do_api: httpx.Client, cluster_id: str) -> str:
    path = f"/v2/kubernetes/clusters/{cluster_id}/credentials"
    token: str = do_api.get(path, params={"expiry_seconds": 600}).json()["token"]
    return token


@pytest.fixture
def webhook(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=emulator.client_ssl_context(), timeout=10) as client:
        yield client


def _authenticates(webhook: httpx.Client, emulator: Emulator, token: str) -> bool:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    response = webhook.post(emulator.token_webhook.url, json=body)
    assert response.status_code == 200
    authenticated: bool = response.json()["status"]["authenticated"]
    return authenticated


class TestTags:
    def test_a_clusters_tags_follow_the_automatic_k8s_tags(self, do_api: httpx.Client) -> None:
        assert _got(do_api, PROD)["tags"] == ["k8s", f"k8s:{PROD}", "production"]
        listed = {c["id"]: c["tags"] for c in _listed(do_api)}
        assert listed[STAGING] == ["k8s", f"k8s:{STAGING}", "staging"]

    @pytest.mark.parametrize(
        ("scopes", "shown"),
        [({KUBERNETES_READ}, False), ({KUBERNETES_READ, TAG_READ}, True)],
        ids=["without-tag-read", "with-tag-read"],
    )
    def test_tags_are_shown_only_to_a_token_with_tag_read(
        self, emulator: Emulator, scopes: set[str], shown: bool
    ) -> None:
        token = emulator.add_token(scopes=frozenset(scopes))
        with client_for(emulator, token.token) as client:
            listed, got = _listed(client), _got(client, PROD)
        assert len(listed) == 4
        assert all(("tags" in c) is shown for c in [*listed, got])
        assert got["node_pools"][0]["tags"]  # the node pools' tags are not affected

    def test_the_admin_api_adds_a_tagged_cluster_and_always_shows_tags(
        self, admin: httpx.Client
    ) -> None:
        created = admin.post("/_emulator/clusters", json={"name": "t", "tags": ["team:a", "db"]})
        assert created.status_code == 201
        cluster = created.json()["cluster"]
        assert cluster["tags"] == ["k8s", f"k8s:{cluster['id']}", "team:a", "db"]

    @pytest.mark.parametrize(
        ("tags", "message"),
        [
            ("production", "list of strings"),
            ([1], "list of strings"),
            ([""], "letters, numbers"),
            (["two words"], "letters, numbers"),
            (["x" * 256], "letters, numbers"),
            (["a/b"], "letters, numbers"),
        ],
    )
    def test_bad_tags_are_a_400_and_add_nothing(
        self, admin: httpx.Client, emulator: Emulator, tags: object, message: str
    ) -> None:
        response = admin.post("/_emulator/clusters", json={"name": "t", "tags": tags})
        assert (response.status_code, response.json()["id"]) == (400, "bad_request")
        assert message in response.json()["message"]
        assert len(emulator.clusters()) == 4


class TestUpdate:
    def test_a_rename_keeps_the_id_the_place_and_the_issued_tokens(
        self, emulator: Emulator, do_api: httpx.Client, webhook: httpx.Client
    ) -> None:
        token = _token(do_api, PROD)
        renamed = emulator.update_cluster(PROD, name="prod-renamed")
        assert (renamed.id, renamed.name, renamed.tags) == (PROD, "prod-renamed", ("production",))
        assert [c["name"] for c in _listed(do_api)][:2] == ["prod-renamed", "staging-cluster-01"]
        assert _got(do_api, PROD)["name"] == "prod-renamed"
        assert _authenticates(webhook, emulator, token)

    def test_the_admin_api_retags_moves_and_changes_the_state(
        self, admin: httpx.Client, do_api: httpx.Client
    ) -> None:
        changes = {"tags": ["canary"], "status": "degraded", "region": "fra1"}
        response = admin.patch(f"/_emulator/clusters/{PROD}", json=changes)
        assert response.status_code == 200
        assert response.json()["cluster"]["status"] == {"state": "degraded"}
        for cluster in (_got(do_api, PROD), _listed(do_api)[0]):
            assert cluster["tags"] == ["k8s", f"k8s:{PROD}", "canary"]
            assert (cluster["status"], cluster["region"]) == ({"state": "degraded"}, "fra1")
            assert cluster["name"] == "prod-cluster-01"

    def test_an_empty_tag_list_leaves_only_the_automatic_tags(self, emulator: Emulator) -> None:
        assert emulator.update_cluster(PROD, tags=[]).tags == ()

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"nmae": "x"}, "unknown key(s) in cluster changes"),
            ({"mode": "certificate"}, "unknown key"),
            ({"status": "melting"}, "status must be one of"),
            ({"name": ""}, "needs a name"),
            ({"name": 3}, "must be a string"),
            ({"tags": "canary"}, "list of strings"),
            ({"tags": ["a b"]}, "letters, numbers"),
            (["name"], "JSON object"),
        ],
    )
    def test_a_bad_change_is_a_400_and_changes_nothing(
        self, admin: httpx.Client, emulator: Emulator, body: object, message: str
    ) -> None:
        before = emulator.clusters()
        response = admin.patch(f"/_emulator/clusters/{PROD}", json=body)
        assert (response.status_code, response.json()["id"]) == (400, "bad_request")
        assert message in response.json()["message"]
        assert emulator.clusters() == before

    def test_an_unknown_cluster_is_a_404_or_a_key_error(
        self, admin: httpx.Client, emulator: Emulator
    ) -> None:
        missing = "00000000-0000-4000-8000-000000000000"
        response = admin.patch(f"/_emulator/clusters/{missing}", json={"name": "x"})
        assert (response.status_code, response.json()["id"]) == (404, "not_found")
        with pytest.raises(KeyError):
            emulator.update_cluster(missing, name="x")

    def test_a_string_is_not_taken_for_a_list_of_tags(self, emulator: Emulator) -> None:
        with pytest.raises(ValueError, match="list of strings"):
            emulator.update_cluster(PROD, tags="canary")


class TestRemove:
    def test_a_removed_cluster_is_gone_from_list_and_get(
        self, admin: httpx.Client, do_api: httpx.Client
    ) -> None:
        assert admin.delete(f"/_emulator/clusters/{PROD}").status_code == 204
        assert PROD not in [c["id"] for c in _listed(do_api)]
        assert do_api.get("/v2/kubernetes/clusters").json()["meta"] == {"total": 3}
        for suffix in ("", "/kubeconfig", "/credentials"):
            assert do_api.get(f"/v2/kubernetes/clusters/{PROD}{suffix}").status_code == 404
        assert PROD not in [c["id"] for c in admin.get("/_emulator/clusters").json()["clusters"]]
        again = admin.delete(f"/_emulator/clusters/{PROD}")
        assert (again.status_code, again.json()["id"]) == (404, "not_found")

    def test_a_removed_clusters_tokens_stop_authenticating_and_no_other(
        self, emulator: Emulator, do_api: httpx.Client, webhook: httpx.Client
    ) -> None:
        prod, staging = _token(do_api, PROD), _token(do_api, STAGING)
        assert emulator.remove_cluster(PROD) is True
        assert not _authenticates(webhook, emulator, prod)
        assert _authenticates(webhook, emulator, staging)
        assert emulator.remove_cluster(PROD) is False

    def test_a_removed_clusters_id_is_not_reused(self, emulator: Emulator) -> None:
        emulator.remove_cluster(PROD)
        with pytest.raises(ValueError, match="not reused"):
            emulator.add_cluster(Cluster(name="again", id=PROD))


class TestBulkAdd:
    def test_a_fleet_is_added_at_once_and_listed_in_order(
        self, emulator: Emulator, do_api: httpx.Client
    ) -> None:
        fleet = [Cluster(name=f"fleet-{i:03}", tags=("fleet",)) for i in range(250)]
        added = emulator.add_clusters(fleet)
        assert [c.id for c in added] == [c.id for c in fleet]
        first = do_api.get("/v2/kubernetes/clusters", params={"per_page": 200}).json()
        second = do_api.get(first["links"]["pages"]["next"]).json()
        assert first["meta"] == {"total": 254}
        names = [c["name"] for c in first["kubernetes_clusters"] + second["kubernetes_clusters"]]
        assert names[4:] == [c.name for c in fleet]

    def test_the_admin_api_adds_many_from_a_clusters_list(
        self, admin: httpx.Client, do_api: httpx.Client
    ) -> None:
        body = {"clusters": [{"name": "a", "tags": ["x"]}, {"name": "b", "region": "sgp1"}]}
        response = admin.post("/_emulator/clusters", json=body)
        assert response.status_code == 201
        assert [c["name"] for c in response.json()["clusters"]] == ["a", "b"]
        assert [c["name"] for c in _listed(do_api)][-2:] == ["a", "b"]

    @pytest.mark.parametrize(
        "body",
        [
            {"clusters": [{"name": "ok"}, {"region": "no-name"}]},
            {"clusters": [{"name": "ok"}, "not-an-object"]},
            {"clusters": [{"name": "a", "id": PROD}]},
            {"clusters": {"name": "a"}},
            {"clusters": [], "name": "a"},
        ],
    )
    def test_one_bad_entry_adds_none(
        self, admin: httpx.Client, emulator: Emulator, body: object
    ) -> None:
        response = admin.post("/_emulator/clusters", json=body)
        assert (response.status_code, response.json()["id"]) == (400, "bad_request")
        assert len(emulator.clusters()) == 4

    def test_the_same_id_twice_in_one_batch_adds_none(self, emulator: Emulator) -> None:
        twice = Cluster(name="twice")
        with pytest.raises(ValueError, match="exists already"):
            emulator.add_clusters([Cluster(name="first"), twice, twice])
        assert len(emulator.clusters()) == 4


class TestAccountState:
    """The same rules without HTTP, on a state of its own."""

    def test_review_refuses_a_removed_clusters_credential_even_one_recorded_late(self) -> None:
        state = AccountState()
        cluster = state.add_cluster(Cluster(name="c"), now=T0)
        state.record(_credential(cluster.id, token="early"))
        assert state.review("early", now=T0) is not None
        assert state.remove_cluster(cluster.id)
        state.record(_credential(cluster.id, token="late"))  # minted while it was being removed
        assert state.review("early", now=T0) is None
        assert state.review("late", now=T0) is None
        assert len(state.credentials(cluster_id=cluster.id)) == 2  # the history stays

    def test_an_update_keeps_the_place_and_a_bad_one_changes_nothing(self) -> None:
        state = AccountState()
        first, second = state.add_clusters([Cluster(name="a"), Cluster(name="b")], now=T0)
        assert state.update_cluster(first.id, name="z", status="upgrading") is not None
        assert [(c.name, c.status) for c in state.clusters()] == [
            ("z", "upgrading"),
            ("b", "running"),
        ]
        with pytest.raises(ValueError, match="tag"):
            state.update_cluster(second.id, tags=["ok", "not ok"])
        assert state.clusters()[1] == second
        assert state.update_cluster("nope", name="x") is None


def _credential(cluster_id: str, *, token: str) -> IssuedCredential:
    return IssuedCredential(
        id=token,
        cluster_id=cluster_id,
        kind="token",
        identity=Identity(username="u"),
        issued_at=T0,
        expires_at=T0 + 60,
        token=token,
    )


def test_requests_are_counted_per_account(emulator: Emulator, do_api: httpx.Client) -> None:
    other = emulator.add_token(account="other").token
    with client_for(emulator, other) as other_api:
        _listed(other_api)
        _listed(other_api)
    _listed(do_api)

    assert emulator.request_count("list_clusters", account="other") == 2
    assert emulator.request_count("list_clusters", account="default") == 1
    assert emulator.request_count("list_clusters") == 3
    assert emulator.stats()["list_clusters"] == {"200": 3}


def test_a_listing_can_be_given_a_hostile_body(emulator: Emulator, do_api: httpx.Client) -> None:
    emulator.add_fault(
        Fault(kind="body", body="<html>Bad gateway</html>", endpoint="list_clusters")
    )

    answer = do_api.get("/v2/kubernetes/clusters")
    assert (answer.status_code, answer.text) == (200, "<html>Bad gateway</html>")

    emulator.clear_faults()
    emulator.add_fault(Fault(kind="malformed_body", endpoint="list_clusters", count=1))
    broken = do_api.get("/v2/kubernetes/clusters")
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.content)
    assert do_api.get("/v2/kubernetes/clusters").json()["kubernetes_clusters"]  # used up
    # A body fault with no endpoint stays with the credential endpoints.
    emulator.add_fault(Fault(kind="body", body="nope"))
    assert do_api.get("/v2/kubernetes/clusters").json()["kubernetes_clusters"]
