"""Least privilege: the chart's RBAC is enough for the operator, and no more than it needs.

Enough: the chart is installed, and the operator then runs with a token of the chart's
ServiceAccount and nothing else, reconciles a DOClusterAccess end to end (the credential fetched,
the Secret written, re-created when deleted, the object deleted cleanly), and logs no refusal.
``test_sets_rbac.py`` does the same for a DOClusterAccessSet and its children.

No more: the rendered rules are exactly the list the operator's code needs (any addition fails a
test), nothing is a wildcard, namespaced mode grants nothing cluster-wide, and the apiserver
itself denies the ServiceAccount what the operator never does.

These tests run before ``tests/e2e`` in a full session, so that suite's session-wide operator
(which watches every namespace as an administrator) is not yet running. Should it be, it acts on
these objects too, and the test's operator may find nothing left to fetch.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from doks_access_testkit.emulator import Emulator
from doks_access_testkit.processes import ManagedProcess
from tests import kube, witness
from tests.chart.conftest import installed
from tests.chart.helm import Helm, of_kind, rules_of
from tests.chart.operator_as import (
    chart_operator,
    explained,
    installed_as_service_account,
    log_entries,
    operator_running,
    refusals,
)
from tests.conftest import Cluster
from tests.e2e import objects

GROUP = objects.GROUP
LEASES = "coordination.k8s.io"
SETS = "doclusteraccesssets"
# Everything the operator does, as (API group, resource) -> verbs; see the chart's _helpers.tpl.
OPERATOR_RULES = {
    # Its own watch and finalizer removal (get, list, watch, patch); a set's children (create,
    # list, merge patch and delete, each with a uid precondition).
    (GROUP, "doclusteraccesses"): {"get", "list", "watch", "create", "patch", "delete"},
    (GROUP, "doclusteraccesses/status"): {"patch"},
    (GROUP, SETS): {"get", "list", "watch"},
    (GROUP, f"{SETS}/status"): {"patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "update", "delete"},
    ("", "events"): {"create"},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "high availability": {"highAvailability": {"enabled": True}},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "namespaced, high availability": {
        "watchNamespaces": ["team-a"],
        "highAvailability": {"enabled": True},
    },
}
RELEASE_NAMESPACE = "doks-access-system"
FULLNAME = "doks-access-operator"


def _flattened(rule: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for group in rule.get("apiGroups", []):
        for resource in rule.get("resources", []):
            for verb in rule.get("verbs", []):
                yield group, resource, verb


def _grants(objects_: list[dict[str, Any]], role_name: str) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for role, rule in rules_of(objects_):
        if role["metadata"]["name"] == role_name:
            for group, resource, verb in _flattened(rule):
                granted.setdefault((group, resource), set()).add(verb)
    return granted


def _is_aggregated(role: dict[str, Any]) -> bool:
    labels = role["metadata"].get("labels", {})
    return any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels)


# --- what the chart renders ---------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_no_rule_uses_a_wildcard_or_a_non_resource_url(helm: Helm, values: dict[str, Any]) -> None:
    for role, rule in rules_of(helm.render(values=values)):
        where = f"{role['kind']} {role['metadata']['name']}"
        assert "nonResourceURLs" not in rule, where
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), f"{where}: {field} has '*'"


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_operator_gets_exactly_the_rules_it_uses(helm: Helm, values: dict[str, Any]) -> None:
    rendered = helm.render(values=values)
    kind = "Role" if values.get("watchNamespaces") else "ClusterRole"
    operator_roles = [r for r in of_kind(rendered, kind) if r["metadata"]["name"] == FULLNAME]
    assert operator_roles
    for role in operator_roles:
        assert _grants([role], FULLNAME) == OPERATOR_RULES


def test_cluster_wide_mode_binds_one_cluster_role_and_no_role(helm: Helm) -> None:
    rendered = helm.render()
    (binding,) = of_kind(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}
    ]
    assert not of_kind(rendered, "Role")
    assert not of_kind(rendered, "RoleBinding")


def test_namespaced_mode_grants_nothing_cluster_wide(helm: Helm) -> None:
    rendered = helm.render(values=VALUE_SETS["namespaced, high availability"])
    assert not of_kind(rendered, "ClusterRoleBinding")
    # The only ClusterRoles extend the built-in view/edit/admin roles for people; nobody is bound
    # to them by this chart, and they do not mention Secrets.
    for role in of_kind(rendered, "ClusterRole"):
        assert _is_aggregated(role), role["metadata"]["name"]
        assert all(
            resource in ("doclusteraccesses", SETS)
            for _, r in rules_of([role])
            for resource in r["resources"]
        )
    secret_roles = {
        role["metadata"]["namespace"]
        for role, rule in rules_of(rendered)
        if "secrets" in rule["resources"]
    }
    assert secret_roles == {"team-a"}
    for binding in of_kind(rendered, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"


def test_leases_are_granted_only_with_leader_election_and_only_one_by_name(helm: Helm) -> None:
    assert not any(LEASES in rule["apiGroups"] for _, rule in rules_of(helm.render()))

    rendered = helm.render(values=VALUE_SETS["high availability"])
    lease_rules = [(role, rule) for role, rule in rules_of(rendered) if LEASES in rule["apiGroups"]]
    assert {role["kind"] for role, _ in lease_rules} == {"Role"}
    assert {role["metadata"]["namespace"] for role, _ in lease_rules} == {RELEASE_NAMESPACE}
    by_verbs = {tuple(rule["verbs"]): rule.get("resourceNames") for _, rule in lease_rules}
    # RBAC cannot limit "create" to a name; everything else is limited to the one Lease.
    assert by_verbs == {("create",): None, ("get", "update"): [FULLNAME]}


# --- what the apiserver allows the installed ServiceAccount ----------------------------------


def _allowed(
    api: client.ApiClient,
    user: str,
    *,
    verb: str,
    resource: str,
    namespace: str | None = None,
    group: str = "",
) -> bool:
    namespace_of_user = user.split(":")[2]
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace_of_user}",
                    "system:authenticated",
                ],
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                    **({"namespace": namespace} if namespace else {}),
                },
            },
        }
    )
    return bool(review.status.allowed)


def _service_account_user(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{namespace}-doks-access-operator"


def test_the_apiserver_denies_the_cluster_wide_operator_what_it_never_does(
    cluster_helm: Helm, api: client.ApiClient, namespace: str
) -> None:
    user = _service_account_user(namespace)
    with installed(cluster_helm, release=namespace, namespace=namespace, values={}):
        assert _allowed(api, user, verb="list", resource="secrets")  # the probe itself works
        assert _allowed(api, user, verb="patch", resource="doclusteraccesses", group=GROUP)
        assert _allowed(api, user, verb="create", resource="doclusteraccesses", group=GROUP)
        assert _allowed(api, user, verb="watch", resource=SETS, group=GROUP)
        assert _allowed(api, user, verb="patch", resource=f"{SETS}/status", group=GROUP)
        for verb, resource, group in [
            ("patch", "secrets", ""),
            ("deletecollection", "secrets", ""),
            ("get", "configmaps", ""),
            ("create", "pods", ""),
            ("list", "namespaces", ""),
            ("update", "doclusteraccesses", GROUP),
            ("deletecollection", "doclusteraccesses", GROUP),
            ("update", "doclusteraccesses/status", GROUP),
            ("update", "doclusteraccesses/finalizers", GROUP),
            ("create", SETS, GROUP),
            ("update", SETS, GROUP),
            ("patch", SETS, GROUP),
            ("delete", SETS, GROUP),
            ("deletecollection", SETS, GROUP),
            ("update", f"{SETS}/status", GROUP),
            ("update", f"{SETS}/finalizers", GROUP),
            ("get", "leases", LEASES),
            ("create", "leases", LEASES),
            ("list", "customresourcedefinitions", "apiextensions.k8s.io"),
            ("create", "clusterrolebindings", "rbac.authorization.k8s.io"),
            ("create", "serviceaccounts/token", ""),
        ]:
            assert not _allowed(api, user, verb=verb, resource=resource, group=group), (
                f"{verb} {resource}"
            )


def test_the_apiserver_denies_the_namespaced_operator_secrets_elsewhere(
    cluster_helm: Helm, api: client.ApiClient, namespace: str, other_namespace: str
) -> None:
    user = _service_account_user(namespace)
    values = {"watchNamespaces": [other_namespace]}
    with installed(cluster_helm, release=namespace, namespace=namespace, values=values):
        assert _allowed(api, user, verb="create", resource="secrets", namespace=other_namespace)
        assert not _allowed(api, user, verb="list", resource="secrets")  # cluster-wide
        assert not _allowed(api, user, verb="get", resource="secrets", namespace=namespace)
        assert not _allowed(api, user, verb="create", resource="secrets", namespace="default")
        assert not _allowed(api, user, verb="list", resource="doclusteraccesses", group=GROUP)
        assert not _allowed(
            api, user, verb="get", resource="doclusteraccesses", group=GROUP, namespace="default"
        )
        assert _allowed(
            api, user, verb="list", resource=SETS, group=GROUP, namespace=other_namespace
        )
        assert not _allowed(api, user, verb="list", resource=SETS, group=GROUP)
        for verb, resource in [("create", "doclusteraccesses"), ("get", SETS)]:
            assert not _allowed(
                api, user, verb=verb, resource=resource, group=GROUP, namespace="default"
            ), f"{verb} {resource} in default"


# --- the operator at work with only these permissions ---------------------------------------


def _prove_end_to_end(
    api: client.ApiClient,
    process: ManagedProcess,
    *,
    namespace: str,
    name: str,
    ours: set[str],
) -> None:
    """Ready, the Secret written and re-created, the object deleted cleanly, no refusal logged."""

    def still_running() -> None:
        assert process.exit_code() is None, f"the operator exited:\n{process.log_tail(60)}"

    objects.create_token_secret(api, namespace)
    # As the daemon-based versions left every object: with their finalizer, which this version
    # removes (its one use of `patch` on doclusteraccesses).
    objects.apply_access(
        api,
        namespace,
        name,
        {"clusterID": objects.CLUSTER_ID},
        finalizers=[objects.LEGACY_FINALIZER],
    )
    try:
        objects.wait_for_condition(api, namespace, name, "Ready", "True", None)
    except AssertionError:
        still_running()
        raise AssertionError(f"not Ready; the operator's log:\n{process.log_tail(60)}") from None
    secret = f"{name}-kubeconfig"
    assert objects.kubeconfig_of(api, namespace, secret, "kubeconfig").startswith(b"apiVersion")
    if witness.PROC.is_dir():  # the token came from a Secret, not a flag or the environment
        process_text = witness.arguments_and_environment(process.pid)
        assert witness.leaked_in(process_text, witness.known_secrets()) == []
    kube.eventually(
        lambda: not objects.get_access(api, namespace, name)["metadata"].get("finalizers"),
        what="the previous version's finalizer to be removed",  # Kopf's patch was allowed
    )
    fetched = f"[{namespace}/{name}] fetching a credential"
    assert any(fetched in entry for entry in log_entries(process.log_path)), (
        f"this operator did not fetch (did another one?):\n{process.log_tail(60)}"
    )

    # Deleting the Secret wakes the operator through its label-selected watch; it writes anew.
    core = client.CoreV1Api(api)
    uid = core.read_namespaced_secret(secret, namespace).metadata.uid
    core.delete_namespaced_secret(secret, namespace)

    def recreated() -> bool:
        try:
            return bool(core.read_namespaced_secret(secret, namespace).metadata.uid != uid)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise

    kube.eventually(recreated, what=f"Secret {namespace}/{secret} to be written again")
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    assert events.items, "no Event was recorded"

    # Deleting the object: nothing holds it up.
    custom = client.CustomObjectsApi(api)
    custom.delete_namespaced_custom_object(GROUP, objects.VERSION, namespace, objects.PLURAL, name)
    kube.eventually(
        lambda: kube.is_absent(
            lambda: custom.get_namespaced_custom_object(
                GROUP, objects.VERSION, namespace, objects.PLURAL, name
            )
        ),
        what=f"{namespace}/{name} to be deleted",
        timeout=30,
    )
    still_running()
    refused = refusals(log_entries(process.log_path), ours=ours)
    assert not refused, explained(refused)


@pytest.mark.usefixtures("crds")
def test_the_operator_works_with_only_the_cluster_wide_permissions(
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
        _prove_end_to_end(api, process, namespace=namespace, name="prod", ours={namespace})


@pytest.mark.usefixtures("crds")
def test_the_operator_works_with_only_the_roles_of_namespaced_mode(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    digitalocean: Emulator,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
) -> None:
    with chart_operator(
        cluster_helm,
        cluster,
        api,
        digitalocean,
        namespace=namespace,
        directory=tmp_path,
        served=other_namespace,
    ) as process:
        _prove_end_to_end(
            api,
            process,
            namespace=other_namespace,
            name="prod",
            ours={namespace, other_namespace},
        )


def _leader_election_env(namespace: str) -> dict[str, str]:
    """What the chart's Deployment sets with high availability, POD_NAMESPACE resolved."""
    return {
        "DOKS_ACCESS_LEADER_ELECTION": "true",
        "DOKS_ACCESS_LEADER_ELECTION_NAMESPACE": namespace,
        "DOKS_ACCESS_LEADER_ELECTION_LEASE_NAME": f"{namespace}-doks-access-operator",
    }


