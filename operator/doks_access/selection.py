"""What a set should look like for a listing, and what it takes to get there (pure).

Given the set's spec, the account's clusters and the children that exist, :func:`plan` decides
for every selected cluster what state it is in and which writes make the children match:

- **Keyed by cluster ID.** A child is named after the set and the cluster ID
  (:func:`child_name`) and labelled with both, so a cluster renamed in DigitalOcean keeps its
  child: only what the template derives from the name changes (a Secret named after the cluster
  moves to the new name, the new one written before the old one is removed -- no gap).
- **Pending.** A selected cluster that is not running yet has no child; it gets one once it runs.
  A cluster already served keeps its child through upgrades and degraded spells.
- **SSO-required clusters are refused.** A cluster whose listing says ``sso.required`` accepts no
  token credential, so it gets no child, and its entry says why (``SSORequired``). This is looked
  at before the pending check, since the listing says it whatever the cluster's state: a
  provisioning cluster that requires SSO would not get a credential once it runs either, so it is
  refused, not pending (and does not make the set list every minute). It renders nothing, so it
  claims no target name and collides with no one. A cluster that already has a child keeps it
  when the flag is turned on: a flag flip deletes no credential, and the child reports what
  DigitalOcean answers at its next fetch.
- **Collisions are refused.** Two clusters rendering the same target Secret name would overwrite
  each other's credential: the one whose child already writes that Secret keeps it, the others are
  reported and get no child (or keep the one they have, unchanged).
- **Invalid renderings** (a cluster name that makes an invalid Secret name or label) are reported
  for that cluster; the other clusters go on.
- **Hand edits are put back.** A child whose spec means something other than the template's, or
  whose set labels and annotations differ, gets a merge patch back to the template; fields of the
  template's are owned by the set, other labels and annotations are left alone.
- **Gone is gone.** A child whose cluster is no longer selected, or no longer listed, or being
  deleted in DigitalOcean, is removed (the set's ``deletionPolicy`` says what becomes of its
  Secret).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from doks_access import spec as specs
from doks_access.setspec import ClusterFacts, SetSpec, child_name, render

__all__ = [
    "CLUSTER_ID_LABEL",
    "SERVED_STATES",
    "SET_LABEL",
    "SET_UID_LABEL",
    "Child",
    "ClusterState",
    "Entry",
    "Plan",
    "SetIdentity",
    "child_name",
    "merge_patch",
    "plan",
]

SET_UID_LABEL = "doks-access.dev/set-uid"  # what children are listed by
SET_LABEL = "doks-access.dev/set"  # for people and selectors: the set's name (when it fits)
CLUSTER_ID_LABEL = "doks-access.dev/cluster-id"
# Clusters that can be given a credential; a served one keeps its child while in any of these.
SERVED_STATES = frozenset({"running", "upgrading", "degraded"})
# Listed, but on the way out: treated as gone.
_GONE_STATES = frozenset({"deleting", "deleted"})
_TARGET_SUFFIX = "-kubeconfig"
_MAX_LABEL_VALUE = 63
_SSO_REQUIRED = (
    "the cluster requires SSO: DigitalOcean issues no token credential it accepts; "
    "turn off sso.required or leave it out of the selector"
)


class ClusterState(enum.StrEnum):
    """What a selected cluster's status entry says."""

    READY = "Ready"
    NOT_READY = "NotReady"
    STALLED = "Stalled"  # its child is not Ready and Stalled: it needs a human
    PENDING = "Pending"
    COLLISION = "Collision"
    INVALID = "Invalid"
    SSO_REQUIRED = "SSORequired"  # the cluster accepts no token credential: no child is made


@dataclasses.dataclass(frozen=True)
class SetIdentity:
    namespace: str
    name: str
    uid: str


@dataclasses.dataclass(frozen=True)
class Child:
    """A DOClusterAccess the set controls, as listed."""

    name: str
    uid: str
    cluster_id: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    ready: bool
    ready_message: str
    stalled: bool  # its Stalled condition is True (ready_message is then that condition's)
    secret_name: str  # where its credential is (status), else where its spec says

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, set_uid: str) -> Child | None:
        """The child in ``body``; None when the set ``set_uid`` does not control it."""
        metadata = body.get("metadata") or {}
        owners = metadata.get("ownerReferences") or []
        if not any(o.get("controller") and o.get("uid") == set_uid for o in owners):
            return None
        labels = metadata.get("labels") or {}
        status = body.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready, stalled = conditions.get("Ready"), conditions.get("Stalled")
        stalled_now = stalled is not None and stalled.get("status") == "True"
        about = stalled if stalled_now else ready
        spec = body.get("spec") or {}
        target = spec.get("target") or {}
        return cls(
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            cluster_id=str(labels.get(CLUSTER_ID_LABEL) or spec.get("clusterID") or "").lower(),
            spec=spec,
            labels=labels,
            annotations=metadata.get("annotations") or {},
            ready=ready is not None and ready.get("status") == "True",
            ready_message=str((about or {}).get("message") or "waiting for the first credential"),
            stalled=stalled_now,
            secret_name=str(
                status.get("secretName")
                or target.get("name")
                or f"{metadata.get('name')}{_TARGET_SUFFIX}"
            ),
        )


