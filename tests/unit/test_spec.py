"""A DOClusterAccess body becomes a typed spec, or one InvalidSpecError naming the bad field."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from doks_access.spec import (
    AccessSpec,
    DeletionPolicy,
    Format,
    InvalidSpecError,
    SecretKeyRef,
    cluster_api_name,
    parse_duration,
    parse_spec,
)

CLUSTER_ID = "bd5f5959-5e1e-4205-a714-a914373942af"


def make_body(**spec: Any) -> dict[str, Any]:
    """A minimal valid body, with ``spec`` fields added or replaced (None removes one)."""
    body: dict[str, Any] = {
        "apiVersion": "doks-access.dev/v1alpha1",
        "kind": "DOClusterAccess",
        "metadata": {"name": "prod", "namespace": "platform", "generation": 1},
        "spec": {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "digitalocean-api"}},
    }
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


def parse(**spec: Any) -> AccessSpec:
    return parse_spec(make_body(**spec))


# --- what is accepted ---------------------------------------------------------------------------


def test_parses_every_field_of_a_full_spec() -> None:
    spec = parse(
        expirySeconds=86400,
        tokenSecretRef={"name": "do-token", "key": "api-token"},
        target={
            "name": "prod-access",
            "format": "Kubeconfig",
            "key": "config",
            "labels": {"team": "platform"},
            "annotations": {"example.com/owner": "Platform team"},
            "deletionPolicy": "Retain",
            "adopt": True,
        },
        renewBefore="2h",
        verify=True,
        suspend=True,
    )

    assert spec.cluster_id == CLUSTER_ID
    assert spec.cluster_name is None
    assert spec.expiry_seconds == 86400
    assert spec.token_secret == SecretKeyRef(name="do-token", key="api-token")
    assert spec.target.name == "prod-access"
    assert spec.target.format is Format.KUBECONFIG
    assert spec.target.key == "config"
    assert dict(spec.target.labels) == {"team": "platform"}
    assert dict(spec.target.annotations) == {"example.com/owner": "Platform team"}
    assert spec.target.deletion_policy is DeletionPolicy.RETAIN
    assert spec.target.adopt is True
    assert spec.renew_before == datetime.timedelta(hours=2)
    assert spec.verify is True
    assert spec.suspend is True


def test_applies_the_crd_defaults_to_an_object_that_predates_them() -> None:
    spec = parse()

    assert spec.expiry_seconds is None
    assert spec.token_secret == SecretKeyRef(name="digitalocean-api", key="token")
    assert spec.target.name == "prod-kubeconfig"
    assert spec.target.format is Format.KUBECONFIG
    assert spec.target.key == "kubeconfig"
    assert dict(spec.target.labels) == {}
    assert dict(spec.target.annotations) == {}
    assert spec.target.deletion_policy is DeletionPolicy.DELETE
    assert spec.target.adopt is False
    assert spec.renew_before is None
    assert spec.verify is False
    assert spec.suspend is False


def test_accepts_a_cluster_name_instead_of_an_id() -> None:
    spec = parse(clusterID=None, clusterName="prod-cluster-01")

    assert spec.cluster_id is None
    assert spec.cluster_name == "prod-cluster-01"


def test_takes_the_largest_expiry_digitalocean_reads() -> None:
    assert parse(expirySeconds=2**31 - 1).expiry_seconds == 2_147_483_647


def test_takes_an_expiry_of_zero_as_the_api_default() -> None:
    assert parse(expirySeconds=0).expiry_seconds is None


@pytest.mark.parametrize(
    ("target_format", "key"),
    [(Format.FLUX, "value"), (Format.CLUSTER_API, "value"), (Format.ARGO_CD, None)],
)
def test_gives_each_format_its_fixed_data_key(target_format: Format, key: str | None) -> None:
    spec = parse(target={"format": target_format.value})

    assert spec.target.format is target_format
    assert spec.target.key == key


def test_labels_of_a_parsed_spec_cannot_be_changed_behind_its_back() -> None:
    spec = parse(target={"labels": {"team": "platform"}})

    with pytest.raises(TypeError):
        spec.target.labels["team"] = "other"  # type: ignore[index]


def test_parsing_does_not_change_the_body() -> None:
    body = make_body(target={"labels": {"team": "platform"}})
    before = copy.deepcopy(body)

    parse_spec(body)

    assert body == before


# --- what is refused ----------------------------------------------------------------------------

INVALID_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"clusterName": "prod"}, "spec"),
    ({"clusterID": None}, "spec"),
    ({"clusterID": "prod"}, "spec.clusterID"),
    ({"clusterID": 42}, "spec.clusterID"),
    ({"clusterID": None, "clusterName": ""}, "spec.clusterName"),
    ({"clusterID": None, "clusterName": "x" * 256}, "spec.clusterName"),
    ({"expirySeconds": -1}, "spec.expirySeconds"),
    ({"expirySeconds": True}, "spec.expirySeconds"),
    ({"expirySeconds": "3600"}, "spec.expirySeconds"),
    ({"expirySeconds": 10**12}, "spec.expirySeconds"),
    ({"expirySeconds": 2**31}, "spec.expirySeconds"),  # DigitalOcean reads an int32
    ({"tokenSecretRef": None}, "spec"),  # neither a token Secret nor an account
    ({"accountRef": {"name": "shared"}}, "spec"),  # both
    ({"tokenSecretRef": None, "accountRef": {}}, "spec.accountRef.name"),
    ({"tokenSecretRef": None, "accountRef": {"name": "Not_A_Name"}}, "spec.accountRef.name"),
    ({"tokenSecretRef": "digitalocean-api"}, "spec.tokenSecretRef"),
    ({"tokenSecretRef": {}}, "spec.tokenSecretRef.name"),
    ({"tokenSecretRef": {"name": "Not_A_Name"}}, "spec.tokenSecretRef.name"),
    ({"tokenSecretRef": {"name": "do", "key": "a key"}}, "spec.tokenSecretRef.key"),
    ({"target": []}, "spec.target"),
    ({"target": {"name": "UPPER"}}, "spec.target.name"),
    ({"target": {"name": "x" * 254}}, "spec.target.name"),
    ({"target": {"format": "Helm"}}, "spec.target.format"),
    ({"target": {"format": "Flux", "key": "kubeconfig"}}, "spec.target.key"),
    ({"target": {"key": "a/b"}}, "spec.target.key"),
    ({"target": {"labels": ["team"]}}, "spec.target.labels"),
    ({"target": {"labels": {"team": 1}}}, "spec.target.labels"),
    ({"target": {"labels": {"bad key!": "x"}}}, "spec.target.labels[bad key!]"),
    ({"target": {"labels": {"/team": "x"}}}, "spec.target.labels[/team]"),
    ({"target": {"labels": {"team": "x" * 64}}}, "spec.target.labels[team]"),
    ({"target": {"labels": {"team": "-x"}}}, "spec.target.labels[team]"),
    ({"target": {"annotations": {"Example.com/x": "y"}}}, "spec.target.annotations[Example.com/x]"),
    ({"target": {"deletionPolicy": "Orphan"}}, "spec.target.deletionPolicy"),
    ({"target": {"adopt": "yes"}}, "spec.target.adopt"),
    ({"target": {"format": "ClusterAPI", "name": "c" * 64}}, "spec.target.name"),
    ({"renewBefore": "2 hours"}, "spec.renewBefore"),
    ({"renewBefore": 7200}, "spec.renewBefore"),
    ({"renewBefore": "0s"}, "spec.renewBefore"),
    ({"renewBefore": "1000000h"}, "spec.renewBefore"),
    ({"verify": "true"}, "spec.verify"),
    ({"suspend": 1}, "spec.suspend"),
]


@pytest.mark.parametrize(("spec", "field"), INVALID_SPECS)
def test_refuses_an_invalid_spec_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse(**spec)

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_refuses_a_body_without_a_spec() -> None:
    body = make_body()
    del body["spec"]

    with pytest.raises(InvalidSpecError, match=r"^spec: is missing$"):
        parse_spec(body)


def test_refuses_a_body_without_a_name() -> None:
    body = make_body()
    del body["metadata"]["name"]

    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(body)

    assert caught.value.field == "metadata.name"


def test_refuses_a_default_target_name_that_would_be_too_long_for_a_secret() -> None:
    body = make_body()
    body["metadata"]["name"] = "x" * 250

    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(body)

    assert caught.value.field == "spec.target.name"


def test_accepts_a_long_cluster_api_target_whose_cluster_name_fits_a_label() -> None:
    name = "c" * 63 + "-kubeconfig"

    assert parse(target={"format": "ClusterAPI", "name": name}).target.name == name


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", datetime.timedelta(hours=2)),
        ("90m", datetime.timedelta(minutes=90)),
        ("1h30m", datetime.timedelta(hours=1, minutes=30)),
        ("1.5h", datetime.timedelta(hours=1, minutes=30)),
        ("500ms", datetime.timedelta(milliseconds=500)),
        ("45s", datetime.timedelta(seconds=45)),
        ("1h0m0.25s", datetime.timedelta(hours=1, milliseconds=250)),
        ("2m2m", datetime.timedelta(minutes=4)),
        ("0.0015ms", datetime.timedelta(microseconds=1)),
    ],
)
def test_reads_go_style_durations(text: str, expected: datetime.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "1d", "-1h", "1.h", ".5h", "2H", " 2h", "1us"])
def test_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_refuses_a_duration_of_more_than_a_century() -> None:
    with pytest.raises(ValueError, match="longer than"):
        parse_duration("876601h")


# --- the spec hash ------------------------------------------------------------------------------


def test_the_spec_hash_is_stable_across_releases() -> None:
    # It is stored on every Secret: if it changed, an upgrade would re-fetch every credential.
    # The value is the first 16 hex digits of the SHA-256 of the canonical JSON
    # {"clusterID":"bd5f…","clusterName":null,"expirySeconds":null,"format":"Kubeconfig",
    #  "key":"kubeconfig","tokenSecretRef":["digitalocean-api","token"],"version":1}.
    assert parse().credential_hash() == "4b22b8d3baac9314"


@pytest.mark.parametrize(
    "change",
    [
        {"clusterID": "00000000-0000-4000-8000-000000000001"},
        {"clusterID": None, "clusterName": "prod"},
        {"expirySeconds": 3600},
        {"tokenSecretRef": {"name": "other-token"}},
        {"tokenSecretRef": {"name": "digitalocean-api", "key": "other"}},
        {"target": {"format": "Flux"}},
        {"target": {"format": "ArgoCD"}},
        {"target": {"key": "config"}},
    ],
)
def test_the_spec_hash_changes_with_what_shapes_the_credential(change: dict[str, Any]) -> None:
    assert parse(**change).credential_hash() != parse().credential_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"expirySeconds": 0},
        {"target": {"labels": {"team": "platform"}}},
        {"target": {"annotations": {"example.com/x": "y"}}},
        {"target": {"deletionPolicy": "Retain"}},
        {"target": {"adopt": True}},
        {"target": {"name": "elsewhere"}},
        {"renewBefore": "2h"},
        {"verify": True},
        {"suspend": True},
    ],
)
def test_the_spec_hash_ignores_what_needs_no_new_credential(change: dict[str, Any]) -> None:
    assert parse(**change).credential_hash() == parse().credential_hash()


# --- Cluster API naming -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_name", "cluster"),
    [("prod-kubeconfig", "prod"), ("prod", "prod"), ("-kubeconfig", "-kubeconfig")],
)
def test_the_cluster_api_name_is_the_target_name_without_its_suffix(
    target_name: str, cluster: str
) -> None:
    assert cluster_api_name(target_name) == cluster


def test_an_account_instead_of_a_token_secret_shapes_the_credential() -> None:
    body = {
        "metadata": {"name": "prod", "namespace": "team-a"},
        "spec": {"clusterID": "bd5f5959-5e1e-4205-a714-a914373942af", "accountRef": {"name": "a"}},
    }
    parsed = parse_spec(body)
    other = parse_spec({**body, "spec": {**body["spec"], "accountRef": {"name": "b"}}})

    assert (parsed.account, parsed.token_secret) == ("a", None)
    assert parsed.credential_hash() != other.credential_hash()
