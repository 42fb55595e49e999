"""ClusterDOAccount under the chart's RBAC (``accounts.enabled``): the operator serves tenants
through an account with exactly the chart's permissions: tenants (ServiceAccounts with only the
"edit" role the chart's roles aggregate to) get what the rules allow, are refused the rest with the
rule's reason and no DigitalOcean call, and can neither read the account's token nor create an
account; and a policy change reaches the operator through its watch of accounts.

Like ``test_rbac.py``, these tests run before ``tests/e2e`` in a full session, so that suite's
session-wide operator is not yet running and cannot act on these objects instead.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from doks_access_testkit.emulator import Emulator
from doks_access_testkit.emulator.state import Cluster as EmulatedCluster
from tests import kube
from tests.chart.helm import Helm, of_kind
from tests.chart.operator_as import (
    chart_operator,
    explained,
    log_entries,
    refusals,
    service_account_kubeconfig,
)
from tests.chart.test_sets_rbac import _allowed_once_aggregated, _role_aggregation
from tests.conftest import Cluster
from tests.e2e import objects

GROUP, VERSION = objects.GROUP, objects.VERSION
ACCOUNTS = "clusterdoaccounts"
FULLNAME = "doks-access-operator"


def test_accounts_grant_reading_accounts_namespaces_and_only_the_account_namespaces_secrets(
    helm: Helm,
) -> None:
    assert not [r for r in of_kind(helm.render(), "ClusterRole") if "accounts" in str(r)]
    rendered = helm.render(
        values={
            "accounts": {"enabled": True, "namespace": "platform-tokens"},
            "watchNamespaces": ["a"],
        }
    )
    (cluster_role,) = [
        r
        for r in of_kind(rendered, "ClusterRole")
        if r["metadata"]["name"] == f"{FULLNAME}-accounts"
    ]
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["doks-access.dev"],
            "resources": ["clusterdoaccounts"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
    ]
    (role,) = [
        r for r in of_kind(rendered, "Role") if r["metadata"]["name"] == f"{FULLNAME}-accounts"
    ]
    assert role["metadata"]["namespace"] == "platform-tokens"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    deployment = of_kind(rendered, "Deployment")[0]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["DOKS_ACCESS_ACCOUNT_NAMESPACE"] == "platform-tokens"


def _tenant(
    api: client.ApiClient, cluster: Cluster, namespace: str, path: Path
) -> client.ApiClient:
    """A ServiceAccount of ``namespace`` with Kubernetes' "edit" role there and nothing else:
    what a team gets in its namespace (the chart's roles reach it through aggregation)."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "tenant"}})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "tenant-edit"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "edit",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
        },
    )
    kubeconfig = service_account_kubeconfig(
        api,
        admin_kubeconfig=cluster.kubeconfig_path,
        namespace=namespace,
        service_account="tenant",
        path=path,
    )
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.mark.usefixtures("crds")
def test_a_tenant_gets_a_credential_through_an_account_and_never_the_token(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    digitalocean: Emulator,
    namespace: str,
    tmp_path: Path,
) -> None:
    owner = f"rbac-{namespace}"
    token = digitalocean.add_token(account=owner).token
    allowed = digitalocean.add_cluster(EmulatedCluster(name="team", account=owner))
    other = digitalocean.add_cluster(EmulatedCluster(name="other-team", account=owner))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    custom = client.CustomObjectsApi(api)
    with (
        kube.fresh_namespace(api) as tenant_namespace,
        kube.fresh_namespace(api) as stranger_namespace,
    ):
        # The account namespace is the release's: the token Secret lives there.
        objects.create_token_secret(api, namespace, token=token, name="platform-token")
        spec: dict[str, Any] = {
            "tokenSecretRef": {"name": "platform-token"},
            "tenants": [{"namespaces": [tenant_namespace], "clusters": {"ids": [allowed.id]}}],
            "maxExpirySeconds": 7200,
        }
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            ACCOUNTS,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ClusterDOAccount",
                "metadata": {"name": account},
                "spec": spec,
            },
        )
        try:
            with chart_operator(
                cluster_helm,
                cluster,
                api,
                digitalocean,
                namespace=namespace,
                directory=tmp_path,
                extra_values={"accounts": {"enabled": True}},
            ) as process:
                with (
                    _role_aggregation(cluster, tmp_path),
                    _tenant(api, cluster, tenant_namespace, tmp_path / "t.kubeconfig") as tenant,
                    _tenant(
                        api, cluster, stranger_namespace, tmp_path / "s.kubeconfig"
                    ) as stranger,
                ):
                    tenant_custom, tenant_core = (
                        client.CustomObjectsApi(tenant),
                        client.CoreV1Api(tenant),
                    )

                    def request(
                        who: client.CustomObjectsApi, where: str, name: str, **spec: Any
                    ) -> None:
                        body = {
                            "apiVersion": f"{GROUP}/{VERSION}",
                            "kind": "DOClusterAccess",
                            "metadata": {"name": name},
                            "spec": {"accountRef": {"name": account}, **spec},
                        }
                        who.create_namespaced_custom_object(
                            GROUP, VERSION, where, objects.PLURAL, body
                        )

                    _allowed_once_aggregated(
                        lambda: request(
                            tenant_custom,
                            tenant_namespace,
                            "team",
                            clusterID=allowed.id,
                            expirySeconds=3600,
                        ),
                        what="the tenant's edit role to reach DOClusterAccess objects",
                    )
                    objects.wait_for_condition(
                        api, tenant_namespace, "team", "Ready", "True", "Issued"
                    )
                    calls = digitalocean.request_count(account=owner)

                    # Outside the rules, each refused for its own reason, without a call.
                    request(
                        tenant_custom,
                        tenant_namespace,
                        "elsewhere",
                        clusterID=other.id,
                        expirySeconds=3600,
                    )
                    request(
                        tenant_custom,
                        tenant_namespace,
                        "forever",
                        clusterID=allowed.id,
                        expirySeconds=86400,
                    )
                    request(
                        client.CustomObjectsApi(stranger),
                        stranger_namespace,
                        "stranger",
                        clusterID=allowed.id,
                        expirySeconds=3600,
                    )
                    for where, name, reason in [
                        (tenant_namespace, "elsewhere", "ClusterNotAllowed"),
                        (tenant_namespace, "forever", "ExpiryTooLong"),
                        (stranger_namespace, "stranger", "NamespaceNotAllowed"),
                    ]:
                        objects.wait_for_condition(api, where, name, "Stalled", "True", reason)
                    assert digitalocean.request_count(account=owner) == calls

                    for attempt in (
                        lambda: tenant_core.read_namespaced_secret("platform-token", namespace),
                        lambda: tenant_custom.get_cluster_custom_object(
                            GROUP, VERSION, ACCOUNTS, account
                        ),
                        lambda: tenant_custom.create_cluster_custom_object(
                            GROUP,
                            VERSION,
                            ACCOUNTS,
                            {
                                "apiVersion": f"{GROUP}/{VERSION}",
                                "kind": "ClusterDOAccount",
                                "metadata": {"name": "mine"},
                                "spec": spec,
                            },
                        ),
                    ):
                        with pytest.raises(client.ApiException) as refused:
                            attempt()
                        assert refused.value.status == 403

                # The platform team takes the cluster away: the account's watch (list and
                # watch, granted by the chart) tells the operator at once, not at the renewal.
                rule = {**spec["tenants"][0], "clusters": {"names": ["someone-else"]}}
                narrowed = {**spec, "tenants": [rule]}
                custom.patch_cluster_custom_object(
                    GROUP, VERSION, ACCOUNTS, account, {"spec": narrowed}
                )
                objects.wait_for_condition(
                    api, tenant_namespace, "team", "Stalled", "True", "ClusterNotAllowed"
                )
                refused_by_rbac = refusals(
                    log_entries(process.log_path),
                    ours={namespace, tenant_namespace, stranger_namespace},
                )
                assert not refused_by_rbac, explained(refused_by_rbac)
        finally:
            kube.delete_ignoring_absence(
                lambda: custom.delete_cluster_custom_object(GROUP, VERSION, ACCOUNTS, account)
            )


