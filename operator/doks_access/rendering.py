"""The target Secret: what the operator writes, how it reads it back, and whose it is.

Pure functions from a validated credential and spec to a Secret manifest (a plain dict, as the
Kubernetes API takes it), one shape per consumer (DESIGN 5, ``reference/consumers.md``), and back
from an existing Secret to what the scheduler needs to know (:func:`observe_secret`) and to the
credential itself, for the lifetime guard (:func:`held_credential`). Reading and writing sit
together because they must agree on every key.

A Secret may be shared with users: they can add data keys, labels and annotations of their own,
and those are kept (DESIGN 4.7). The operator records which keys it set in the ``managed-keys``
annotation, so that it can drop the ones it no longer sets (after a format or label change) without
guessing, and a digest of its data keys in ``content-hash``, so that a changed or blanked kubeconfig
is noticed (drift) without a credential to compare against.

Decisions where the design is silent:

- Argo CD's ``name`` is the DOClusterAccess's name: Argo CD needs it unique among the cluster
  Secrets of its namespace, which is where these objects live, and it is known without a lookup.
- Cluster API's ``cluster.x-k8s.io/cluster-name`` comes from the target name
  (:func:`doks_access.spec.cluster_api_name`): the contract ties label and Secret name together.
- Users' labels and annotations never override the operator's: keys under ``doks-access.dev/``,
  the managed-by label and the format's own labels are dropped from what users asked for.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from typing import NotRequired, TypedDict

from doks_access import bookkeeping
from doks_access.bookkeeping import ObservedSecret
from doks_access.kubeconfig import AuthKind, Credential, parse_kubeconfig
from doks_access.spec import AccessSpec, DeletionPolicy, Format, cluster_api_name

__all__ = [
    "API_VERSION",
    "ARGO_CD_SECRET_TYPE_LABEL",
    "CLUSTER_API_NAME_LABEL",
    "CLUSTER_API_SECRET_TYPE",
    "KIND",
    "Owner",
    "OwnerReference",
    "Ownership",
    "SecretManifest",
    "SecretMetadata",
    "SecretWrite",
    "WriteAction",
    "content_matches",
    "held_credential",
    "merge_onto",
    "observe_secret",
    "ownership",
    "reapply_metadata",
    "render_secret",
    "write_for",
]

API_VERSION = "doks-access.dev/v1alpha1"
KIND = "DOClusterAccess"
CLUSTER_API_SECRET_TYPE = "cluster.x-k8s.io/secret"  # noqa: S105 - a Secret type, not a secret
CLUSTER_API_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
ARGO_CD_SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 - a label key

_OPAQUE = "Opaque"
_RECORDS = (
    bookkeeping.ISSUED_AT,
    bookkeeping.EXPIRES_AT,
    bookkeeping.CLUSTER_ID,
    bookkeeping.SPEC_HASH,
    bookkeeping.CONTENT_HASH,
    bookkeeping.HANDLED_REFRESH_REQUEST,
)
# Metadata the API server sets; a Secret created again must not carry the old one's.
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation")


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class SecretMetadata(TypedDict):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: NotRequired[list[OwnerReference]]


class SecretManifest(TypedDict):
    apiVersion: str
    kind: str
    metadata: SecretMetadata
    type: str
    data: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Owner:
    """The DOClusterAccess that writes the Secret."""

    namespace: str
    name: str
    uid: str

    @property
    def annotation(self) -> str:
        return bookkeeping.owner_value(namespace=self.namespace, name=self.name)

    def reference(self) -> OwnerReference:
        # blockOwnerDeletion false: deleting the DOClusterAccess must not wait on its Secret.
        return OwnerReference(
            apiVersion=API_VERSION,
            kind=KIND,
            name=self.name,
            uid=self.uid,
            controller=True,
            blockOwnerDeletion=False,
        )


class Ownership(enum.Enum):
    """Whose an existing target Secret is, from one DOClusterAccess's point of view."""

    ABSENT = "Absent"  # no such Secret: ours to create
    OURS = "Ours"  # our owner annotation is on it
    ADOPTABLE = "Adoptable"  # nobody's, and this object has ``adopt: true``
    FOREIGN = "Foreign"  # nobody's, no ``adopt``: a SecretConflict
    OWNED_BY_OTHER = "OwnedByOther"  # another DOClusterAccess writes it: a SecretConflict

    @property
    def is_conflict(self) -> bool:
        return self in (Ownership.FOREIGN, Ownership.OWNED_BY_OTHER)


