"""ClusterDOAccount policy: who may use the platform team's token for which clusters (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doks_access.accounts import (
    DEFAULT_EXPIRY_SECONDS,
    Account,
    Decision,
    Refusal,
    Request,
    decide,
    parse_account,
)
from doks_access.spec import InvalidSpecError

TEAM_A_CLUSTER = "bd5f5959-5e1e-4205-a714-a914373942af"
TEAM_B_CLUSTER = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def account(**spec: Any) -> Account:
    body = {
        "spec": {
            "tokenSecretRef": {"name": "digitalocean-api"},
            "tenants": [
                {"namespaces": ["team-a"], "clusters": {"ids": [TEAM_A_CLUSTER]}},
                {
                    "namespaceSelector": {"matchLabels": {"team": "b"}},
                    "clusters": {"names": ["b-prod"], "tags": ["team:b"]},
                },
            ],
            **spec,
        }
    }
    return parse_account(body)


def request(namespace: str = "team-a", **fields: Any) -> Request:
    defaults: dict[str, Any] = {
        "namespace": namespace,
        "namespace_labels": {},
        "cluster_id": TEAM_A_CLUSTER,
        "cluster_name": None,
        "expiry_seconds": 3600,
        "verify": False,
    }
    return Request(**{**defaults, **fields})


@dataclasses.dataclass(frozen=True)
class Listed:
    id: str
    name: str
    tags: tuple[str, ...] | None


def test_a_namespace_gets_the_clusters_its_rule_grants() -> None:
    assert decide(account(), request(), account_name="shared") == Decision()


def test_another_namespace_is_refused_naming_the_account() -> None:
    decision = decide(account(), request("team-c"), account_name="shared")

    assert decision.refusal is Refusal.NAMESPACE_NOT_ALLOWED
    assert decision.message == "no rule of ClusterDOAccount shared admits namespace team-c"


def test_a_cluster_of_another_team_is_refused_naming_the_rules_that_admit_the_namespace() -> None:
    decision = decide(account(), request(cluster_id=TEAM_B_CLUSTER), account_name="shared")

    assert decision.refusal is Refusal.CLUSTER_NOT_ALLOWED
    assert decision.message == (
        f"cluster {TEAM_B_CLUSTER} is granted by none of the rules that admit this namespace "
        "(tenants[0])"
    )


def test_a_namespace_admitted_by_its_labels_gets_clusters_by_name() -> None:
    labelled = request("b-apps", namespace_labels={"team": "b"}, cluster_id=None)

    decision = decide(
        account(), dataclasses.replace(labelled, cluster_name="b-prod"), account_name="x"
    )

    assert decision == Decision()


def test_a_grant_by_tags_waits_for_the_listing_and_then_decides() -> None:
    labelled = request("b-apps", namespace_labels={"team": "b"}, cluster_id=TEAM_B_CLUSTER)

    pending = decide(account(), labelled, account_name="x")

    assert not pending.allowed
    assert pending.refusal is None
    assert pending.for_cluster(Listed(TEAM_B_CLUSTER, "b-stage", ("team:b", "k8s"))) == Decision()
    refused = pending.for_cluster(Listed(TEAM_B_CLUSTER, "b-stage", ("team:c",)))
    assert refused.refusal is Refusal.CLUSTER_NOT_ALLOWED
    # Without tag:read the listing shows no tags: nothing is granted by them.
    assert pending.for_cluster(Listed(TEAM_B_CLUSTER, "b-stage", None)).refusal is not None


@pytest.mark.parametrize(
    ("asked", "refused"),
    [(3600, False), (86400, False), (86401, True), (None, True)],  # None: DigitalOcean's 7 days
)
def test_the_longest_lifetime_is_enforced_counting_the_default_as_seven_days(
    asked: int | None, refused: bool
) -> None:
    decision = decide(
        account(maxExpirySeconds=86400), request(expiry_seconds=asked), account_name="x"
    )

    assert (decision.refusal is Refusal.EXPIRY_TOO_LONG) is refused
    if refused:
        shown = asked or DEFAULT_EXPIRY_SECONDS
        assert decision.message == (
            f"ClusterDOAccount x allows at most 86400s; this asks for {shown}s "
            "(set spec.expirySeconds)"
        )


def test_verify_can_be_required() -> None:
    strict = account(requireVerify=True)

    assert decide(strict, request(), account_name="x").refusal is Refusal.VERIFY_REQUIRED
    assert decide(strict, request(verify=True), account_name="x") == Decision()


@pytest.mark.parametrize(
    ("operator", "values", "labels", "admitted"),
    [
        ("In", ["a", "b"], {"team": "a"}, True),
        ("In", ["a", "b"], {"team": "c"}, False),
        ("In", ["a"], {}, False),
        ("NotIn", ["a"], {"team": "b"}, True),
        ("NotIn", ["a"], {}, True),
        ("NotIn", ["a"], {"team": "a"}, False),
        ("Exists", [], {"team": ""}, True),
        ("Exists", [], {}, False),
        ("DoesNotExist", [], {}, True),
        ("DoesNotExist", [], {"team": "a"}, False),
    ],
)
def test_match_expressions_follow_kubernetes_label_selectors(
    operator: str, values: list[str], labels: dict[str, str], admitted: bool
) -> None:
    expression: dict[str, Any] = {"key": "team", "operator": operator}
    if values:
        expression["values"] = values
    rule = {"namespaceSelector": {"matchExpressions": [expression]}, "clusters": {"all": True}}
    policy = account(tenants=[rule])

    decision = decide(policy, request("x", namespace_labels=labels), account_name="x")

    assert (decision.refusal is None) is admitted


@pytest.mark.parametrize(
    ("tenants", "field", "problem"),
    [
        ([], "spec.tenants", "must be a non-empty list"),
        ([{"clusters": {"all": True}}], "spec.tenants[0]", "admits no namespace"),
        ([{"namespaces": ["a"]}], "spec.tenants[0].clusters", "is missing"),
        ([{"namespaces": ["a"], "clusters": {}}], "spec.tenants[0].clusters", "must grant"),
        (
            [{"namespaces": ["a"], "clusters": {"all": True, "ids": [TEAM_A_CLUSTER]}}],
            "spec.tenants[0].clusters",
            "must grant",
        ),
        (
            [{"namespaces": ["a"], "clusters": {"ids": ["prod"]}}],
            "spec.tenants[0].clusters.ids",
            "UUID",
        ),
        ([{"namespaces": "a", "clusters": {"all": True}}], "spec.tenants[0].namespaces", "list"),
        (
            [
                {
                    "namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "In"}]},
                    "clusters": {"all": True},
                }
            ],
            "spec.tenants[0].namespaceSelector.matchExpressions[0].values",
            "must not be empty",
        ),
        (
            [
                {
                    "namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "Has"}]},
                    "clusters": {"all": True},
                }
            ],
            "spec.tenants[0].namespaceSelector.matchExpressions[0].operator",
            "is not one of",
        ),
    ],
)
def test_a_bad_account_names_the_field(tenants: list[Any], field: str, problem: str) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        account(tenants=tenants)

    assert raised.value.field == field
    assert problem in str(raised.value)


@pytest.mark.parametrize("value", [0, -1, True, "3600", 1.5])
def test_a_bad_longest_lifetime_is_refused(value: object) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        account(maxExpirySeconds=value)
    assert raised.value.field == "spec.maxExpirySeconds"


def test_cluster_ids_are_compared_without_case() -> None:
    upper = request(cluster_id=TEAM_A_CLUSTER.upper())

    assert decide(account(), upper, account_name="x") == Decision()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)
_FIELDS = st.sampled_from(
    [
        "namespaces",
        "namespaceSelector",
        "clusters",
        "all",
        "ids",
        "names",
        "tags",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    tenants=st.lists(st.dictionaries(_FIELDS, _JSON, max_size=4), max_size=4) | _JSON,
    max_expiry=_JSON,
    require=_JSON,
)
def test_any_account_body_is_an_account_or_a_clear_error(
    tenants: object, max_expiry: object, require: object
) -> None:
    """Fuzzed accounts: parsing gives an Account or names the field, never another exception,
    and a parsed account decides any request without raising."""
    body = {
        "spec": {
            "tokenSecretRef": {"name": "digitalocean-api"},
            "tenants": tenants,
            "maxExpirySeconds": max_expiry,
            "requireVerify": require,
        }
    }
    try:
        parsed = parse_account(body)
    except InvalidSpecError as exc:
        refused_field = exc.field
    else:
        refused_field = None
    if refused_field is not None:
        assert refused_field.startswith("spec")
        return
    decision = decide(parsed, request("team-a", namespace_labels={"team": "a"}), account_name="x")
    assert isinstance(decision, Decision)