@pytest.mark.usefixtures("crds")
def test_without_accounts_enabled_an_account_reference_is_stalled_and_says_how_to_enable_them(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    digitalocean: Emulator,
    namespace: str,
    tmp_path: Path,
) -> None:
    with chart_operator(
        cluster_helm, cluster, api, digitalocean, namespace=namespace, directory=tmp_path
    ) as process:
        objects.apply_access(
            api,
            namespace,
            "team",
            {"clusterID": objects.CLUSTER_ID, "accountRef": {"name": "shared"}},
        )

        found = objects.wait_for_condition(
            api, namespace, "team", "Stalled", "True", "AccountNotFound"
        )

        stalled = objects.condition(found, "Stalled")
        assert stalled is not None
        assert "accounts.enabled=true" in stalled["message"]
        assert process.exit_code() is None
        # Neither the start-up probe nor the object's reads show as refusals to chase.
        refused = refusals(log_entries(process.log_path), ours={namespace})
        assert not refused, explained(refused)


@pytest.mark.usefixtures("crds")
def test_accounts_given_as_values_are_created_and_the_api_server_accepts_them(
    helm: Helm, api: client.ApiClient
) -> None:
    spec = {
        "tokenSecretRef": {"name": "digitalocean-api"},
        "tenants": [{"namespaces": ["team-a"], "clusters": {"tags": ["team:a"]}}],
        "maxExpirySeconds": 86400,
    }
    values = {"accounts": {"enabled": True, "items": [{"name": "shared", "spec": spec}]}}
    (account,) = of_kind(helm.render(values=values), "ClusterDOAccount")
    assert (account["metadata"]["name"], account["spec"]) == ("shared", spec)
    created = client.CustomObjectsApi(api).create_cluster_custom_object(
        GROUP, VERSION, ACCOUNTS, account, dry_run="All"
    )
    assert created["spec"]["tokenSecretRef"] == {"name": "digitalocean-api", "key": "token"}
    refused = {**account, "spec": {**spec, "tenants": [{"clusters": {"all": True}}]}}
    with pytest.raises(client.ApiException) as invalid:
        client.CustomObjectsApi(api).create_cluster_custom_object(
            GROUP, VERSION, ACCOUNTS, refused, dry_run="All"
        )
    assert invalid.value.status == 422
    assert "a rule must admit namespaces" in str(invalid.value.body)