class WriteAction(enum.Enum):
    UNCHANGED = "Unchanged"  # the Secret is already as desired: no API call
    CREATE = "Create"
    REPLACE = "Replace"  # PUT, with the existing resourceVersion
    RECREATE = "Recreate"  # delete, then create: a Secret's type cannot change in place


@dataclasses.dataclass(frozen=True)
class SecretWrite:
    action: WriteAction
    manifest: Mapping[str, object]


def render_secret(
    *,
    credential: Credential,
    spec: AccessSpec,
    owner: Owner,
    cluster_id: str,
    refresh_request: str | None,
) -> SecretManifest:
    """The Secret that hands ``credential`` to the consumer ``spec.target.format`` names.

    ``cluster_id`` is the resolved cluster ID; ``refresh_request`` is the object's current
    refresh-requested-at annotation (recorded as handled).
    """
    data = _format_data(credential=credential, spec=spec, owner=owner)
    records = {
        bookkeeping.ISSUED_AT: bookkeeping.format_timestamp(credential.issued_at),
        bookkeeping.EXPIRES_AT: bookkeeping.format_timestamp(credential.expires_at),
        bookkeeping.CLUSTER_ID: cluster_id,
        bookkeeping.SPEC_HASH: spec.credential_hash(),
        bookkeeping.CONTENT_HASH: _content_hash(data),
    }
    if refresh_request is not None:
        records[bookkeeping.HANDLED_REFRESH_REQUEST] = refresh_request
    return _manifest(spec=spec, owner=owner, data=data, records=records)


def reapply_metadata(
    existing: Mapping[str, object], *, spec: AccessSpec, owner: Owner
) -> SecretManifest:
    """The desired Secret for the credential ``existing`` already holds, with today's metadata.

    For changes that need no fetch (labels, annotations, deletion policy). ``existing`` must be
    ours and intact (:func:`observe_secret` gives it an observation).
    """
    existing_annotations = _annotations_of(existing)
    existing_data = _string_map(existing.get("data"))
    managed_data = _managed_keys(existing_annotations)["data"]
    data = {key: value for key, value in existing_data.items() if key in managed_data}
    records = {key: value for key, value in existing_annotations.items() if key in _RECORDS}
    return _manifest(spec=spec, owner=owner, data=data, records=records)


def content_matches(existing_data: Mapping[str, str], desired: SecretManifest) -> bool:
    """Whether ``existing_data`` holds the desired values under our keys; others are ignored."""
    return all(existing_data.get(key) == value for key, value in desired["data"].items())


def ownership(*, existing: Mapping[str, object] | None, owner: Owner, adopt: bool) -> Ownership:
    """Whether ``owner`` may write ``existing`` (DESIGN 4.7).

    ``adopt`` takes over a Secret nobody manages, never one another DOClusterAccess writes: that
    would have two objects overwrite each other's credential forever.
    """
    if existing is None:
        return Ownership.ABSENT
    claimed_by = _annotations_of(existing).get(bookkeeping.OWNER)
    if claimed_by == owner.annotation:
        return Ownership.OURS
    if claimed_by is not None:
        return Ownership.OWNED_BY_OTHER
    return Ownership.ADOPTABLE if adopt else Ownership.FOREIGN


