"""The target Secret: each consumer's shape, what is read back from it, and whose it is.

The expected Secret of every format and kind of credential is a golden file in ``golden/``, with
the data values shown decoded so that a reviewer can read them. The tests never rewrite them on
their own: ``DOKS_ACCESS_UPDATE_GOLDEN=1`` does, and the diff is then reviewed like code.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from doks_access import bookkeeping
from doks_access.bookkeeping import ObservedSecret
from doks_access.kubeconfig import AuthKind, Credential, parse_kubeconfig
from doks_access.rendering import (
    Owner,
    Ownership,
    SecretManifest,
    WriteAction,
    content_matches,
    held_credential,
    merge_onto,
    observe_secret,
    ownership,
    reapply_metadata,
    render_secret,
    write_for,
)
from doks_access.spec import AccessSpec, Format, parse_spec

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("DOKS_ACCESS_UPDATE_GOLDEN") == "1"
GOLDEN_HEADER = (
    "# Expected target Secret; `data` values are shown decoded (the manifest has them in base64).\n"
    "# Regenerate with DOKS_ACCESS_UPDATE_GOLDEN=1 and review the diff.\n"
)

CLUSTER_ID = "bd5f5959-5e1e-4205-a714-a914373942af"
SERVER = f"https://{CLUSTER_ID}.k8s.ondigitalocean.com"
ISSUED = datetime.datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=datetime.UTC)
EXPIRES = ISSUED + datetime.timedelta(days=7)
OWNER = Owner(namespace="platform", name="prod", uid="6f1c9a0e-5b7d-4c1e-9f0a-7d2b3c4d5e6f")
TOKEN = "SECRET-KUBECONFIG-TOKEN-93b1d7e2"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nQ0EgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
CLIENT_CERTIFICATE_PEM = (
    b"-----BEGIN CERTIFICATE-----\nY2xpZW50IGNlcnRpZmljYXRl\n-----END CERTIFICATE-----\n"
)
CLIENT_KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nY2xpZW50IGtleQ==\n-----END PRIVATE KEY-----\n"


def kubeconfig_text(user: dict[str, str]) -> bytes:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "do-nyc1-prod",
                "cluster": {
                    "server": SERVER,
                    "certificate-authority-data": base64.b64encode(CA_PEM).decode(),
                },
            }
        ],
        "contexts": [
            {"name": "do-nyc1-prod", "context": {"cluster": "do-nyc1-prod", "user": "admin"}}
        ],
        "current-context": "do-nyc1-prod",
        "users": [{"name": "admin", "user": user}],
    }
    return yaml.safe_dump(document, sort_keys=False).encode("utf-8")


def make_credential(auth_kind: AuthKind = AuthKind.TOKEN) -> Credential:
    """A credential as the kubeconfig validator returns it; the PEMs are stand-ins."""
    if auth_kind is AuthKind.TOKEN:
        raw = kubeconfig_text({"token": TOKEN})
        token, certificate, key = TOKEN, None, None
    else:
        raw = kubeconfig_text(
            {
                "client-certificate-data": base64.b64encode(CLIENT_CERTIFICATE_PEM).decode(),
                "client-key-data": base64.b64encode(CLIENT_KEY_PEM).decode(),
            }
        )
        token, certificate, key = None, CLIENT_CERTIFICATE_PEM, CLIENT_KEY_PEM
    return Credential(
        raw=raw,
        server=SERVER,
        ca_pem=CA_PEM,
        auth_kind=auth_kind,
        token=token,
        client_certificate_pem=certificate,
        client_key_pem=key,
        cluster_name="do-nyc1-prod",
        context_name="do-nyc1-prod",
        user_name="admin",
        issued_at=ISSUED,
        expires_at=EXPIRES,
    )


def make_spec(**target: Any) -> AccessSpec:
    body = {
        "metadata": {"name": "prod", "namespace": "platform"},
        "spec": {
            "clusterID": CLUSTER_ID,
            "tokenSecretRef": {"name": "digitalocean-api"},
            "target": target,
        },
    }
    return parse_spec(body)


def render(
    spec: AccessSpec | None = None,
    *,
    credential: Credential | None = None,
    refresh_request: str | None = None,
) -> SecretManifest:
    return render_secret(
        credential=credential or make_credential(),
        spec=spec or make_spec(),
        owner=OWNER,
        cluster_id=CLUSTER_ID,
        refresh_request=refresh_request,
    )


def decoded(manifest: SecretManifest | dict[str, Any], key: str) -> str:
    data: dict[str, str] = manifest["data"]
    return base64.b64decode(data[key]).decode("utf-8")


def as_stored(manifest: SecretManifest) -> dict[str, Any]:
    """``manifest`` as the API server returns it after a create."""
    stored: dict[str, Any] = copy.deepcopy(dict(manifest))
    stored["metadata"].update(
        uid="0b7c1a2d-0000-4000-8000-000000000009",
        resourceVersion="4711",
        creationTimestamp="2030-01-01T12:00:01Z",
        managedFields=[{"manager": "doks-access-operator", "operation": "Update"}],
    )
    return stored


# --- each consumer's shape ----------------------------------------------------------------------


class _GoldenDumper(yaml.SafeDumper):
    """Writes multi-line strings (kubeconfigs) as literal blocks, the way people read them."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_GoldenDumper.add_representer(str, _represent_text)


