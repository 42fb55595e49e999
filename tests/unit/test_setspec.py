"""A DOClusterAccessSet spec becomes a frozen value; every bad field is refused by name."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from doks_access import setspec
from doks_access.setspec import Selector, SetDeletionPolicy, SetSpec, parse_set_spec, render
from doks_access.spec import InvalidSpecError, SecretKeyRef

PROD_ID = "bd5f5959-5e1e-4205-a714-a914373942af"
STAGING_ID = "0c1d2e3f-4a5b-4c6d-8e7f-901234567890"


@dataclasses.dataclass(frozen=True)
class FakeCluster:
    id: str = PROD_ID
    name: str = "prod-1"
    region: str = "nyc1"
    tags: tuple[str, ...] | None = ()
    state: str = "running"
    sso_required: bool = False


def body(
    *, selector: Any = None, template: Any = None, name: str = "fleet", **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ops"},
        "spec": {
            "tokenSecretRef": {"name": "do-token"},
            "selector": {"namePattern": "*"} if selector is None else selector,
            "template": {} if template is None else template,
            **spec,
        },
    }


def refused(document: dict[str, Any]) -> InvalidSpecError:
    with pytest.raises(InvalidSpecError) as raised:
        parse_set_spec(document)
    return raised.value


def selects(selector: dict[str, Any], cluster: FakeCluster) -> bool:
    return parse_set_spec(body(selector=selector)).selector.matches(cluster)


# --- defaults -----------------------------------------------------------------------------------


def test_applies_the_defaults_of_a_minimal_set() -> None:
    parsed = parse_set_spec(body())

    assert parsed.token_secret == SecretKeyRef(name="do-token", key="token")
    assert parsed.selector == Selector(name_pattern="*")
    assert parsed.resync_interval == datetime.timedelta(minutes=5)
    assert parsed.deletion_policy is SetDeletionPolicy.DELETE
    assert parsed.labels == {}
    assert parsed.annotations == {}
    assert parsed.template == {}


def test_keeps_the_given_interval_policy_and_template_metadata() -> None:
    parsed = parse_set_spec(
        body(
            resyncInterval="1h30m",
            deletionPolicy="Orphan",
            template={
                "metadata": {"labels": {"team": "a"}, "annotations": {"example.com/note": "x y"}},
                "spec": {"expirySeconds": 3600, "target": {"format": "Flux"}},
            },
        )
    )

    assert parsed.resync_interval == datetime.timedelta(hours=1, minutes=30)
    assert parsed.deletion_policy is SetDeletionPolicy.ORPHAN
    assert parsed.labels == {"team": "a"}
    assert parsed.annotations == {"example.com/note": "x y"}
    assert parsed.template == {"expirySeconds": 3600, "target": {"format": "Flux"}}


def test_the_template_is_a_fresh_copy_each_time_and_the_spec_compares_by_value() -> None:
    parsed = parse_set_spec(body(template={"spec": {"target": {"format": "Flux"}}}))

    parsed.template["target"]["format"] = "ArgoCD"

    assert parsed.template == {"target": {"format": "Flux"}}
    assert parsed == parse_set_spec(body(template={"spec": {"target": {"format": "Flux"}}}))


def test_the_minimum_interval_is_accepted() -> None:
    assert parse_set_spec(body(resyncInterval="1m")).resync_interval == setspec.MIN_RESYNC


# --- the selector -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cluster_tags", "selected"),
    [
        (("env:prod", "team-a"), True),
        (("env:prod", "team-a", "extra"), True),
        (("env:prod",), False),  # all of them, not any
        ((), False),
        (None, False),  # the token cannot see tags
    ],
)
def test_tags_select_clusters_holding_all_of_them(
    cluster_tags: tuple[str, ...] | None, selected: bool
) -> None:
    assert selects({"tags": ["env:prod", "team-a"]}, FakeCluster(tags=cluster_tags)) is selected


@pytest.mark.parametrize(("region", "selected"), [("nyc1", True), ("ams3", True), ("sfo3", False)])
def test_regions_select_clusters_in_any_of_them(region: str, selected: bool) -> None:
    assert selects({"regions": ["nyc1", "ams3"]}, FakeCluster(region=region)) is selected


def test_the_selector_knows_whether_it_needs_tags() -> None:
    assert parse_set_spec(body(selector={"tags": ["a"]})).selector.uses_tags
    assert not parse_set_spec(body(selector={"regions": ["nyc1"]})).selector.uses_tags


@pytest.mark.parametrize(
    ("pattern", "name", "selected"),
    [
        ("*", "anything", True),
        ("prod-*", "prod-1", True),
        ("prod-*", "staging-1", False),
        ("prod-?", "prod-1", True),
        ("prod-?", "prod-12", False),
        ("prod-[12]", "prod-2", True),
        ("prod-[12]", "prod-3", False),
        ("prod-[!12]", "prod-3", True),
        ("prod-[a-c]x", "prod-bx", True),
        ("Prod-*", "prod-1", False),  # case matters, on every platform
    ],
)
def test_a_name_pattern_is_a_shell_style_glob(pattern: str, name: str, selected: bool) -> None:
    assert selects({"namePattern": pattern}, FakeCluster(name=name)) is selected


@pytest.mark.parametrize(
    ("cluster", "selected"),
    [
        (FakeCluster(id=PROD_ID, name="renamed"), True),  # by ID
        (FakeCluster(id=STAGING_ID, name="staging"), True),  # by name
        (FakeCluster(id=STAGING_ID, name="other"), False),
    ],
)
def test_cluster_ids_and_names_select_members_of_either(
    cluster: FakeCluster, selected: bool
) -> None:
    selector = {"clusterIDs": [PROD_ID.upper()], "clusterNames": ["staging"]}

    assert selects(selector, cluster) is selected


def test_cluster_ids_are_kept_in_lower_case() -> None:
    parsed = parse_set_spec(body(selector={"clusterIDs": [PROD_ID.upper()]}))

    assert parsed.selector.cluster_ids == frozenset({PROD_ID})


def test_a_cluster_that_requires_sso_is_still_selected() -> None:
    # Selected, so that the set's status says why it gets no credential (the plan refuses it).
    assert selects({"namePattern": "*"}, FakeCluster(sso_required=True))


@pytest.mark.parametrize(
    ("cluster", "selected"),
    [
        (FakeCluster(name="prod-1", region="nyc1", tags=("env:prod",)), True),
        (FakeCluster(name="prod-1", region="sfo3", tags=("env:prod",)), False),
        (FakeCluster(name="dev-1", region="nyc1", tags=("env:prod",)), False),
        (FakeCluster(name="prod-1", region="nyc1", tags=()), False),
        (FakeCluster(id=STAGING_ID, name="prod-2", region="nyc1", tags=("env:prod",)), False),
    ],
)
def test_every_criterion_given_must_hold(cluster: FakeCluster, selected: bool) -> None:
    selector = {
        "tags": ["env:prod"],
        "regions": ["nyc1"],
        "namePattern": "prod-*",
        "clusterIDs": [PROD_ID],
    }

    assert selects(selector, cluster) is selected


@pytest.mark.parametrize("selector", [{}, None])
def test_refuses_an_empty_selector_rather_than_select_the_whole_account(selector: Any) -> None:
    document = body()
    document["spec"]["selector"] = selector

    error = refused(document)

    assert error.field == "spec.selector"
    assert "every cluster of the account" in error.problem
    assert 'namePattern "*"' in error.problem


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("prod-[12", "'[' that is never closed"),
        ("[a[b]", "'[' inside a [...] set"),
        ("prod *", "without spaces"),
        ("prod-\t*", "without spaces"),
        ("x" * 256, "at most 255"),
        ("", "not a non-empty string"),
        (7, "not a non-empty string"),
    ],
)
def test_refuses_an_invalid_name_pattern(pattern: Any, problem: str) -> None:
    error = refused(body(selector={"namePattern": pattern}))

    assert error.field == "spec.selector.namePattern"
    assert problem in error.problem


@pytest.mark.parametrize(
    "ids", [["prod-cluster"], [PROD_ID, "x"], [PROD_ID.replace("-", "")], [f" {PROD_ID}"]]
)
def test_refuses_cluster_ids_that_are_not_uuids(ids: list[str]) -> None:
    error = refused(body(selector={"clusterIDs": ids}))

    assert error.field == "spec.selector.clusterIDs"
    assert "is not a UUID" in error.problem


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("tags", [], "not a non-empty list"),
        ("tags", "env:prod", "not a non-empty list"),
        ("tags", ["ok", ""], "non-empty strings"),
        ("tags", [f"t{i}" for i in range(33)], "more than 32"),
        ("regions", [3], "non-empty strings"),
        ("clusterNames", {"a": 1}, "not a non-empty list"),
        ("clusterIDs", [], "not a non-empty list"),
    ],
)
def test_refuses_selector_lists_of_the_wrong_shape(field: str, value: Any, problem: str) -> None:
    error = refused(body(selector={field: value}))

    assert error.field == f"spec.selector.{field}"
    assert problem in error.problem


def test_refuses_a_selector_that_is_not_an_object() -> None:
    assert refused(body(selector=["prod"])).field == "spec.selector"


# --- the template -------------------------------------------------------------------------------


def test_renders_every_placeholder_in_the_target_name_labels_and_annotations() -> None:
    parsed = parse_set_spec(
        body(
            template={
                "spec": {
                    "expirySeconds": 86400,
                    "target": {
                        "name": "$(set.name)-$(cluster.name)-$(cluster.shortID)",
                        "format": "ArgoCD",
                        "labels": {"region": "$(cluster.region)", "fixed": "yes"},
                        "annotations": {"example.com/id": "id=$(cluster.id)"},
                    },
                }
            }
        )
    )

    child = setspec.render(parsed, FakeCluster(), set_name="fleet")

    assert child == {
        "clusterID": PROD_ID,
        "tokenSecretRef": {"name": "do-token", "key": "token"},
        "expirySeconds": 86400,
        "target": {
            "name": "fleet-prod-1-bd5f5959",
            "format": "ArgoCD",
            "labels": {"region": "nyc1", "fixed": "yes"},
            "annotations": {"example.com/id": f"id={PROD_ID}"},
        },
    }


def test_renders_no_target_name_when_the_template_gives_none() -> None:
    parsed = parse_set_spec(body(template={"spec": {"target": {"format": "Flux"}}}))

    child = setspec.render(parsed, FakeCluster(), set_name="fleet")

    assert child["target"] == {"format": "Flux"}  # the child's default name applies


def test_leaves_placeholders_alone_outside_the_target_name_labels_and_annotations() -> None:
    parsed = parse_set_spec(
        body(template={"metadata": {"annotations": {"example.com/n": "$(cluster.name)"}}})
    )

    assert parsed.annotations == {"example.com/n": "$(cluster.name)"}


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"name": "$(cluster.nmae)-kubeconfig"}, "spec.template.spec.target.name"),
        ({"name": "$()"}, "spec.template.spec.target.name"),
        ({"labels": {"who": "$(cluster.owner)"}}, "spec.template.spec.target.labels[who]"),
        (
            {"annotations": {"example.com/a": "$(set.namespace)"}},
            "spec.template.spec.target.annotations[example.com/a]",
        ),
    ],
)
def test_refuses_an_unknown_placeholder_naming_where_it_is(
    target: dict[str, Any], field: str
) -> None:
    error = refused(body(template={"spec": {"target": target}}))

    assert error.field == field
    assert "unknown placeholder" in error.problem
    assert "$(cluster.shortID)" in error.problem  # the known ones are listed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clusterID", PROD_ID),
        ("clusterName", "prod-1"),
        ("tokenSecretRef", {"name": "other"}),
    ],
)
def test_refuses_a_template_that_sets_what_the_set_fills_in(field: str, value: Any) -> None:
    error = refused(body(template={"spec": {field: value}}))

    assert error.field == f"spec.template.spec.{field}"
    assert "filled in by the set" in error.problem


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"name": "Prod-Kubeconfig"}, "spec.template.spec.target.name"),
        ({"name": "$(cluster.name)_kubeconfig"}, "spec.template.spec.target.name"),
        ({"name": "x" * 254}, "spec.template.spec.target.name"),
        ({"format": "Helm"}, "spec.template.spec.target.format"),
        ({"format": "Flux", "key": "value"}, "spec.template.spec.target.key"),
        ({"labels": {"bad key!": "x"}}, "spec.template.spec.target.labels[bad key!]"),
        ("a string", "spec.template.spec.target"),
    ],
)
def test_refuses_a_template_that_can_work_for_no_cluster_at_set_level(
    target: Any, field: str
) -> None:
    error = refused(body(template={"spec": {"target": target}}))

    assert error.field == field


def test_refuses_a_template_with_a_bad_expiry_at_set_level() -> None:
    error = refused(body(template={"spec": {"expirySeconds": -1}}))

    assert error.field == "spec.template.spec.expirySeconds"


def test_accepts_a_long_set_name_whose_children_get_default_target_names() -> None:
    # A child's name is cut to leave room for "-kubeconfig" (child_name); so is the example's.
    parsed = parse_set_spec(body(name="f" * 253))

    assert isinstance(parsed, SetSpec)


def test_refuses_cluster_api_children_whose_default_names_are_too_long_for_a_label() -> None:
    error = refused(body(name="f" * 60, template={"spec": {"target": {"format": "ClusterAPI"}}}))

    assert error.field == "spec.template.spec.target.name"
    assert "valid label value" in error.problem


def test_refuses_a_set_name_placeholder_that_makes_every_target_name_too_long() -> None:
    error = refused(body(name="f" * 252, template={"spec": {"target": {"name": "$(set.name)-x"}}}))

    assert error.field == "spec.template.spec.target.name"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"labels": {"team": "not a label value"}}, "spec.template.metadata.labels[team]"),
        ({"labels": {"-bad": "x"}}, "spec.template.metadata.labels[-bad]"),
        ({"labels": {"team": 3}}, "spec.template.metadata.labels"),
        ({"labels": ["team"]}, "spec.template.metadata.labels"),
        ({"annotations": {"a/b/c": "x"}}, "spec.template.metadata.annotations[a/b/c]"),
        ("labels", "spec.template.metadata"),
    ],
)
def test_refuses_bad_labels_and_annotations_for_the_children(metadata: Any, field: str) -> None:
    assert refused(body(template={"metadata": metadata})).field == field


def test_refuses_a_template_spec_that_is_not_an_object() -> None:
    assert refused(body(template={"spec": ["x"]})).field == "spec.template.spec"


# --- the rest of the spec -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("30s", "at least 1m"),
        ("59.9s", "at least 1m"),
        ("5 min", "not a duration"),
        (300, "string"),
    ],
)
def test_refuses_a_resync_interval_below_a_minute_or_not_a_duration(
    value: Any, problem: str
) -> None:
    error = refused(body(resyncInterval=value))

    assert error.field == "spec.resyncInterval"
    assert problem in error.problem


@pytest.mark.parametrize("policy", ["Retain", "delete", "", 1, ["Delete"]])
def test_refuses_a_deletion_policy_other_than_delete_or_orphan(policy: Any) -> None:
    error = refused(body(deletionPolicy=policy))

    assert error.field == "spec.deletionPolicy"
    assert error.problem == "is not Delete or Orphan"


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        (None, "spec"),  # neither a token Secret nor an account
        ("do-token", "spec.tokenSecretRef"),
        ({"name": "Bad_Name"}, "spec.tokenSecretRef.name"),
        ({"name": "do-token", "key": "bad key"}, "spec.tokenSecretRef.key"),
    ],
)
def test_refuses_a_bad_token_secret_ref(ref: Any, field: str) -> None:
    document = body()
    document["spec"]["tokenSecretRef"] = ref

    assert refused(document).field == field


def test_a_set_through_an_account_gives_its_children_the_account() -> None:
    document = body()
    del document["spec"]["tokenSecretRef"]
    document["spec"]["accountRef"] = {"name": "company"}

    parsed = parse_set_spec(document)

    assert (parsed.account, parsed.token_secret) == ("company", None)
    child = render(parsed, FakeCluster(), set_name="fleet")
    assert child["accountRef"] == {"name": "company"}
    assert "tokenSecretRef" not in child


def test_a_set_with_both_a_token_secret_and_an_account_is_refused() -> None:
    document = body()
    document["spec"]["accountRef"] = {"name": "company"}

    assert refused(document).field == "spec"


def test_a_template_cannot_name_an_account_either() -> None:
    document = body()
    document["spec"]["template"] = {"spec": {"accountRef": {"name": "other"}}}

    assert "accountRef" in str(refused(document))


def test_keeps_the_token_secret_key_when_given() -> None:
    document = body()
    document["spec"]["tokenSecretRef"] = {"name": "do-token", "key": "api"}

    assert parse_set_spec(document).token_secret == SecretKeyRef(name="do-token", key="api")


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"metadata": {"name": "fleet"}}, "spec"),
        ({"metadata": {"name": "fleet"}, "spec": "x"}, "spec"),
        ({"metadata": {}, "spec": {}}, "metadata.name"),
    ],
)
def test_refuses_a_body_without_a_name_or_spec(document: dict[str, Any], field: str) -> None:
    assert refused(document).field == field