def observe_secret(existing: Mapping[str, object] | None, *, owner: Owner) -> ObservedSecret | None:
    """What an existing Secret says about its credential; None if missing, not ours or drifted.

    Drift is a managed data key that is gone or no longer matches the recorded digest, and
    bookkeeping that is missing or does not parse: either way the credential cannot be trusted.
    """
    if existing is None:
        return None
    notes = _annotations_of(existing)
    if notes.get(bookkeeping.OWNER) != owner.annotation or not _is_intact(existing, notes):
        return None
    issued_at = bookkeeping.parse_timestamp(notes.get(bookkeeping.ISSUED_AT))
    expires_at = bookkeeping.parse_timestamp(notes.get(bookkeeping.EXPIRES_AT))
    cluster_id = notes.get(bookkeeping.CLUSTER_ID)
    spec_hash = notes.get(bookkeeping.SPEC_HASH)
    if issued_at is None or expires_at is None or expires_at <= issued_at:
        return None
    if not cluster_id or not spec_hash:
        return None
    return ObservedSecret(
        issued_at=issued_at,
        expires_at=expires_at,
        cluster_id=cluster_id,
        spec_hash=spec_hash,
        handled_refresh_request=notes.get(bookkeeping.HANDLED_REFRESH_REQUEST),
    )


def held_credential(
    existing: Mapping[str, object], *, spec: AccessSpec, observed: ObservedSecret
) -> Credential | None:
    """The credential an intact Secret of ours holds, read back from its format's data keys;
    None when it does not read back (it then cannot be checked, and nothing else changes)."""
    data = _string_map(existing.get("data"))
    try:
        if spec.target.format is Format.ARGO_CD:
            return _argo_cd_credential(data, observed=observed)
        raw = base64.b64decode(data.get(spec.target.key or "", ""), validate=True)
        credential = parse_kubeconfig(raw, issued_at=observed.issued_at, expiry_seconds=None)
    except (ValueError, TypeError, KeyError):  # binascii.Error and JSON errors are ValueErrors
        return None
    return dataclasses.replace(credential, expires_at=observed.expires_at)


def _argo_cd_credential(data: Mapping[str, str], *, observed: ObservedSecret) -> Credential:
    server = base64.b64decode(data["server"], validate=True).decode("utf-8")
    config = json.loads(base64.b64decode(data["config"], validate=True))
    tls = config["tlsClientConfig"]
    token = config.get("bearerToken")
    return Credential(
        raw=b"",
        server=server,
        ca_pem=base64.b64decode(tls["caData"], validate=True),
        auth_kind=AuthKind.TOKEN if token is not None else AuthKind.CLIENT_CERTIFICATE,
        token=token,
        client_certificate_pem=None if token else base64.b64decode(tls["certData"]),
        client_key_pem=None if token else base64.b64decode(tls["keyData"]),
        cluster_name="",
        context_name="",
        user_name="",
        issued_at=observed.issued_at,
        expires_at=observed.expires_at,
    )


def merge_onto(existing: Mapping[str, object], desired: SecretManifest) -> dict[str, object]:
    """``existing`` with our data, labels, annotations and owner reference taken from ``desired``.

    What users added is kept; what we set before and no longer set (the ``managed-keys`` of
    ``existing``, anything under ``doks-access.dev/``) is removed. The result keeps ``existing``'s
    other metadata, ``resourceVersion`` included, so that a replace cannot overwrite a newer write.
    """
    previous = _managed_keys(_annotations_of(existing))
    merged = copy.deepcopy(dict(existing))
    merged.pop("immutable", None)  # an adopted immutable Secret is created again, mutable
    merged.update(apiVersion=desired["apiVersion"], kind=desired["kind"], type=desired["type"])
    merged["data"] = _merged(_string_map(existing.get("data")), desired["data"], previous["data"])
    merged["metadata"] = _merged_metadata(_metadata(merged), desired["metadata"], previous)
    return merged


