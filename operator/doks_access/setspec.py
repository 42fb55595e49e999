"""Turn a ``DOClusterAccessSet`` body into a typed, validated :class:`SetSpec` (pure).

The CRD refuses most bad sets at admission (an empty selector, a bad duration), but, as for the
single object (:mod:`doks_access.spec`), this module checks everything again: the set is acted on
only through a frozen value, and every problem is one :class:`~doks_access.spec.InvalidSpecError`
naming the field.

The template is kept as JSON: each child's spec is the template's, with the cluster and the token
filled in and the placeholders replaced (:mod:`doks_access.selection`). It is checked here by
rendering it once for an example cluster and parsing the result as a ``DOClusterAccess`` would
be, so that a template that can never work (a bad expiry, an invalid Secret name whatever the
cluster) is the set's problem, reported once, and not a thousand children's.

Placeholders, in ``target.name`` and the values of ``target.labels`` and ``target.annotations``
only -- a small fixed set, no templating language: ``$(cluster.name)``, ``$(cluster.id)``,
``$(cluster.shortID)``, ``$(cluster.region)``, ``$(set.name)``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from doks_access import spec as specs
from doks_access.spec import InvalidSpecError, SecretKeyRef

__all__ = [
    "DEFAULT_RESYNC",
    "MIN_RESYNC",
    "PLACEHOLDERS",
    "ClusterFacts",
    "Selector",
    "SetDeletionPolicy",
    "SetSpec",
    "child_name",
    "parse_set_spec",
    "render",
]

DEFAULT_RESYNC = datetime.timedelta(minutes=5)
MIN_RESYNC = datetime.timedelta(minutes=1)
PLACEHOLDERS = ("cluster.name", "cluster.id", "cluster.shortID", "cluster.region", "set.name")
# Fields the set fills in for each child; a template that sets them is refused.
_FILLED_IN = ("clusterID", "clusterName", "tokenSecretRef", "accountRef")
_PLACEHOLDER = re.compile(r"\$\(([^)]*)\)")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_ITEMS = 1000
_EXAMPLE_ID = "00000000-0000-4000-8000-000000000000"
_MAX_NAME = 253
_TARGET_SUFFIX = "-kubeconfig"


class ClusterFacts(Protocol):
    """What a listing says about a cluster (``digitalocean.Cluster`` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def tags(self) -> tuple[str, ...] | None: ...

    @property
    def state(self) -> str: ...

    @property
    def sso_required(self) -> bool: ...  # no token credential works on it: it gets no child


class SetDeletionPolicy(enum.Enum):
    """What happens to a cluster's child when the cluster leaves the selection or DigitalOcean."""

    DELETE = "Delete"  # the child goes, and its Secret with it
    ORPHAN = "Orphan"  # the child goes; its Secret stays (no longer renewed)


@dataclasses.dataclass(frozen=True)
class Selector:
    """Which clusters a set selects: every criterion given must hold."""

    tags: frozenset[str] = frozenset()  # all of them
    regions: frozenset[str] = frozenset()  # any of them
    name_pattern: str | None = None  # shell-style
    cluster_ids: frozenset[str] = (
        frozenset()
    )  # lower case; with cluster_names: membership of either
    cluster_names: frozenset[str] = frozenset()

    @property
    def uses_tags(self) -> bool:
        return bool(self.tags)

    def matches(self, cluster: ClusterFacts) -> bool:
        if self.tags and not self.tags <= set(cluster.tags or ()):
            return False
        if self.regions and cluster.region not in self.regions:
            return False
        if self.name_pattern is not None and not fnmatch.fnmatchcase(
            cluster.name, self.name_pattern
        ):
            return False
        if self.cluster_ids or self.cluster_names:
            return cluster.id.lower() in self.cluster_ids or cluster.name in self.cluster_names
        return True


@dataclasses.dataclass(frozen=True)
class SetSpec:
    """A valid ``DOClusterAccessSet`` spec with defaults applied."""

    token_secret: SecretKeyRef | None  # exactly one of token_secret and account
    selector: Selector
    labels: Mapping[str, str]  # template.metadata: onto each child
    annotations: Mapping[str, str]
    template_json: str  # template.spec as canonical JSON (a frozen value that compares equal)
    resync_interval: datetime.timedelta
    deletion_policy: SetDeletionPolicy
    account: str | None = None  # spec.accountRef.name: the children name it too

    @property
    def template(self) -> dict[str, Any]:
        """A fresh copy of ``template.spec``."""
        value: dict[str, Any] = json.loads(self.template_json)
        return value


@dataclasses.dataclass(frozen=True)
class _Example:
    id: str = _EXAMPLE_ID
    name: str = "example"
    region: str = "nyc1"
    tags: tuple[str, ...] | None = ()
    state: str = "running"
    sso_required: bool = False


def parse_set_spec(body: Mapping[str, object]) -> SetSpec:
    """The spec of a set body, or :class:`InvalidSpecError` naming the bad field."""
    metadata = _mapping(body.get("metadata"), "metadata")
    set_name = metadata.get("name")
    if not isinstance(set_name, str) or not set_name:
        raise InvalidSpecError("metadata.name", "is missing")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidSpecError("spec", "is missing" if spec is None else "is not an object")
    token, account = specs.parse_token_source(spec)
    template = _mapping(spec.get("template"), "spec.template")
    template_metadata = _mapping(template.get("metadata"), "spec.template.metadata")
    template_spec = dict(_mapping(template.get("spec"), "spec.template.spec"))
    parsed = SetSpec(
        token_secret=token,
        account=account,
        selector=_selector(spec.get("selector")),
        labels=specs.parse_labels(template_metadata.get("labels"), "spec.template.metadata.labels"),
        annotations=specs.parse_annotations(
            template_metadata.get("annotations"), "spec.template.metadata.annotations"
        ),
        template_json=json.dumps(template_spec, sort_keys=True, separators=(",", ":")),
        resync_interval=_resync_interval(spec.get("resyncInterval")),
        deletion_policy=_deletion_policy(spec.get("deletionPolicy")),
    )
    _check_template(template_spec)
    # A template that cannot work for any cluster is the set's problem, not each child's.
    example = render(parsed, _Example(), set_name=set_name)
    try:
        example_child = child_name(set_name, _EXAMPLE_ID)
        specs.parse_spec({"metadata": {"name": example_child}, "spec": example})
    except InvalidSpecError as exc:
        raise InvalidSpecError(
            exc.field.replace("spec.", "spec.template.spec.", 1), exc.problem
        ) from None
    return parsed


def child_name(set_name: str, cluster_id: str, *, whole_id: bool = False) -> str:
    """``<set>-<first 8 characters of the cluster ID>`` (the whole ID when two clusters of a set
    share those 8), short enough that the child's default target name (``<child>-kubeconfig``)
    is a valid Secret name."""
    suffix = f"-{(cluster_id if whole_id else cluster_id[:8]).lower()}"
    room = _MAX_NAME - len(_TARGET_SUFFIX) - len(suffix)
    return set_name[:room].rstrip("-.") + suffix


def render(parsed: SetSpec, cluster: ClusterFacts, *, set_name: str) -> dict[str, Any]:
    """The spec of ``cluster``'s child: the template with the cluster, the token and the
    placeholders filled in (an absent target name stays absent: the child's default applies)."""
    values = {
        "cluster.name": cluster.name,
        "cluster.id": cluster.id,
        "cluster.shortID": cluster.id[:8],
        "cluster.region": cluster.region,
        "set.name": set_name,
    }
    child = parsed.template
    target = child.get("target")
    if isinstance(target, dict):
        if isinstance(target.get("name"), str):
            target["name"] = _substitute(target["name"], values)
        for field in ("labels", "annotations"):
            entries = target.get(field)
            if isinstance(entries, dict):
                target[field] = {
                    key: _substitute(text, values) if isinstance(text, str) else text
                    for key, text in entries.items()
                }
    child["clusterID"] = cluster.id
    if parsed.token_secret is not None:
        child["tokenSecretRef"] = {"name": parsed.token_secret.name, "key": parsed.token_secret.key}
    else:
        child["accountRef"] = {"name": parsed.account}
    return child


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def _check_template(template: Mapping[str, object]) -> None:
    for field in _FILLED_IN:
        if field in template:
            raise InvalidSpecError(
                f"spec.template.spec.{field}", "is filled in by the set for each cluster"
            )
    target = template.get("target")
    if not isinstance(target, Mapping):
        return
    places: list[tuple[str, object]] = [("spec.template.spec.target.name", target.get("name"))]
    for field in ("labels", "annotations"):
        entries = target.get(field)
        if isinstance(entries, Mapping):
            places += [
                (f"spec.template.spec.target.{field}[{key}]", text) for key, text in entries.items()
            ]
    for where, text in places:
        if not isinstance(text, str):
            continue
        for match in _PLACEHOLDER.finditer(text):
            if match.group(1) not in PLACEHOLDERS:
                known = ", ".join(f"$({name})" for name in PLACEHOLDERS)
                raise InvalidSpecError(
                    where, f"has an unknown placeholder {match.group(0)!r}; known: {known}"
                )


def _selector(value: object) -> Selector:
    selector = _mapping(value, "spec.selector")
    tags = _strings(selector.get("tags"), "spec.selector.tags", limit=32)
    regions = _strings(selector.get("regions"), "spec.selector.regions", limit=64)
    ids = _strings(selector.get("clusterIDs"), "spec.selector.clusterIDs", limit=_MAX_ITEMS)
    for cluster_id in ids:
        if not _UUID.fullmatch(cluster_id):
            raise InvalidSpecError("spec.selector.clusterIDs", f"{cluster_id!r} is not a UUID")
    names = _strings(selector.get("clusterNames"), "spec.selector.clusterNames", limit=_MAX_ITEMS)
    pattern = _name_pattern(selector.get("namePattern"))
    if not (tags or regions or ids or names or pattern is not None):
        raise InvalidSpecError(
            "spec.selector",
            "is empty, which would select every cluster of the account; give tags, regions, "
            'namePattern, clusterIDs or clusterNames (namePattern "*" selects all on purpose)',
        )
    return Selector(
        tags=frozenset(tags),
        regions=frozenset(regions),
        name_pattern=pattern,
        cluster_ids=frozenset(cluster_id.lower() for cluster_id in ids),
        cluster_names=frozenset(names),
    )


def _name_pattern(value: object) -> str | None:
    if value is None:
        return None
    field = "spec.selector.namePattern"
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(field, "is not a non-empty string")
    if len(value) > 255 or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidSpecError(field, "must be at most 255 printable characters without spaces")
    depth = 0
    for char in value:  # fnmatch takes an unbalanced bracket literally; a user meant a set
        if char == "[":
            if depth:
                raise InvalidSpecError(field, "has a '[' inside a [...] set")
            depth = 1
        elif char == "]" and depth:
            depth = 0
    if depth:
        raise InvalidSpecError(field, "has a '[' that is never closed")
    return value


def _strings(value: object, field: str, *, limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise InvalidSpecError(field, "is not a non-empty list")
    if len(value) > limit:
        raise InvalidSpecError(field, f"has more than {limit} entries")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > 255:
            raise InvalidSpecError(field, "must hold non-empty strings of at most 255 characters")
    return tuple(value)


def _resync_interval(value: object) -> datetime.timedelta:
    if value is None:
        return DEFAULT_RESYNC
    if not isinstance(value, str):
        raise InvalidSpecError("spec.resyncInterval", "is not a string")
    try:
        interval = specs.parse_duration(value)
    except ValueError as exc:
        raise InvalidSpecError("spec.resyncInterval", str(exc)) from None
    if interval < MIN_RESYNC:
        raise InvalidSpecError("spec.resyncInterval", "must be at least 1m")
    return interval


def _deletion_policy(value: object) -> SetDeletionPolicy:
    try:
        return SetDeletionPolicy(value if value is not None else "Delete")
    except ValueError:
        raise InvalidSpecError("spec.deletionPolicy", "is not Delete or Orphan") from None


def _mapping(value: object, field: str) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpecError(field, "is not an object")
    return value
