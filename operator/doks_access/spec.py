"""Turn a ``DOClusterAccess`` body into a typed, validated :class:`AccessSpec`.

The CRD's schema and CEL rules reject most bad specs at the apiserver, but not all of them reach us
through it: objects stored before a CRD change, objects applied while validation was off, and
fields the schema cannot check (a default target name too long for a Secret). Everything past this
module works with a frozen, typed value, so the checks live here, once, and every problem becomes
one :class:`InvalidSpecError` naming the field -- a condition for the user, never a crash.

Defaults repeat the CRD's (the apiserver applies them, but an old object may predate them).

:meth:`AccessSpec.credential_hash` is the *spec hash* of DESIGN 4.3/4.4: it covers exactly the
fields that shape the credential or the Secret's content, so that changing one of them fetches a
new credential while changing anything else (labels, annotations, deletion policy, adopt,
renewBefore, verify, suspend) does not:

- the cluster (``clusterID`` or ``clusterName``, as written), ``expirySeconds`` (absent and 0 are
  the same), the token Secret's name and key: what DigitalOcean is asked;
- ``target.format`` and the data key: the shape of the content, which cannot always be re-derived
  from the Secret without a fetch (an Argo CD Secret holds no kubeconfig).

The target's *name* is left out: the hash is stored on the target Secret itself, so a renamed
target has no Secret yet and is fetched for anyway.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import json
import re
import types
from collections.abc import Mapping

__all__ = [
    "MAX_DURATION",
    "MAX_EXPIRY_SECONDS",
    "AccessSpec",
    "DeletionPolicy",
    "Format",
    "InvalidSpecError",
    "SecretKeyRef",
    "Target",
    "cluster_api_name",
    "parse_account_ref",
    "parse_annotations",
    "parse_duration",
    "parse_labels",
    "parse_spec",
    "parse_token_secret",
    "parse_token_source",
]

# Far beyond any credential lifetime, and safely inside what datetime arithmetic can represent.
MAX_DURATION = datetime.timedelta(days=36500)
_MAX_DURATION_SECONDS = int(MAX_DURATION.total_seconds())
MAX_EXPIRY_SECONDS = 2**31 - 1  # the largest expiry_seconds DigitalOcean's API takes (int32)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DURATION = re.compile(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_MICROSECONDS_PER_UNIT = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}

_MAX_NAME = 253
_MAX_LABEL = 63
_TARGET_SUFFIX = "-kubeconfig"


class InvalidSpecError(ValueError):
    """The spec cannot be acted on; ``field`` is its path, such as ``spec.target.key``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Format(enum.Enum):
    """The shape of the target Secret, one per kind of consumer (DESIGN 5)."""

    KUBECONFIG = "Kubeconfig"
    FLUX = "Flux"
    CLUSTER_API = "ClusterAPI"
    ARGO_CD = "ArgoCD"


class DeletionPolicy(enum.Enum):
    """What happens to the target Secret when its DOClusterAccess is deleted."""

    DELETE = "Delete"  # owned by the DOClusterAccess; garbage-collected with it
    RETAIN = "Retain"