def _lease_holder(api: client.ApiClient, namespace: str) -> str | None:
    lease = f"{namespace}-doks-access-operator"
    try:
        found = client.CoordinationV1Api(api).read_namespaced_lease(lease, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    holder: str | None = found.spec.holder_identity
    return holder or None


@pytest.mark.usefixtures("crds")
def test_the_operator_elects_itself_leader_with_only_the_charts_lease_permissions(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    digitalocean: Emulator,
    namespace: str,
    tmp_path: Path,
) -> None:
    values = {"highAvailability": {"enabled": True}}
    with (
        installed_as_service_account(
            cluster_helm,
            cluster,
            api,
            namespace=namespace,
            values=values,
            path=tmp_path / "operator.kubeconfig",
        ) as kubeconfig,
        operator_running(
            kubeconfig=kubeconfig,
            digitalocean=digitalocean,
            log_path=tmp_path / "operator.log",
            env=_leader_election_env(namespace),
        ) as process,
    ):
        kube.eventually(lambda: _lease_holder(api, namespace), what="the Lease to have a holder")
        _prove_end_to_end(api, process, namespace=namespace, name="prod", ours={namespace})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.usefixtures("crds")
def test_a_standby_replica_answers_the_liveness_probe_too(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    digitalocean: Emulator,
    namespace: str,
    tmp_path: Path,
) -> None:
    """With high availability, the chart probes every replica; a standby must answer as well,
    or the kubelet restarts it again and again."""
    values = {"highAvailability": {"enabled": True}}
    with installed_as_service_account(
        cluster_helm,
        cluster,
        api,
        namespace=namespace,
        values=values,
        path=tmp_path / "operator.kubeconfig",
    ) as kubeconfig:
        urls = [f"http://127.0.0.1:{_free_port()}/healthz" for _ in range(2)]
        with contextlib.ExitStack() as replicas:
            for index, url in enumerate(urls):
                replicas.enter_context(
                    operator_running(
                        kubeconfig=kubeconfig,
                        digitalocean=digitalocean,
                        log_path=tmp_path / f"replica-{index}.log",
                        env={
                            **_leader_election_env(namespace),
                            "DOKS_ACCESS_LIVENESS_ENDPOINT": url,
                        },
                    )
                )
            kube.eventually(
                lambda: _lease_holder(api, namespace), what="the Lease to have a holder"
            )
            kube.eventually(
                lambda: all(_answers(url) for url in urls),
                what=f"both {urls} to answer (a standby must serve the liveness endpoint too)",
                timeout=30,
            )


# --- what the apiserver refuses the ServiceAccount, asked for real --------------------------------
# Each operation is sent as the chart's ServiceAccount (a TokenRequest token, as the operator gets)
# and must come back 403 from the apiserver's authorizer: not a 404, not a validation error. The
# objects named need not exist: authorization comes before anything else.

Operation = Callable[[client.ApiClient, str, str], object]
_ESCALATION_RULES = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
_CLUSTER_ADMIN = {
    "apiGroup": "rbac.authorization.k8s.io",
    "kind": "ClusterRole",
    "name": "cluster-admin",
}


def _config_map(api: client.ApiClient, _own: str, served: str) -> object:
    body = {"metadata": {"name": "x"}, "data": {"a": "b"}}
    return client.CoreV1Api(api).create_namespaced_config_map(served, body)


def _deployment(api: client.ApiClient, _own: str, served: str) -> object:
    labels = {"app": "x"}
    body = {
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "x", "image": "busybox"}]},
            },
        },
    }
    return client.AppsV1Api(api).create_namespaced_deployment(served, body)