def write_for(existing: Mapping[str, object] | None, desired: SecretManifest) -> SecretWrite:
    """The one write (or none) that makes ``existing`` ``desired``, keeping users' additions."""
    if existing is None:
        return SecretWrite(action=WriteAction.CREATE, manifest=desired)
    merged = merge_onto(existing, desired)
    if existing.get("immutable") is True or existing.get("type", _OPAQUE) != desired["type"]:
        return SecretWrite(action=WriteAction.RECREATE, manifest=_without_server_metadata(merged))
    if _same_content(existing, merged):
        return SecretWrite(action=WriteAction.UNCHANGED, manifest=existing)
    return SecretWrite(action=WriteAction.REPLACE, manifest=merged)


def _format_data(*, credential: Credential, spec: AccessSpec, owner: Owner) -> dict[str, str]:
    if spec.target.format is Format.ARGO_CD:
        return {
            "name": _b64(owner.name.encode("utf-8")),
            "server": _b64(credential.server.encode("utf-8")),
            "config": _b64(_argo_cd_config(credential).encode("utf-8")),
        }
    # Kubeconfig, Flux and ClusterAPI all carry the validated kubeconfig as returned.
    if spec.target.key is None:
        raise ValueError(f"format {spec.target.format.value} needs a data key")
    return {spec.target.key: _b64(credential.raw)}


def _argo_cd_config(credential: Credential) -> str:
    """Argo CD's cluster ``config``: the credential without the kubeconfig around it."""
    tls: dict[str, str] = {"caData": _b64(credential.ca_pem)}
    config: dict[str, object] = {"tlsClientConfig": tls}
    if credential.auth_kind is AuthKind.TOKEN:
        config["bearerToken"] = credential.token
    else:
        tls["certData"] = _b64(credential.client_certificate_pem or b"")
        tls["keyData"] = _b64(credential.client_key_pem or b"")
    return json.dumps(config, sort_keys=True)


def _manifest(
    *, spec: AccessSpec, owner: Owner, data: dict[str, str], records: Mapping[str, str]
) -> SecretManifest:
    own_labels = {
        bookkeeping.MANAGED_BY_LABEL: bookkeeping.MANAGED_BY_VALUE,
        **_format_labels(spec),
    }
    own_annotations = {bookkeeping.OWNER: owner.annotation, **records}
    labels = _users(spec.target.labels, reserved=own_labels) | own_labels
    notes = _users(spec.target.annotations, reserved=own_annotations) | own_annotations
    notes[bookkeeping.MANAGED_KEYS] = _encode_managed_keys(data=data, labels=labels, notes=notes)
    metadata = SecretMetadata(
        name=spec.target.name, namespace=owner.namespace, labels=labels, annotations=notes
    )
    if spec.target.deletion_policy is DeletionPolicy.DELETE:
        metadata["ownerReferences"] = [owner.reference()]
    return SecretManifest(
        apiVersion="v1", kind="Secret", metadata=metadata, type=_secret_type(spec), data=data
    )


def _format_labels(spec: AccessSpec) -> dict[str, str]:
    if spec.target.format is Format.CLUSTER_API:
        return {CLUSTER_API_NAME_LABEL: cluster_api_name(spec.target.name)}
    if spec.target.format is Format.ARGO_CD:
        return {ARGO_CD_SECRET_TYPE_LABEL: "cluster"}
    return {}


def _secret_type(spec: AccessSpec) -> str:
    return CLUSTER_API_SECRET_TYPE if spec.target.format is Format.CLUSTER_API else _OPAQUE


def _users(requested: Mapping[str, str], *, reserved: Mapping[str, str]) -> dict[str, str]:
    """The user's labels or annotations that do not touch the operator's own."""
    return {
        key: value
        for key, value in requested.items()
        if key not in reserved and not bookkeeping.is_reserved(key)
    }


def _encode_managed_keys(
    *, data: Mapping[str, str], labels: Mapping[str, str], notes: Mapping[str, str]
) -> str:
    # Reserved keys are the operator's anyway; recording them would only lengthen the value.
    managed = {
        "annotations": sorted(key for key in notes if not bookkeeping.is_reserved(key)),
        "data": sorted(data),
        "labels": sorted(key for key in labels if not bookkeeping.is_reserved(key)),
    }
    return json.dumps(managed, sort_keys=True, separators=(",", ":"))