@dataclasses.dataclass(frozen=True)
class Entry:
    """One selected cluster in the set's status."""

    cluster_id: str
    cluster_name: str
    region: str
    state: ClusterState
    child: str | None = None
    secret_name: str | None = None
    message: str | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """The writes that make the children match, and the state of every selected cluster."""

    create: tuple[dict[str, Any], ...] = ()  # child manifests
    update: tuple[tuple[Child, dict[str, Any]], ...] = ()  # child, merge patch
    remove: tuple[Child, ...] = ()
    entries: tuple[Entry, ...] = ()

    def count(self, state: ClusterState) -> int:
        return sum(1 for entry in self.entries if entry.state is state)


def plan(
    identity: SetIdentity,
    parsed: SetSpec,
    clusters: Iterable[ClusterFacts],
    children: Sequence[Child],
) -> Plan:
    """What to write for ``clusters`` (the whole listing) given the ``children`` that exist."""
    by_cluster: dict[str, Child] = {}
    for listed in sorted(children, key=lambda c: c.name):
        by_cluster.setdefault(listed.cluster_id, listed)  # two for one cluster: the first stays
    extra = [child for child in children if by_cluster.get(child.cluster_id) is not child]
    selected = [
        cluster
        for cluster in clusters
        if parsed.selector.matches(cluster) and cluster.state not in _GONE_STATES
    ]
    wanted: dict[str, tuple[ClusterFacts, dict[str, Any], str]] = {}
    entries: list[Entry] = []
    taken_names = {child.name: child.cluster_id for child in children}
    # New children of clusters whose IDs start alike would share a name: each gets the whole ID.
    new_prefixes = collections.Counter(
        cluster.id.lower()[:8] for cluster in selected if cluster.id.lower() not in by_cluster
    )
    for cluster in selected:
        cluster_id = cluster.id.lower()
        child = by_cluster.get(cluster_id)
        if child is None and cluster.sso_required:  # before Pending: see the module docstring
            entries.append(_entry(cluster, ClusterState.SSO_REQUIRED, message=_SSO_REQUIRED))
            continue
        if child is None and not _served(cluster.state):
            message = f"the cluster is {cluster.state}; it gets a credential once it runs"
            entries.append(_entry(cluster, ClusterState.PENDING, message=message))
            continue
        name = child.name if child is not None else child_name(identity.name, cluster_id)
        if child is None and (
            taken_names.get(name, cluster_id) != cluster_id or new_prefixes[cluster_id[:8]] > 1
        ):
            name = child_name(identity.name, cluster_id, whole_id=True)
        manifest = _manifest(identity, parsed, cluster, name=name)
        try:
            secret_name = specs.parse_spec(manifest).target.name
        except specs.InvalidSpecError as exc:
            message = f"the template renders an invalid child for this cluster: {exc}"
            entries.append(_entry(cluster, ClusterState.INVALID, child=child, message=message))
            continue
        wanted[cluster_id] = (cluster, manifest, secret_name)
    collided = _collisions(wanted, by_cluster)
    creates: list[dict[str, Any]] = []
    updates: list[tuple[Child, dict[str, Any]]] = []
    for cluster_id, (cluster, manifest, secret_name) in wanted.items():
        child = by_cluster.get(cluster_id)
        if cluster_id in collided:
            entries.append(
                _entry(cluster, ClusterState.COLLISION, child=child, message=collided[cluster_id])
            )
            continue
        if child is None:
            creates.append(manifest)
            entries.append(
                Entry(
                    cluster_id=cluster_id,
                    cluster_name=cluster.name,
                    region=cluster.region,
                    state=ClusterState.NOT_READY,
                    child=manifest["metadata"]["name"],
                    secret_name=secret_name,
                    message="new: its first credential is on the way",
                )
            )
            continue
        patch = _child_patch(child, manifest)
        if patch:
            updates.append((child, patch))
        if child.ready and not patch:
            state = ClusterState.READY
        elif child.stalled and not patch:
            state = ClusterState.STALLED
        else:
            state = ClusterState.NOT_READY
        summary = None if state is ClusterState.READY else child.ready_message
        entries.append(
            Entry(
                cluster_id=cluster_id,
                cluster_name=cluster.name,
                region=cluster.region,
                state=state,
                child=child.name,
                secret_name=secret_name,
                message="the child is being put back to the template" if patch else summary,
            )
        )
    keep = {entry.cluster_id for entry in entries}
    removals = [child for child in by_cluster.values() if child.cluster_id not in keep]
    return Plan(
        create=tuple(creates),
        update=tuple(updates),
        remove=tuple(removals + extra),
        entries=tuple(entries),
    )