def _role(api: client.ApiClient, _own: str, served: str) -> object:
    body = {"metadata": {"name": "x"}, "rules": _ESCALATION_RULES}
    return client.RbacAuthorizationV1Api(api).create_namespaced_role(served, body)


def _binding_to_cluster_admin(api: client.ApiClient, own: str, served: str) -> object:
    subject = {"kind": "ServiceAccount", "name": f"{own}-doks-access-operator", "namespace": own}
    body = {"metadata": {"name": "x"}, "roleRef": _CLUSTER_ADMIN, "subjects": [subject]}
    return client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(served, body)


def _cluster_binding_to_cluster_admin(api: client.ApiClient, own: str, _served: str) -> object:
    subject = {"kind": "ServiceAccount", "name": f"{own}-doks-access-operator", "namespace": own}
    body = {"metadata": {"name": f"{own}-x"}, "roleRef": _CLUSTER_ADMIN, "subjects": [subject]}
    return client.RbacAuthorizationV1Api(api).create_cluster_role_binding(body)


def _cluster_role(api: client.ApiClient, own: str, _served: str) -> object:
    body = {"metadata": {"name": f"{own}-x"}, "rules": _ESCALATION_RULES}
    return client.RbacAuthorizationV1Api(api).create_cluster_role(body)