def _managed_keys(notes: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """The keys the operator set last time, by section; nothing for a Secret it never wrote."""
    try:
        recorded = json.loads(notes.get(bookkeeping.MANAGED_KEYS, "{}"))
    except ValueError:
        recorded = {}
    sections = ("annotations", "data", "labels")
    managed = {section: _string_set(recorded, section) for section in sections}
    managed["labels"] |= {bookkeeping.MANAGED_BY_LABEL}
    managed["annotations"] |= {key for key in notes if bookkeeping.is_reserved(key)}
    return managed


def _string_set(recorded: object, section: str) -> frozenset[str]:
    entries = recorded.get(section) if isinstance(recorded, dict) else None
    if not isinstance(entries, list):
        return frozenset()
    return frozenset(entry for entry in entries if isinstance(entry, str))


def _merged(
    existing: Mapping[str, str], desired: Mapping[str, str], previously_ours: frozenset[str]
) -> dict[str, str]:
    kept = {key: value for key, value in existing.items() if key not in previously_ours}
    return kept | dict(desired)


def _merged_metadata(
    metadata: Mapping[str, object],
    desired: SecretMetadata,
    previous: Mapping[str, frozenset[str]],
) -> dict[str, object]:
    merged = {key: value for key, value in metadata.items() if key != "managedFields"}
    labels = _string_map(metadata.get("labels"))
    merged["labels"] = _merged(labels, desired["labels"], previous["labels"])
    notes = _string_map(metadata.get("annotations"))
    merged["annotations"] = _merged(notes, desired["annotations"], previous["annotations"])
    ours = copy.deepcopy(desired.get("ownerReferences", []))
    merged["ownerReferences"] = [*_foreign_references(metadata.get("ownerReferences")), *ours]
    return merged


def _foreign_references(value: object) -> list[object]:
    """Owner references other than a DOClusterAccess's; ours comes from the desired Secret."""
    if not isinstance(value, list):
        return []
    return [ref for ref in value if not (isinstance(ref, Mapping) and _is_access_reference(ref))]


def _is_access_reference(reference: Mapping[object, object]) -> bool:
    api_version = reference.get("apiVersion")
    is_our_group = isinstance(api_version, str) and api_version.startswith("doks-access.dev/")
    return is_our_group and reference.get("kind") == KIND


def _is_intact(existing: Mapping[str, object], notes: Mapping[str, str]) -> bool:
    managed_data = _managed_keys(notes)["data"]
    data = _string_map(existing.get("data"))
    if not managed_data or not managed_data <= data.keys():
        return False
    ours = {key: data[key] for key in managed_data}
    return notes.get(bookkeeping.CONTENT_HASH) == _content_hash(ours)


def _content_hash(data: Mapping[str, str]) -> str:
    # A digest of random tokens: it reveals nothing about them, and 64 bits spot any change.
    canonical = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _same_content(existing: Mapping[str, object], merged: Mapping[str, object]) -> bool:
    def view(secret: Mapping[str, object]) -> tuple[object, ...]:
        metadata = _metadata(secret)
        return (
            secret.get("type", _OPAQUE),
            _string_map(secret.get("data")),
            _string_map(metadata.get("labels")),
            _string_map(metadata.get("annotations")),
            metadata.get("ownerReferences") or [],
        )

    return view(existing) == view(merged)


def _without_server_metadata(merged: dict[str, object]) -> dict[str, object]:
    metadata = {k: v for k, v in _metadata(merged).items() if k not in _SERVER_METADATA}
    return {**merged, "metadata": metadata}


def _annotations_of(secret: Mapping[str, object]) -> dict[str, str]:
    return _string_map(_metadata(secret).get("annotations"))


def _metadata(secret: Mapping[str, object]) -> Mapping[str, object]:
    metadata = secret.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