def readable(manifest: SecretManifest) -> dict[str, Any]:
    copied: dict[str, Any] = copy.deepcopy(dict(manifest))
    copied["data"] = {key: decoded(manifest, key) for key in manifest["data"]}
    return copied


@pytest.mark.parametrize("auth_kind", list(AuthKind), ids=lambda kind: kind.value)
@pytest.mark.parametrize("target_format", list(Format), ids=lambda kind: kind.value)
def test_renders_each_format_as_its_golden_secret(
    target_format: Format, auth_kind: AuthKind
) -> None:
    spec = make_spec(
        format=target_format.value,
        labels={"team": "platform"},
        annotations={"example.com/contact": "platform@example.com"},
    )
    manifest = render(spec, credential=make_credential(auth_kind), refresh_request="2030-01-01")
    path = GOLDEN_DIR / f"{target_format.value.lower()}-{auth_kind.value}.yaml"
    if UPDATE_GOLDEN:
        text = yaml.dump(readable(manifest), Dumper=_GoldenDumper, sort_keys=False, width=100)
        path.write_text(GOLDEN_HEADER + text, encoding="utf-8")

    assert readable(manifest) == yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_kubeconfig_format_carries_the_validated_kubeconfig_byte_for_byte() -> None:
    credential = make_credential()

    manifest = render(make_spec(key="config"), credential=credential)

    assert list(manifest["data"]) == ["config"]
    assert base64.b64decode(manifest["data"]["config"]) == credential.raw
    assert manifest["type"] == "Opaque"


def test_the_flux_format_carries_the_kubeconfig_under_value() -> None:
    manifest = render(make_spec(format="Flux"))

    assert list(manifest["data"]) == ["value"]
    assert base64.b64decode(manifest["data"]["value"]) == make_credential().raw
    assert manifest["type"] == "Opaque"