def _widen_own_role(api: client.ApiClient, own: str, served: str) -> object:
    patch = {"rules": _ESCALATION_RULES}
    name = f"{own}-doks-access-operator"
    return client.RbacAuthorizationV1Api(api).patch_namespaced_role(name, served, patch)


def _widen_own_cluster_role(api: client.ApiClient, own: str, _served: str) -> object:
    patch = {"rules": _ESCALATION_RULES}
    name = f"{own}-doks-access-operator"
    return client.RbacAuthorizationV1Api(api).patch_cluster_role(name, patch)


def _own_token(api: client.ApiClient, own: str, _served: str) -> object:
    name = f"{own}-doks-access-operator"
    return client.CoreV1Api(api).create_namespaced_service_account_token(
        name, own, {"spec": {"expirationSeconds": 600}}
    )


def _exec(api: client.ApiClient, _own: str, served: str) -> object:
    return client.CoreV1Api(api).connect_post_namespaced_pod_exec(
        "x", served, command=["id"], stdout=True
    )


def _impersonate(api: client.ApiClient, _own: str, _served: str) -> object:
    api.set_default_header("Impersonate-User", "system:admin")
    return client.CoreV1Api(api).list_namespace()


def _secret_in(namespace: Callable[[str, str], str]) -> Operation:
    return lambda api, own, served: client.CoreV1Api(api).read_namespaced_secret(
        "digitalocean-api", namespace(own, served)
    )