def merge_patch(observed: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``observed`` into ``desired``; {} if equal."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        before = observed.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif key not in observed or before != value:
            patch[key] = value
    for key in observed:
        if key not in desired:
            patch[key] = None
    return patch


def _manifest(
    identity: SetIdentity, parsed: SetSpec, cluster: ClusterFacts, *, name: str
) -> dict[str, Any]:
    labels = {
        **parsed.labels,
        SET_UID_LABEL: identity.uid,
        CLUSTER_ID_LABEL: cluster.id.lower(),
    }
    if len(identity.name) <= _MAX_LABEL_VALUE:
        labels[SET_LABEL] = identity.name
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": identity.namespace,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "doks-access.dev/v1alpha1",
                "kind": "DOClusterAccessSet",
                "name": identity.name,
                "uid": identity.uid,
                "controller": True,
            }
        ],
    }
    if parsed.annotations:
        metadata["annotations"] = dict(parsed.annotations)
    return {
        "apiVersion": "doks-access.dev/v1alpha1",
        "kind": "DOClusterAccess",
        "metadata": metadata,
        "spec": render(parsed, cluster, set_name=identity.name),
    }


def _collisions(
    wanted: Mapping[str, tuple[ClusterFacts, dict[str, Any], str]],
    children: Mapping[str, Child],
) -> dict[str, str]:
    """Cluster ID → why it cannot have its Secret, for every target name rendered twice."""
    claims: dict[str, list[str]] = {}
    for cluster_id, (_cluster, _manifest, secret_name) in wanted.items():
        claims.setdefault(secret_name, []).append(cluster_id)
    refused: dict[str, str] = {}
    for secret_name, claimants in claims.items():
        if len(claimants) < 2:
            continue
        # The child already writing this Secret keeps it; with none, no one gets it.
        holders = [c for c in claimants if c in children and children[c].secret_name == secret_name]
        keeper = holders[0] if holders else None
        for cluster_id in claimants:
            if cluster_id == keeper:
                continue
            others = ", ".join(
                f"{wanted[other][0].name} ({other})" for other in claimants if other != cluster_id
            )
            refused[cluster_id] = (
                f"target Secret {secret_name} is also rendered for {others}; "
                "make the template's target name unique per cluster"
            )
    return refused


def _child_patch(child: Child, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that puts ``child`` back to ``manifest``; {} when it means the same."""
    patch: dict[str, Any] = {}
    try:
        same_spec = specs.parse_spec({"metadata": {"name": child.name}, "spec": child.spec}) == (
            specs.parse_spec(manifest)
        )
    except specs.InvalidSpecError:
        same_spec = False
    if not same_spec:
        patch["spec"] = merge_patch(child.spec, manifest["spec"])
    metadata = manifest["metadata"]
    labels = {k: v for k, v in metadata["labels"].items() if child.labels.get(k) != v}
    annotations = {
        k: v for k, v in metadata.get("annotations", {}).items() if child.annotations.get(k) != v
    }
    if labels or annotations:
        patch["metadata"] = {
            **({"labels": labels} if labels else {}),
            **({"annotations": annotations} if annotations else {}),
        }
    return patch


def _served(state: str) -> bool:
    # An answer without a state is taken as running: a credential is then tried, and its
    # DOClusterAccess reports what DigitalOcean says.
    return not state or state in SERVED_STATES


def _entry(
    cluster: ClusterFacts, state: ClusterState, *, child: Child | None = None, message: str
) -> Entry:
    return Entry(
        cluster_id=cluster.id.lower(),
        cluster_name=cluster.name,
        region=cluster.region,
        state=state,
        child=None if child is None else child.name,
        secret_name=None if child is None else child.secret_name,
        message=message,
    )