def test_the_cluster_api_format_follows_the_cluster_api_secret_contract() -> None:
    manifest = render(make_spec(format="ClusterAPI", name="workload-1-kubeconfig"))

    assert manifest["type"] == "cluster.x-k8s.io/secret"
    assert list(manifest["data"]) == ["value"]
    assert manifest["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "workload-1"


def test_the_cluster_api_label_is_the_whole_target_name_without_the_suffix() -> None:
    manifest = render(make_spec(format="ClusterAPI", name="workload-1"))

    assert manifest["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "workload-1"


def test_the_argo_cd_format_gives_a_bearer_token_and_the_pinned_ca() -> None:
    manifest = render(make_spec(format="ArgoCD"))

    config = json.loads(decoded(manifest, "config"))
    assert sorted(manifest["data"]) == ["config", "name", "server"]
    assert decoded(manifest, "name") == "prod"
    assert decoded(manifest, "server") == SERVER
    assert config == {
        "bearerToken": TOKEN,
        "tlsClientConfig": {"caData": base64.b64encode(CA_PEM).decode()},
    }
    assert manifest["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "cluster"


def test_the_argo_cd_format_gives_a_client_certificate_without_a_token() -> None:
    manifest = render(
        make_spec(format="ArgoCD"), credential=make_credential(AuthKind.CLIENT_CERTIFICATE)
    )

    config = json.loads(decoded(manifest, "config"))
    assert config == {
        "tlsClientConfig": {
            "caData": base64.b64encode(CA_PEM).decode(),
            "certData": base64.b64encode(CLIENT_CERTIFICATE_PEM).decode(),
            "keyData": base64.b64encode(CLIENT_KEY_PEM).decode(),
        }
    }


# --- metadata -----------------------------------------------------------------------------------


def test_is_owned_by_its_doclusteraccess_with_deletion_policy_delete() -> None:
    manifest = render()

    assert manifest["metadata"]["name"] == "prod-kubeconfig"
    assert manifest["metadata"]["namespace"] == "platform"
    assert manifest["metadata"].get("ownerReferences") == [
        {
            "apiVersion": "doks-access.dev/v1alpha1",
            "kind": "DOClusterAccess",
            "name": "prod",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]


def test_has_no_owner_reference_with_deletion_policy_retain() -> None:
    manifest = render(make_spec(deletionPolicy="Retain"))

    assert "ownerReferences" not in manifest["metadata"]
    assert manifest["metadata"]["annotations"][bookkeeping.OWNER] == "platform/prod"


def test_records_the_credential_on_the_secret() -> None:
    spec = make_spec()

    notes = render(spec)["metadata"]["annotations"]

    assert notes[bookkeeping.ISSUED_AT] == "2030-01-01T12:00:00Z"
    assert notes[bookkeeping.EXPIRES_AT] == "2030-01-08T12:00:00Z"
    assert notes[bookkeeping.CLUSTER_ID] == CLUSTER_ID
    assert notes[bookkeeping.SPEC_HASH] == spec.credential_hash()
    assert notes[bookkeeping.OWNER] == "platform/prod"
    assert bookkeeping.HANDLED_REFRESH_REQUEST not in notes


def test_records_the_refresh_request_the_credential_answers() -> None:
    notes = render(refresh_request="2030-01-01T11:59:00Z")["metadata"]["annotations"]

    assert notes[bookkeeping.HANDLED_REFRESH_REQUEST] == "2030-01-01T11:59:00Z"


def test_merges_users_labels_and_annotations_without_letting_them_override_ours() -> None:
    spec = make_spec(
        format="ArgoCD",
        labels={
            "team": "platform",
            "app.kubernetes.io/managed-by": "helm",
            "argocd.argoproj.io/secret-type": "repository",
        },
        annotations={
            "example.com/contact": "platform",
            "doks-access.dev/owner": "platform/someone-else",
            "doks-access.dev/expires-at": "2099-01-01T00:00:00Z",
            "doks-access.dev/anything": "x",
        },
    )

    metadata = render(spec)["metadata"]

    assert metadata["labels"] == {
        "team": "platform",
        "app.kubernetes.io/managed-by": "doks-access-operator",
        "argocd.argoproj.io/secret-type": "cluster",
    }
    notes = metadata["annotations"]
    assert notes["example.com/contact"] == "platform"
    assert notes[bookkeeping.OWNER] == "platform/prod"
    assert notes[bookkeeping.EXPIRES_AT] == "2030-01-08T12:00:00Z"
    assert "doks-access.dev/anything" not in notes


@pytest.mark.parametrize("auth_kind", list(AuthKind), ids=lambda kind: kind.value)
def test_keeps_credential_material_out_of_the_metadata(auth_kind: AuthKind) -> None:
    credential = make_credential(auth_kind)

    metadata = json.dumps(render(make_spec(format="ArgoCD"), credential=credential)["metadata"])

    assert TOKEN not in metadata
    assert base64.b64encode(CLIENT_KEY_PEM).decode() not in metadata


# --- reading the Secret back --------------------------------------------------------------------


def test_reads_back_what_it_wrote() -> None:
    spec = make_spec()
    stored = as_stored(render(spec, refresh_request="again"))

    assert observe_secret(stored, owner=OWNER) == ObservedSecret(
        issued_at=ISSUED.replace(microsecond=0),
        expires_at=EXPIRES.replace(microsecond=0),
        cluster_id=CLUSTER_ID,
        spec_hash=spec.credential_hash(),
        handled_refresh_request="again",
    )


def test_reads_an_expiry_no_later_than_the_real_one() -> None:
    observation = observe_secret(as_stored(render()), owner=OWNER)

    assert observation is not None
    assert observation.expires_at <= EXPIRES


def test_reads_nothing_from_a_missing_secret() -> None:
    assert observe_secret(None, owner=OWNER) is None


def test_reads_nothing_from_another_objects_secret() -> None:
    other = Owner(namespace="platform", name="staging", uid="another-uid")

    assert observe_secret(as_stored(render()), owner=other) is None


def test_still_trusts_a_secret_that_users_added_keys_and_labels_to() -> None:
    stored = as_stored(render())
    stored["data"]["notes"] = base64.b64encode(b"added by hand").decode()
    stored["metadata"]["labels"]["reconcile.fluxcd.io/watch"] = "Enabled"

    assert observe_secret(stored, owner=OWNER) is not None


def edit_data(stored: dict[str, Any]) -> None:
    stored["data"]["kubeconfig"] = base64.b64encode(b"apiVersion: v1\n").decode()


def delete_data(stored: dict[str, Any]) -> None:
    del stored["data"]["kubeconfig"]


def delete_all_data(stored: dict[str, Any]) -> None:
    del stored["data"]


def forget(annotation: str) -> Any:
    def edit(stored: dict[str, Any]) -> None:
        del stored["metadata"]["annotations"][annotation]

    return edit


def garble(annotation: str) -> Any:
    def edit(stored: dict[str, Any]) -> None:
        stored["metadata"]["annotations"][annotation] = "garbled"

    return edit


def swap_times(stored: dict[str, Any]) -> None:
    notes = stored["metadata"]["annotations"]
    notes[bookkeeping.ISSUED_AT], notes[bookkeeping.EXPIRES_AT] = (
        notes[bookkeeping.EXPIRES_AT],
        notes[bookkeeping.ISSUED_AT],
    )


@pytest.mark.parametrize(
    "tamper",
    [
        edit_data,
        delete_data,
        delete_all_data,
        forget(bookkeeping.CONTENT_HASH),
        forget(bookkeeping.MANAGED_KEYS),
        forget(bookkeeping.ISSUED_AT),
        forget(bookkeeping.EXPIRES_AT),
        forget(bookkeeping.CLUSTER_ID),
        forget(bookkeeping.SPEC_HASH),
        garble(bookkeeping.EXPIRES_AT),
        garble(bookkeeping.MANAGED_KEYS),
        garble(bookkeeping.CONTENT_HASH),
        swap_times,
    ],
    ids=lambda tamper: getattr(tamper, "__name__", "edit"),
)
def test_distrusts_a_secret_whose_content_or_bookkeeping_changed(tamper: Any) -> None:
    stored = as_stored(render())

    tamper(stored)

    assert observe_secret(stored, owner=OWNER) is None


def test_content_matches_when_our_keys_hold_the_desired_values() -> None:
    desired = render()
    existing = {**desired["data"], "notes": "YWRkZWQ="}

    assert content_matches(existing, desired)


def test_content_does_not_match_when_a_key_is_changed_or_gone() -> None:
    desired = render()

    assert not content_matches({"kubeconfig": "YXBpVmVyc2lvbjogdjEK"}, desired)
    assert not content_matches({}, desired)


# --- ownership ----------------------------------------------------------------------------------


def foreign_secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "prod-kubeconfig", "namespace": "platform", "resourceVersion": "7"},
        "type": "Opaque",
        "data": {"kubeconfig": "aGFuZC1tYWRl"},
    }


def test_an_absent_secret_is_ours_to_create() -> None:
    assert ownership(existing=None, owner=OWNER, adopt=False) is Ownership.ABSENT


def test_a_secret_with_our_owner_annotation_is_ours() -> None:
    assert ownership(existing=as_stored(render()), owner=OWNER, adopt=False) is Ownership.OURS


def test_a_secret_nobody_manages_is_a_conflict_unless_adopted() -> None:
    assert ownership(existing=foreign_secret(), owner=OWNER, adopt=False) is Ownership.FOREIGN
    assert ownership(existing=foreign_secret(), owner=OWNER, adopt=True) is Ownership.ADOPTABLE
    assert Ownership.FOREIGN.is_conflict
    assert not Ownership.ADOPTABLE.is_conflict


def test_a_secret_another_doclusteraccess_writes_is_a_conflict_even_with_adopt() -> None:
    other = Owner(namespace="platform", name="staging", uid="another-uid")
    theirs = as_stored(render(make_spec(), credential=make_credential()))
    theirs["metadata"]["annotations"][bookkeeping.OWNER] = "platform/staging"

    verdict = ownership(existing=theirs, owner=OWNER, adopt=True)

    assert verdict is Ownership.OWNED_BY_OTHER
    assert verdict.is_conflict
    assert ownership(existing=theirs, owner=other, adopt=False) is Ownership.OURS


def test_a_secret_of_a_namesake_in_another_namespace_is_not_ours() -> None:
    copied = as_stored(render())
    elsewhere = Owner(namespace="staging", name="prod", uid=OWNER.uid)

    assert ownership(existing=copied, owner=elsewhere, adopt=False) is Ownership.OWNED_BY_OTHER


# --- writing over an existing Secret ------------------------------------------------------------


def test_merging_keeps_what_users_added() -> None:
    existing = as_stored(render())
    existing["data"]["notes"] = "YWRkZWQ="
    existing["metadata"]["labels"]["reconcile.fluxcd.io/watch"] = "Enabled"
    existing["metadata"]["annotations"]["example.com/note"] = "mine"
    existing["metadata"]["finalizers"] = ["example.com/keep"]
    desired = render(credential=make_credential(), refresh_request="new")

    merged: dict[str, Any] = merge_onto(existing, desired)

    assert merged["data"]["notes"] == "YWRkZWQ="
    assert merged["data"]["kubeconfig"] == desired["data"]["kubeconfig"]
    assert merged["metadata"]["labels"]["reconcile.fluxcd.io/watch"] == "Enabled"
    assert merged["metadata"]["annotations"]["example.com/note"] == "mine"
    assert merged["metadata"]["annotations"][bookkeeping.HANDLED_REFRESH_REQUEST] == "new"
    assert merged["metadata"]["finalizers"] == ["example.com/keep"]


def test_merging_keeps_the_resource_version_and_drops_managed_fields() -> None:
    merged: dict[str, Any] = merge_onto(as_stored(render()), render())

    assert merged["metadata"]["resourceVersion"] == "4711"
    assert "managedFields" not in merged["metadata"]


def test_merging_removes_what_we_set_before_and_no_longer_set() -> None:
    before = render(make_spec(labels={"team": "platform"}), refresh_request="once")
    existing = as_stored(before)
    desired = render(make_spec(format="Flux"))

    merged: dict[str, Any] = merge_onto(existing, desired)

    assert sorted(merged["data"]) == ["value"]
    assert "team" not in merged["metadata"]["labels"]
    assert bookkeeping.HANDLED_REFRESH_REQUEST not in merged["metadata"]["annotations"]


def test_merging_shares_nothing_with_the_existing_secret() -> None:
    existing = as_stored(render())
    existing["metadata"]["finalizers"] = ["example.com/keep"]
    before = copy.deepcopy(existing)

    merged: dict[str, Any] = merge_onto(existing, render(make_spec(format="Flux")))
    merged["metadata"]["finalizers"].append("example.com/more")
    merged["metadata"]["ownerReferences"][0]["uid"] = "changed"

    assert existing == before


def test_merging_replaces_our_owner_reference_and_keeps_others() -> None:
    existing = as_stored(render())
    stranger = {"apiVersion": "example.com/v1", "kind": "Thing", "name": "t", "uid": "u"}
    existing["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-predecessor"
    existing["metadata"]["ownerReferences"].append(stranger)

    merged: dict[str, Any] = merge_onto(existing, render())

    assert merged["metadata"]["ownerReferences"] == [stranger, OWNER.reference()]


def test_merging_drops_our_owner_reference_when_the_policy_becomes_retain() -> None:
    merged: dict[str, Any] = merge_onto(
        as_stored(render()), render(make_spec(deletionPolicy="Retain"))
    )

    assert merged["metadata"]["ownerReferences"] == []


def test_creates_a_missing_secret() -> None:
    desired = render()

    assert write_for(None, desired).action is WriteAction.CREATE
    assert write_for(None, desired).manifest == desired


def test_writes_nothing_when_the_secret_is_already_as_desired() -> None:
    desired = render()

    assert write_for(as_stored(desired), desired).action is WriteAction.UNCHANGED


def test_replaces_a_secret_whose_credential_is_renewed() -> None:
    existing = as_stored(render())
    later = ISSUED + datetime.timedelta(days=5)
    renewed = dataclasses.replace(
        make_credential(), issued_at=later, expires_at=later + datetime.timedelta(days=7)
    )

    write = write_for(existing, render(credential=renewed))

    assert write.action is WriteAction.REPLACE
    assert observe_secret(write.manifest, owner=OWNER) is not None


def test_recreates_a_secret_whose_type_must_change() -> None:
    existing = as_stored(render())

    write = write_for(existing, render(make_spec(format="ClusterAPI")))

    manifest: dict[str, Any] = dict(write.manifest)
    assert write.action is WriteAction.RECREATE
    assert manifest["type"] == "cluster.x-k8s.io/secret"
    assert not {"uid", "resourceVersion", "creationTimestamp"} & manifest["metadata"].keys()


def test_recreates_an_adopted_immutable_secret_as_a_mutable_one() -> None:
    existing = foreign_secret()
    existing["immutable"] = True

    write = write_for(existing, render())

    assert write.action is WriteAction.RECREATE
    assert "immutable" not in write.manifest


def test_adopting_keeps_the_users_keys_and_takes_over_ours() -> None:
    existing = foreign_secret()
    existing["data"]["extra"] = "ZXh0cmE="
    desired = render()

    write = write_for(existing, desired)

    manifest: dict[str, Any] = dict(write.manifest)
    assert write.action is WriteAction.REPLACE
    assert manifest["data"] == {**desired["data"], "extra": "ZXh0cmE="}
    assert ownership(existing=manifest, owner=OWNER, adopt=False) is Ownership.OURS


def test_reapplies_changed_labels_without_a_new_credential() -> None:
    existing = as_stored(render(make_spec(labels={"team": "platform"})))

    desired = reapply_metadata(existing, spec=make_spec(labels={"team": "sre"}), owner=OWNER)
    write = write_for(existing, desired)

    manifest: dict[str, Any] = dict(write.manifest)
    assert write.action is WriteAction.REPLACE
    assert manifest["metadata"]["labels"]["team"] == "sre"
    assert manifest["data"] == existing["data"]
    assert observe_secret(manifest, owner=OWNER) == observe_secret(existing, owner=OWNER)


def test_reapplying_unchanged_metadata_writes_nothing() -> None:
    existing = as_stored(render(make_spec(labels={"team": "platform"}), refresh_request="r1"))

    desired = reapply_metadata(existing, spec=make_spec(labels={"team": "platform"}), owner=OWNER)

    assert write_for(existing, desired).action is WriteAction.UNCHANGED


# --- the lifetime guard reads the credential back -----------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        {},
        {"format": "Flux"},
        {"format": "ArgoCD"},
        {"format": "ClusterAPI", "name": "prod-kubeconfig"},
    ],
)
def test_the_held_credential_reads_back_from_every_format(
    kubeconfig_bytes: bytes, target: dict[str, Any]
) -> None:
    credential = parse_kubeconfig(kubeconfig_bytes, issued_at=ISSUED, expiry_seconds=3600)
    spec = make_spec(**target)
    stored = as_stored(render(spec, credential=credential))
    observed = observe_secret(stored, owner=OWNER)
    assert observed is not None

    held = held_credential(stored, spec=spec, observed=observed)

    assert held is not None
    assert (held.server, held.ca_pem, held.token) == (
        credential.server,
        credential.ca_pem,
        credential.token,
    )
    assert held.expires_at == observed.expires_at


def test_a_certificate_credential_reads_back_from_argo_cd(
    certificate_kubeconfig: Any,
) -> None:
    document = certificate_kubeconfig(not_after=ISSUED + datetime.timedelta(days=1))
    raw = yaml.safe_dump(document).encode()
    credential = parse_kubeconfig(raw, issued_at=ISSUED, expiry_seconds=None)
    spec = make_spec(format="ArgoCD")
    stored = as_stored(render(spec, credential=credential))
    observed = observe_secret(stored, owner=OWNER)
    assert observed is not None

    held = held_credential(stored, spec=spec, observed=observed)

    assert held is not None
    assert held.auth_kind is AuthKind.CLIENT_CERTIFICATE
    assert held.client_key_pem == credential.client_key_pem


def test_a_secret_that_does_not_read_back_holds_nothing_to_check(
    kubeconfig_bytes: bytes,
) -> None:
    credential = parse_kubeconfig(kubeconfig_bytes, issued_at=ISSUED, expiry_seconds=3600)
    stored = as_stored(render(credential=credential))
    observed = observe_secret(stored, owner=OWNER)
    assert observed is not None
    stored["data"]["kubeconfig"] = base64.b64encode(b"kind: Config\n").decode()

    assert held_credential(stored, spec=make_spec(), observed=observed) is None