def _patch_secret(api: client.ApiClient, _own: str, served: str) -> object:
    patch = {"data": {"kubeconfig": ""}}
    return client.CoreV1Api(api).patch_namespaced_secret("x-kubeconfig", served, patch)


def _custom_in(namespace: Callable[[str, str], str], verb: str, *, plural: str) -> Operation:
    """``verb`` (create, get, patch or delete) on a DOClusterAccess or DOClusterAccessSet "x"."""
    kind = "DOClusterAccessSet" if plural == SETS else "DOClusterAccess"

    def operation(api: client.ApiClient, own: str, served: str) -> object:
        custom, where = client.CustomObjectsApi(api), namespace(own, served)
        if verb == "create":
            body = {
                "apiVersion": f"{GROUP}/{objects.VERSION}",
                "kind": kind,
                "metadata": {"name": "x"},
            }
            return custom.create_namespaced_custom_object(
                GROUP, objects.VERSION, where, plural, body
            )
        if verb == "patch":
            patch = {"metadata": {"labels": {"x": "y"}}}
            return custom.patch_namespaced_custom_object(
                GROUP, objects.VERSION, where, plural, "x", patch
            )
        if verb == "delete":
            return custom.delete_namespaced_custom_object(
                GROUP, objects.VERSION, where, plural, "x"
            )
        return custom.get_namespaced_custom_object(GROUP, objects.VERSION, where, plural, "x")

    return operation


def _access_in(namespace: Callable[[str, str], str], verb: str) -> Operation:
    return _custom_in(namespace, verb, plural=objects.PLURAL)


def _set_in(namespace: Callable[[str, str], str], verb: str) -> Operation:
    return _custom_in(namespace, verb, plural=SETS)


def _own(own: str, _served: str) -> str:
    return own


def _served(_own: str, served: str) -> str:
    return served


