"""Accounts, tokens and clusters: the config format, the demo data and the lookups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doks_access_testkit.emulator import (
    ALL_SCOPES,
    DEMO_CLUSTER_IDS,
    DEMO_READ_ONLY_TOKEN,
    DEMO_TOKEN,
    KUBERNETES_ACCESS_CLUSTER,
    KUBERNETES_READ,
    TAG_READ,
    Cluster,
    EmulatorConfig,
    Identity,
)
from doks_access_testkit.emulator.state import AccountState, ApiToken, IssuedCredential

T0 = 1_700_000_000.0


def test_the_demo_has_a_full_and_a_read_only_token_and_every_kind_of_cluster() -> None:
    config = EmulatorConfig.demo()
    scopes = {t.token: t.scopes for t in config.tokens}
    assert scopes[DEMO_READ_ONLY_TOKEN] == {KUBERNETES_READ}
    assert (
        scopes[DEMO_TOKEN] == ALL_SCOPES == {KUBERNETES_READ, KUBERNETES_ACCESS_CLUSTER, TAG_READ}
    )
    modes = {c.name: (c.mode, c.sso) for c in config.clusters}
    assert modes["legacy-cluster"] == ("certificate", False)
    assert modes["sso-cluster"] == ("token", True)
    assert {c.id for c in config.clusters} == set(DEMO_CLUSTER_IDS.values())


def test_a_config_file_describes_accounts_limits_and_faults(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(
        """
server: {port: 0, tls: false}
admin_token: adm
seed: 7
rate_limits: {per_hour: 10, per_minute: 2}
accounts:
  - name: team-a
    tokens:
      - dop_v1_a
      - {token: dop_v1_r, scopes: [kubernetes:read]}
    clusters:
      - name: prod
        region: ams3
        mode: certificate
        status: degraded
        tags: [production, "team:a"]
        identity: {username: alice, groups: [devs]}
faults:
  - {kind: latency, seconds: 0.1, endpoint: kubeconfig}
"""
    )
    config = EmulatorConfig.from_yaml(path)
    assert (config.tls, config.admin_token, config.seed) == (False, "adm", 7)
    assert (config.rate_limits.per_hour, config.rate_limits.per_minute) == (10, 2)
    assert [(t.token, t.account) for t in config.tokens] == [
        ("dop_v1_a", "team-a"),
        ("dop_v1_r", "team-a"),
    ]
    (cluster,) = config.clusters
    assert (cluster.account, cluster.mode, cluster.status) == ("team-a", "certificate", "degraded")
    assert cluster.tags == ("production", "team:a")
    assert cluster.identity == Identity(username="alice", groups=("devs",))
    assert config.faults[0].kind == "latency"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"acounts": []}, "unknown key"),
        ({"server": {"prot": 1}}, "unknown key"),
        ({"accounts": [{"name": "a", "clusters": [{"region": "x"}]}]}, "invalid cluster"),
        ({"accounts": [{"name": "a", "clusters": [{"name": "c", "id": "nope"}]}]}, "UUID"),
        ({"accounts": [{"name": "a", "clusters": [{"name": "c", "mode": "x"}]}]}, "mode"),
        ({"accounts": [{"name": "a", "tokens": [{"token": "t", "scopes": "read"}]}]}, "scopes"),
        ({"accounts": ["a"]}, "must be a mapping"),
        ({"accounts": [{"name": "a", "clusters": [{"name": "c", "tags": "prod"}]}]}, "list"),
        ({"accounts": [{"name": "a", "clusters": [{"name": "c", "tags": [7]}]}]}, "list"),
        ({"accounts": [{"name": "a", "clusters": [{"name": "c", "tags": ["a b"]}]}]}, "tag"),
        ({"accounts": [{"name": "a", "clusters": [{"name": "c", "status": "on"}]}]}, "status"),
    ],
)
def test_config_mistakes_fail_loudly(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorConfig.from_dict(data)


def test_a_token_only_sees_its_own_accounts_clusters() -> None:
    state = AccountState()
    mine = state.add_cluster(Cluster(name="mine", account="a"), now=T0)
    theirs = state.add_cluster(Cluster(name="theirs", account="b"), now=T0)
    assert state.clusters(account="a") == [mine]
    assert state.cluster(theirs.id, account="a") is None
    assert state.cluster(mine.id, account="a") == mine
    assert mine.created_at == T0


def test_cluster_ids_are_unique() -> None:
    state = AccountState()
    cluster = state.add_cluster(Cluster(name="c"), now=T0)
    with pytest.raises(ValueError, match="exists already"):
        state.add_cluster(cluster, now=T0)


def test_authentication_needs_an_exact_known_token() -> None:
    state = AccountState()
    token = state.add_token(ApiToken(token="dop_v1_x"))
    assert state.authenticate("dop_v1_x") == token
    assert state.authenticate("dop_v1_y") is None
    assert state.authenticate("") is None
    assert state.authenticate(None) is None
    with pytest.raises(ValueError, match="whitespace"):
        ApiToken(token="a b")


def test_a_review_finds_a_token_until_it_expires() -> None:
    state = AccountState()
    credential = IssuedCredential(
        id="c1",
        cluster_id="x",
        kind="token",
        identity=Identity(username="u"),
        issued_at=T0,
        expires_at=T0 + 5,
        token="secret",
    )
    state.record(credential)
    assert state.review("secret", now=T0 + 4.999) == credential
    assert state.review("secret", now=T0 + 5) is None
    assert state.review("other", now=T0) is None
    assert state.credentials(cluster_id="x") == [credential]
    assert state.credentials(cluster_id="y") == []