@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the DOClusterAccess's own namespace."""

    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how the credential is written."""

    name: str
    format: Format
    # The data key that holds the kubeconfig; None for ArgoCD, whose keys are fixed.
    key: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    deletion_policy: DeletionPolicy
    adopt: bool


@dataclasses.dataclass(frozen=True)
class AccessSpec:
    """A valid ``DOClusterAccess`` spec with defaults applied; exactly one cluster field is set."""

    cluster_id: str | None
    cluster_name: str | None
    expiry_seconds: int | None  # None: DigitalOcean's default (7 days); never 0
    # Where the DigitalOcean token comes from: a Secret of the object's namespace, or a
    # ClusterDOAccount (accountRef) -- exactly one of the two.
    token_secret: SecretKeyRef | None
    target: Target
    renew_before: datetime.timedelta | None  # None: a third of the credential's lifetime
    verify: bool
    suspend: bool
    account: str | None = None  # spec.accountRef.name

    def credential_hash(self) -> str:
        """A short, stable digest of the fields that shape the credential and the content."""
        shaping = {
            "version": 1,
            "clusterID": self.cluster_id,
            "clusterName": self.cluster_name,
            "expirySeconds": self.expiry_seconds,
            "tokenSecretRef": (
                None
                if self.token_secret is None
                else [self.token_secret.name, self.token_secret.key]
            ),
            "format": self.target.format.value,
            "key": self.target.key,
        }
        if self.account is not None:  # only then: the hashes of existing objects stay as they were
            shaping["accountRef"] = self.account
        canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def parse_spec(body: Mapping[str, object]) -> AccessSpec:
    """The spec of a ``DOClusterAccess`` body, or :class:`InvalidSpecError` naming the bad field."""
    name = _object_name(body)
    spec = _mapping(body.get("spec"), "spec", required=True)
    cluster_id, cluster_name = _cluster(spec)
    token_secret, account = parse_token_source(spec)
    return AccessSpec(
        cluster_id=cluster_id,
        cluster_name=cluster_name,
        expiry_seconds=_expiry_seconds(spec.get("expirySeconds")),
        token_secret=token_secret,
        target=_target(spec.get("target"), object_name=name),
        renew_before=_renew_before(spec.get("renewBefore")),
        verify=_boolean(spec.get("verify"), "spec.verify"),
        suspend=_boolean(spec.get("suspend"), "spec.suspend"),
        account=account,
    )


def parse_token_source(spec: Mapping[str, object]) -> tuple[SecretKeyRef | None, str | None]:
    """``tokenSecretRef`` or ``accountRef`` (the account's name): exactly one, or
    :class:`InvalidSpecError`."""
    if (spec.get("tokenSecretRef") is None) == (spec.get("accountRef") is None):
        raise InvalidSpecError("spec", "exactly one of tokenSecretRef or accountRef must be set")
    if spec.get("accountRef") is None:
        return parse_token_secret(spec.get("tokenSecretRef")), None
    return None, parse_account_ref(spec.get("accountRef"))


def parse_account_ref(value: object) -> str:
    """The name in an ``accountRef`` (a ClusterDOAccount), or :class:`InvalidSpecError`."""
    ref = _mapping(value, "spec.accountRef", required=True)
    name = _required_string(ref.get("name"), "spec.accountRef.name")
    _check_name(name, "spec.accountRef.name")
    return name


def parse_duration(text: str) -> datetime.timedelta:
    """A Go-style duration such as ``2h``, ``1h30m``, ``1.5h`` or ``500ms`` (units ms, s, m, h).

    Raises ``ValueError`` for anything else, including durations beyond :data:`MAX_DURATION`.
    """
    if not _DURATION.fullmatch(text):
        raise ValueError("not a duration such as 2h, 90m or 1h30m")
    microseconds = sum(
        decimal.Decimal(number) * _MICROSECONDS_PER_UNIT[unit]
        for number, unit in _DURATION_PART.findall(text)
    )
    if microseconds > _MAX_DURATION_SECONDS * 1_000_000:
        raise ValueError(f"longer than {MAX_DURATION.days} days")
    return datetime.timedelta(microseconds=int(microseconds))


def cluster_api_name(target_name: str) -> str:
    """The Cluster API cluster name that goes with a target Secret named ``target_name``.

    Cluster API's contract ties the two: the Secret of cluster ``<c>`` is ``<c>-kubeconfig`` and
    carries the label ``cluster.x-k8s.io/cluster-name: <c>``. A target that does not follow the
    naming convention gives its whole name.
    """
    stem = target_name.removesuffix(_TARGET_SUFFIX)
    return stem or target_name


def _object_name(body: Mapping[str, object]) -> str:
    metadata = _mapping(body.get("metadata"), "metadata", required=True)
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidSpecError("metadata.name", "is missing")
    return name


def _cluster(spec: Mapping[str, object]) -> tuple[str | None, str | None]:
    cluster_id = _optional_string(spec.get("clusterID"), "spec.clusterID")
    cluster_name = _optional_string(spec.get("clusterName"), "spec.clusterName")
    if (cluster_id is None) == (cluster_name is None):
        raise InvalidSpecError("spec", "exactly one of clusterID or clusterName must be set")
    if cluster_id is not None and not _UUID.fullmatch(cluster_id):
        raise InvalidSpecError("spec.clusterID", "is not a UUID")
    if cluster_name is not None and len(cluster_name) > 255:
        raise InvalidSpecError("spec.clusterName", "is longer than 255 characters")
    return cluster_id, cluster_name


def _expiry_seconds(value: object) -> int | None:
    if value is None:
        return None
    # bool is an int in Python, but `true` is not a number of seconds.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidSpecError("spec.expirySeconds", "is not an integer")
    if value < 0:
        raise InvalidSpecError("spec.expirySeconds", "is negative")
    if value > MAX_EXPIRY_SECONDS:
        # DigitalOcean's API reads expiry_seconds as a 32-bit integer.
        raise InvalidSpecError("spec.expirySeconds", f"is more than {MAX_EXPIRY_SECONDS}")
    return value or None


def parse_token_secret(value: object) -> SecretKeyRef:
    """A ``tokenSecretRef`` (a Secret of the object's own namespace, and its key), or
    :class:`InvalidSpecError`."""
    ref = _mapping(value, "spec.tokenSecretRef", required=True)
    name = _required_string(ref.get("name"), "spec.tokenSecretRef.name")
    _check_name(name, "spec.tokenSecretRef.name")
    key = _optional_string(ref.get("key"), "spec.tokenSecretRef.key") or "token"
    _check_data_key(key, "spec.tokenSecretRef.key")
    return SecretKeyRef(name=name, key=key)


def _target(value: object, *, object_name: str) -> Target:
    target = _mapping(value, "spec.target", required=False)
    name = _optional_string(target.get("name"), "spec.target.name")
    secret_name = name or object_name + _TARGET_SUFFIX
    _check_name(secret_name, "spec.target.name")
    target_format = _format(target.get("format"))
    if target_format is Format.CLUSTER_API:
        _check_cluster_api_name(secret_name)
    return Target(
        name=secret_name,
        format=target_format,
        key=_data_key(target.get("key"), target_format),
        labels=parse_labels(target.get("labels")),
        annotations=parse_annotations(target.get("annotations")),
        deletion_policy=_deletion_policy(target.get("deletionPolicy")),
        adopt=_boolean(target.get("adopt"), "spec.target.adopt"),
    )


def _format(value: object) -> Format:
    try:
        return Format(value if value is not None else Format.KUBECONFIG.value)
    except ValueError:
        choices = ", ".join(f.value for f in Format)
        raise InvalidSpecError("spec.target.format", f"is not one of {choices}") from None


def _data_key(value: object, target_format: Format) -> str | None:
    key = _optional_string(value, "spec.target.key")
    if key is not None and target_format is not Format.KUBECONFIG:
        raise InvalidSpecError("spec.target.key", "can only be set with format Kubeconfig")
    if target_format is Format.KUBECONFIG:
        key = key or "kubeconfig"
        _check_data_key(key, "spec.target.key")
        return key
    if target_format is Format.ARGO_CD:
        return None
    return "value"


def parse_labels(value: object, field: str = "spec.target.labels") -> Mapping[str, str]:
    """Labels as Kubernetes accepts them (keys and values), or :class:`InvalidSpecError`."""
    labels = _string_map(value, field)
    for key, text in labels.items():
        _check_qualified_name(key, f"{field}[{key}]")
        if not _is_label_value(text):
            raise InvalidSpecError(f"{field}[{key}]", "is not a valid label value")
    return labels


def parse_annotations(value: object, field: str = "spec.target.annotations") -> Mapping[str, str]:
    """Annotations with keys Kubernetes accepts, or :class:`InvalidSpecError`."""
    annotations = _string_map(value, field)
    for key in annotations:
        _check_qualified_name(key, f"{field}[{key}]")
    return annotations


def _deletion_policy(value: object) -> DeletionPolicy:
    try:
        return DeletionPolicy(value if value is not None else DeletionPolicy.DELETE.value)
    except ValueError:
        raise InvalidSpecError("spec.target.deletionPolicy", "is not Delete or Retain") from None


def _renew_before(value: object) -> datetime.timedelta | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSpecError("spec.renewBefore", "is not a string")
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise InvalidSpecError("spec.renewBefore", str(exc)) from None
    # Zero would renew at the moment of expiry: the outage window this operator exists to close.
    if not duration:
        raise InvalidSpecError("spec.renewBefore", "must be longer than zero")
    return duration


def _mapping(value: object, field: str, *, required: bool) -> Mapping[str, object]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpecError(field, "is missing" if value is None else "is not an object")
    return value


def _string_map(value: object, field: str) -> Mapping[str, str]:
    entries = _mapping(value, field, required=False)
    for key, text in entries.items():
        if not isinstance(key, str) or not isinstance(text, str):
            raise InvalidSpecError(field, "must map strings to strings")
    return types.MappingProxyType({str(key): str(text) for key, text in entries.items()})


def _optional_string(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(field, "is not a non-empty string")
    return value


def _required_string(value: object, field: str) -> str:
    text = _optional_string(value, field)
    if text is None:
        raise InvalidSpecError(field, "is missing")
    return text


def _boolean(value: object, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidSpecError(field, "is not true or false")
    return value


def _check_name(name: str, field: str) -> None:
    if len(name) > _MAX_NAME:
        raise InvalidSpecError(field, f"is longer than {_MAX_NAME} characters")
    if not _DNS_SUBDOMAIN.fullmatch(name):
        raise InvalidSpecError(field, "is not a valid Secret name (DNS-1123 subdomain)")


def _check_data_key(key: str, field: str) -> None:
    if len(key) > _MAX_NAME or not _DATA_KEY.fullmatch(key):
        raise InvalidSpecError(field, "is not a valid Secret data key")


def _check_cluster_api_name(target_name: str) -> None:
    # The name becomes a label value, which is shorter than a Secret name may be.
    if not _is_label_value(cluster_api_name(target_name)):
        raise InvalidSpecError(
            "spec.target.name",
            f"with format ClusterAPI, the name without {_TARGET_SUFFIX!r} must be a valid label "
            f"value (at most {_MAX_LABEL} characters)",
        )


def _check_qualified_name(key: str, field: str) -> None:
    """Kubernetes' syntax for label and annotation keys: an optional DNS prefix, a short name."""
    prefix, slash, name = key.rpartition("/")
    valid_prefix = not slash or (
        0 < len(prefix) <= _MAX_NAME and _DNS_SUBDOMAIN.fullmatch(prefix) is not None
    )
    if not (valid_prefix and name and _is_label_value(name)):
        raise InvalidSpecError(field, "is not a valid key")


def _is_label_value(text: str) -> bool:
    return not text or (len(text) <= _MAX_LABEL and _LABEL_NAME.fullmatch(text) is not None)