NAMESPACED_REFUSALS: dict[str, Operation] = {
    "read a Secret in its own, unserved namespace": _secret_in(_own),
    "read a Secret in default": _secret_in(lambda _o, _s: "default"),
    "list Secrets cluster-wide": lambda api, _o, _s: client.CoreV1Api(
        api
    ).list_secret_for_all_namespaces(),
    "get a DOClusterAccess in an unserved namespace": _access_in(_own, "get"),
    "create a DOClusterAccess in an unserved namespace": _access_in(_own, "create"),
    "delete a DOClusterAccess in an unserved namespace": _access_in(_own, "delete"),
    "get a DOClusterAccessSet in an unserved namespace": _set_in(_own, "get"),
    "create a DOClusterAccessSet where it serves": _set_in(_served, "create"),
    "patch a DOClusterAccessSet where it serves": _set_in(_served, "patch"),
    "delete a DOClusterAccessSet where it serves": _set_in(_served, "delete"),
    "create a ConfigMap where it serves": _config_map,
    "create a Deployment where it serves": _deployment,
    "create a Role where it serves": _role,
    "bind cluster-admin where it serves": _binding_to_cluster_admin,
    "widen its own Role": _widen_own_role,
    "create a ClusterRole": _cluster_role,
    "request a token for its own ServiceAccount": _own_token,
    "exec into a pod where it serves": _exec,
    "impersonate": _impersonate,
}
CLUSTER_WIDE_REFUSALS: dict[str, Operation] = {
    "patch a Secret": _patch_secret,
    "create a DOClusterAccessSet": _set_in(_served, "create"),
    "patch a DOClusterAccessSet": _set_in(_served, "patch"),
    "delete a DOClusterAccessSet": _set_in(_served, "delete"),
    "create a ConfigMap": _config_map,
    "create a Deployment": _deployment,
    "create a Role": _role,
    "bind cluster-admin cluster-wide": _cluster_binding_to_cluster_admin,
    "widen its own ClusterRole": _widen_own_cluster_role,
    "request a token for its own ServiceAccount": _own_token,
    "exec into a pod": _exec,
    "impersonate": _impersonate,
}


@contextlib.contextmanager
def _release_as_service_account(
    helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    directory: Path,
    *,
    namespaced: bool,
) -> Iterator[tuple[Path, str, str]]:
    """A release in a fresh namespace (serving a second one when ``namespaced``) and a
    kubeconfig of its ServiceAccount; yields (kubeconfig, own namespace, served namespace)."""
    with kube.fresh_namespace(api) as own, kube.fresh_namespace(api) as served:
        values = {"watchNamespaces": [served]} if namespaced else {}
        with installed_as_service_account(
            helm, cluster, api, namespace=own, values=values, path=directory / f"{own}.kubeconfig"
        ) as kubeconfig:
            yield kubeconfig, own, served


@pytest.fixture(scope="module")
def namespaced_release(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, str, str]]:
    del crds  # refusals of DOClusterAccess requests are about a resource that exists
    with _release_as_service_account(
        cluster_helm, cluster, api, tmp_path_factory.mktemp("sa"), namespaced=True
    ) as release:
        yield release


@pytest.fixture(scope="module")
def cluster_wide_release(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, str, str]]:
    del crds
    with _release_as_service_account(
        cluster_helm, cluster, api, tmp_path_factory.mktemp("sa"), namespaced=False
    ) as release:
        yield release


def _refused(release: tuple[Path, str, str], operation: Operation) -> None:
    kubeconfig, own, served = release
    with config.new_client_from_config(config_file=str(kubeconfig)) as as_operator:
        # The probe of the probe: the same client may do what the chart grants.
        client.CoreV1Api(as_operator).list_namespaced_secret(served)
        with pytest.raises(client.ApiException) as raised:
            operation(as_operator, own, served)
    assert raised.value.status == 403, raised.value.reason


@pytest.mark.parametrize("operation", NAMESPACED_REFUSALS.values(), ids=NAMESPACED_REFUSALS.keys())
def test_the_apiserver_refuses_the_namespaced_operator_for_real(
    namespaced_release: tuple[Path, str, str], operation: Operation
) -> None:
    _refused(namespaced_release, operation)


@pytest.mark.parametrize(
    "operation", CLUSTER_WIDE_REFUSALS.values(), ids=CLUSTER_WIDE_REFUSALS.keys()
)
def test_the_apiserver_refuses_the_cluster_wide_operator_for_real(
    cluster_wide_release: tuple[Path, str, str], operation: Operation
) -> None:
    _refused(cluster_wide_release, operation)
