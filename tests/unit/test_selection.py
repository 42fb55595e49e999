"""What a set's children should be for a listing: created, put back, kept, refused or removed."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from doks_access import selection
from doks_access.digitalocean import Cluster
from doks_access.selection import (
    CLUSTER_ID_LABEL,
    SET_LABEL,
    SET_UID_LABEL,
    Child,
    ClusterState,
    Entry,
    Plan,
    SetIdentity,
    child_name,
    merge_patch,
)
from doks_access.setspec import SetSpec, parse_set_spec

SET = SetIdentity(namespace="ops", name="fleet", uid="6a1f0c1e-set-uid")
PROD_ID = "bd5f5959-5e1e-4205-a714-a914373942af"
STAGING_ID = "0c1d2e3f-4a5b-4c6d-8e7f-901234567890"
DEV_ID = "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def cluster(
    cluster_id: str = PROD_ID,
    name: str = "prod-1",
    *,
    region: str = "nyc1",
    state: str = "running",
    tags: tuple[str, ...] | None = ("fleet",),
    sso_required: bool = False,
) -> Cluster:
    return Cluster(
        id=cluster_id,
        name=name,
        region=region,
        endpoint="",
        tags=tags,
        state=state,
        sso_required=sso_required,
    )


def set_spec(*, target: dict[str, Any] | None = None, **template: Any) -> SetSpec:
    spec: dict[str, Any] = dict(template.pop("spec", {}))
    if target is not None:
        spec["target"] = target
    return parse_set_spec(
        {
            "metadata": {"name": SET.name},
            "spec": {
                "tokenSecretRef": {"name": "do-token"},
                "selector": {"tags": ["fleet"]},
                "template": {**template, "spec": spec},
            },
        }
    )


def plan(
    clusters: Iterable[Cluster],
    children: Sequence[Child] = (),
    *,
    parsed: SetSpec | None = None,
    identity: SetIdentity = SET,
) -> Plan:
    return selection.plan(identity, parsed or set_spec(), list(clusters), children)


def child_of(
    manifest: dict[str, Any],
    *,
    ready: bool = True,
    message: str = "",
    secret_name: str | None = None,
) -> Child:
    """The child as listed after ``manifest`` was created and reconciled."""
    body = copy.deepcopy(manifest)
    body["metadata"]["uid"] = f"uid-{body['metadata']['name']}"
    condition = {"type": "Ready", "status": "True" if ready else "False", "message": message}
    body["status"] = {"conditions": [condition]}
    if secret_name is not None:
        body["status"]["secretName"] = secret_name
    child = Child.from_body(body, set_uid=SET.uid)
    assert child is not None
    return child


def existing(
    served: Cluster, *, parsed: SetSpec | None = None, ready: bool = True, **edits: Any
) -> Child:
    """A child as the set created it for ``served``, Ready, optionally with its spec edited."""
    (manifest,) = plan([served], parsed=parsed).create
    manifest["spec"].update(edits)
    return child_of(manifest, ready=ready)


def entry_of(result: Plan, cluster_id: str) -> Entry:
    (found,) = [entry for entry in result.entries if entry.cluster_id == cluster_id]
    return found


# --- creating -----------------------------------------------------------------------------------


def test_creates_a_labelled_owned_child_with_the_rendered_spec_for_a_running_cluster() -> None:
    parsed = set_spec(
        target={"name": "$(cluster.name)-kubeconfig", "labels": {"region": "$(cluster.region)"}},
        metadata={"labels": {"team": "a"}, "annotations": {"example.com/by": "fleet"}},
        spec={"expirySeconds": 86400},
    )

    result = plan([cluster()], parsed=parsed)

    assert result.create == (
        {
            "apiVersion": "doks-access.dev/v1alpha1",
            "kind": "DOClusterAccess",
            "metadata": {
                "name": "fleet-bd5f5959",
                "namespace": "ops",
                "labels": {
                    "team": "a",
                    SET_UID_LABEL: SET.uid,
                    CLUSTER_ID_LABEL: PROD_ID,
                    SET_LABEL: "fleet",
                },
                "annotations": {"example.com/by": "fleet"},
                "ownerReferences": [
                    {
                        "apiVersion": "doks-access.dev/v1alpha1",
                        "kind": "DOClusterAccessSet",
                        "name": "fleet",
                        "uid": SET.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "clusterID": PROD_ID,
                "tokenSecretRef": {"name": "do-token", "key": "token"},
                "expirySeconds": 86400,
                "target": {"name": "prod-1-kubeconfig", "labels": {"region": "nyc1"}},
            },
        },
    )
    assert result.entries == (
        Entry(
            cluster_id=PROD_ID,
            cluster_name="prod-1",
            region="nyc1",
            state=ClusterState.NOT_READY,
            child="fleet-bd5f5959",
            secret_name="prod-1-kubeconfig",
            message="new: its first credential is on the way",
        ),
    )
    assert result.update == result.remove == ()


def test_a_created_child_gets_the_default_target_name_when_the_template_gives_none() -> None:
    result = plan([cluster()])

    assert "target" not in result.create[0]["spec"]
    assert result.entries[0].secret_name == "fleet-bd5f5959-kubeconfig"


def test_creates_one_child_per_matched_cluster_and_ignores_the_others() -> None:
    result = plan(
        [
            cluster(PROD_ID, "prod-1"),
            cluster(STAGING_ID, "staging-1"),
            cluster(DEV_ID, "dev-1", tags=("other",)),
        ]
    )

    assert [m["metadata"]["name"] for m in result.create] == ["fleet-bd5f5959", "fleet-0c1d2e3f"]
    assert [e.cluster_id for e in result.entries] == [PROD_ID, STAGING_ID]
    assert result.count(ClusterState.NOT_READY) == 2


def test_a_cluster_without_a_state_is_taken_as_running() -> None:
    assert len(plan([cluster(state="")]).create) == 1


def test_a_long_set_name_is_labelled_on_children_only_when_it_fits_a_label() -> None:
    long_set = SetIdentity(namespace="ops", name="f" * 64, uid=SET.uid)

    (manifest,) = plan([cluster()], identity=long_set).create

    assert SET_LABEL not in manifest["metadata"]["labels"]
    assert manifest["metadata"]["labels"][SET_UID_LABEL] == SET.uid


# --- pending clusters ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["provisioning", "invalid", "error"])
def test_a_cluster_that_does_not_run_yet_is_pending_and_gets_no_child(state: str) -> None:
    result = plan([cluster(state=state)])

    assert result.create == ()
    (entry,) = result.entries
    assert entry.state is ClusterState.PENDING
    assert entry.child is None
    assert f"the cluster is {state}" in (entry.message or "")
    assert result.count(ClusterState.PENDING) == 1


@pytest.mark.parametrize("state", ["upgrading", "degraded", "running"])
def test_a_served_cluster_keeps_its_child_through_upgrades_and_degraded_spells(state: str) -> None:
    served = existing(cluster())

    result = plan([cluster(state=state)], [served])

    assert result.create == result.update == result.remove == ()
    assert entry_of(result, PROD_ID).state is ClusterState.READY


# --- removing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["deleting", "deleted"])
def test_removes_the_child_of_a_cluster_being_deleted(state: str) -> None:
    served = existing(cluster())

    result = plan([cluster(state=state)], [served])

    assert result.remove == (served,)
    assert result.entries == ()


def test_removes_the_child_of_a_cluster_no_longer_listed() -> None:
    gone, kept = existing(cluster(PROD_ID)), existing(cluster(STAGING_ID, "staging-1"))

    result = plan([cluster(STAGING_ID, "staging-1")], [gone, kept])

    assert result.remove == (gone,)
    assert [e.cluster_id for e in result.entries] == [STAGING_ID]


def test_removes_the_child_of_a_cluster_no_longer_selected() -> None:
    served = existing(cluster())

    result = plan([cluster(tags=("untagged",))], [served])

    assert result.remove == (served,)


def test_removes_a_second_child_of_the_same_cluster() -> None:
    served = existing(cluster())
    duplicate = Child.from_body(
        {
            "metadata": {
                "name": "fleet-zz-copy",
                "labels": {CLUSTER_ID_LABEL: PROD_ID},
                "ownerReferences": [{"uid": SET.uid, "controller": True}],
            },
            "spec": {"clusterID": PROD_ID, "tokenSecretRef": {"name": "do-token"}},
        },
        set_uid=SET.uid,
    )
    assert duplicate is not None

    result = plan([cluster()], [served, duplicate])

    assert result.remove == (duplicate,)  # the first by name stays
    assert result.create == ()
    assert len(result.entries) == 1


# --- collisions ---------------------------------------------------------------------------------

BY_REGION = {"name": "$(cluster.region)-kubeconfig"}  # two clusters in one region collide


def test_two_clusters_rendering_one_target_name_get_no_child_when_none_holds_it() -> None:
    parsed = set_spec(target=BY_REGION)

    result = plan([cluster(PROD_ID, "prod-1"), cluster(STAGING_ID, "staging-1")], parsed=parsed)

    assert result.create == ()
    assert [e.state for e in result.entries] == [ClusterState.COLLISION] * 2
    prod = entry_of(result, PROD_ID)
    assert prod.message == (
        f"target Secret nyc1-kubeconfig is also rendered for staging-1 ({STAGING_ID}); "
        "make the template's target name unique per cluster"
    )


def test_the_child_already_writing_a_target_keeps_it_and_the_newcomer_is_refused() -> None:
    parsed = set_spec(target=BY_REGION)
    holder = existing(cluster(PROD_ID, "prod-1"), parsed=parsed)

    result = plan(
        [cluster(PROD_ID, "prod-1"), cluster(STAGING_ID, "staging-1")], [holder], parsed=parsed
    )

    assert result.create == result.update == result.remove == ()
    assert entry_of(result, PROD_ID).state is ClusterState.READY
    newcomer = entry_of(result, STAGING_ID)
    assert newcomer.state is ClusterState.COLLISION
    assert newcomer.child is None
    assert "also rendered for prod-1" in (newcomer.message or "")


def test_a_refused_cluster_keeps_the_child_it_has_unchanged() -> None:
    parsed = set_spec(target=BY_REGION)
    holder = existing(cluster(PROD_ID, "prod-1"), parsed=parsed)
    # staging's child writes another Secret (its cluster moved region since, say).
    moved = existing(cluster(STAGING_ID, "staging-1", region="ams3"), parsed=parsed)

    result = plan(
        [cluster(PROD_ID, "prod-1"), cluster(STAGING_ID, "staging-1")],
        [holder, moved],
        parsed=parsed,
    )

    assert result.remove == result.update == ()
    refused = entry_of(result, STAGING_ID)
    assert refused.state is ClusterState.COLLISION
    assert refused.child == moved.name
    assert refused.secret_name == "ams3-kubeconfig"


# --- invalid renderings -------------------------------------------------------------------------

BY_NAME = {"name": "$(cluster.name)-kubeconfig"}


def test_a_cluster_whose_name_renders_an_invalid_child_is_reported_and_the_others_go_on() -> None:
    parsed = set_spec(target=BY_NAME)

    result = plan([cluster(PROD_ID, "Prod_1"), cluster(STAGING_ID, "staging-1")], parsed=parsed)

    assert [m["metadata"]["name"] for m in result.create] == ["fleet-0c1d2e3f"]
    invalid = entry_of(result, PROD_ID)
    assert invalid.state is ClusterState.INVALID
    assert invalid.child is None
    assert invalid.message is not None
    assert invalid.message.startswith("the template renders an invalid child for this cluster:")
    assert "spec.target.name" in invalid.message


def test_the_child_of_a_cluster_that_now_renders_invalid_is_kept_not_removed() -> None:
    parsed = set_spec(target=BY_NAME)
    served = existing(cluster(PROD_ID, "prod-1"), parsed=parsed)

    result = plan([cluster(PROD_ID, "Prod 1 (renamed)")], [served], parsed=parsed)

    assert result.remove == result.update == result.create == ()
    invalid = entry_of(result, PROD_ID)
    assert invalid.state is ClusterState.INVALID
    assert invalid.child == served.name
    assert invalid.secret_name == "prod-1-kubeconfig"


# --- clusters that require SSO ------------------------------------------------------------------

SSO_MESSAGE = (
    "the cluster requires SSO: DigitalOcean issues no token credential it accepts; "
    "turn off sso.required or leave it out of the selector"
)


def test_a_new_cluster_that_requires_sso_gets_no_child_and_the_others_go_on() -> None:
    result = plan([cluster(PROD_ID, "prod-1", sso_required=True), cluster(STAGING_ID, "staging-1")])

    assert [m["metadata"]["name"] for m in result.create] == ["fleet-0c1d2e3f"]
    assert entry_of(result, PROD_ID) == Entry(
        cluster_id=PROD_ID,
        cluster_name="prod-1",
        region="nyc1",
        state=ClusterState.SSO_REQUIRED,
        message=SSO_MESSAGE,
    )
    assert result.count(ClusterState.SSO_REQUIRED) == 1


def test_a_cluster_that_turns_sso_required_keeps_its_child_unchanged() -> None:
    served = existing(cluster())

    result = plan([cluster(sso_required=True)], [served])

    assert result.create == result.update == result.remove == ()
    entry = entry_of(result, PROD_ID)
    assert entry.state is ClusterState.READY  # until the child says otherwise
    assert entry.child == served.name


@pytest.mark.parametrize("state", ["provisioning", "error"])
def test_a_cluster_that_requires_sso_is_refused_not_pending_whatever_its_state(
    state: str,
) -> None:
    result = plan([cluster(state=state, sso_required=True)])

    assert result.create == ()
    assert entry_of(result, PROD_ID).state is ClusterState.SSO_REQUIRED
    assert result.count(ClusterState.PENDING) == 0


def test_a_cluster_that_requires_sso_claims_no_target_name() -> None:
    parsed = set_spec(target=BY_REGION)

    result = plan(
        [cluster(PROD_ID, "prod-1", sso_required=True), cluster(STAGING_ID, "staging-1")],
        parsed=parsed,
    )

    (manifest,) = result.create
    assert manifest["spec"]["target"]["name"] == "nyc1-kubeconfig"
    assert entry_of(result, STAGING_ID).state is ClusterState.NOT_READY
    assert result.count(ClusterState.COLLISION) == 0


# --- putting hand edits back --------------------------------------------------------------------


def test_a_hand_edited_child_is_patched_back_to_the_template() -> None:
    parsed = set_spec(spec={"expirySeconds": 86400})
    edited = existing(cluster(), parsed=parsed, expirySeconds=3600, suspend=True)

    result = plan([cluster()], [edited], parsed=parsed)

    assert result.update == ((edited, {"spec": {"expirySeconds": 86400, "suspend": None}}),)
    entry = entry_of(result, PROD_ID)
    assert entry.state is ClusterState.NOT_READY  # Ready, but not as the template says
    assert entry.message == "the child is being put back to the template"


def test_a_child_pointed_at_another_cluster_is_patched_back() -> None:
    edited = existing(cluster(), clusterID=STAGING_ID)

    result = plan([cluster()], [edited])

    assert result.update == ((edited, {"spec": {"clusterID": PROD_ID}}),)


def test_a_child_whose_spec_no_longer_parses_is_patched_back() -> None:
    edited = existing(cluster(), expirySeconds="soon")

    result = plan([cluster()], [edited])

    assert result.update == ((edited, {"spec": {"expirySeconds": None}}),)


def test_a_child_that_means_the_same_as_the_template_is_not_patched() -> None:
    explicit = existing(
        cluster(),
        expirySeconds=0,
        verify=False,
        suspend=False,
        target={
            "format": "Kubeconfig",
            "key": "kubeconfig",
            "deletionPolicy": "Delete",
            "name": "fleet-bd5f5959-kubeconfig",
        },
    )

    result = plan([cluster()], [explicit])

    assert result.update == ()
    assert entry_of(result, PROD_ID).state is ClusterState.READY


def test_a_child_missing_the_set_label_gets_a_label_patch_only() -> None:
    served = existing(cluster())
    labels = {k: v for k, v in served.labels.items() if k != SET_LABEL}
    unlabelled = Child(**{**vars(served), "labels": {**labels, "someone/else": "kept"}})

    result = plan([cluster()], [unlabelled])

    assert result.update == ((unlabelled, {"metadata": {"labels": {SET_LABEL: "fleet"}}}),)


def test_a_child_whose_set_annotation_was_changed_gets_it_back() -> None:
    parsed = set_spec(metadata={"annotations": {"example.com/by": "fleet"}})
    served = existing(cluster(), parsed=parsed)
    edited = Child(**{**vars(served), "annotations": {"example.com/by": "me"}})

    result = plan([cluster()], [edited], parsed=parsed)

    assert result.update == ((edited, {"metadata": {"annotations": {"example.com/by": "fleet"}}}),)


def test_a_renamed_cluster_keeps_its_child_and_the_target_follows_the_name() -> None:
    parsed = set_spec(target=BY_NAME)
    served = existing(cluster(PROD_ID, "prod-1"), parsed=parsed)

    result = plan([cluster(PROD_ID, "prod-one")], [served], parsed=parsed)

    assert result.create == result.remove == ()
    assert result.update == ((served, {"spec": {"target": {"name": "prod-one-kubeconfig"}}}),)
    entry = entry_of(result, PROD_ID)
    assert entry.child == served.name == "fleet-bd5f5959"
    assert entry.cluster_name == "prod-one"
    assert entry.secret_name == "prod-one-kubeconfig"


# --- readiness ----------------------------------------------------------------------------------


def test_a_child_that_is_not_ready_yet_is_reported_with_its_condition_message() -> None:
    (manifest,) = plan([cluster()]).create
    waiting = child_of(manifest, ready=False, message="DigitalOcean is rate limiting.")

    entry = entry_of(plan([cluster()], [waiting]), PROD_ID)

    assert entry.state is ClusterState.NOT_READY
    assert entry.message == "DigitalOcean is rate limiting."


def test_a_ready_child_is_reported_ready_without_a_message() -> None:
    entry = entry_of(plan([cluster()], [existing(cluster())]), PROD_ID)

    assert entry.state is ClusterState.READY
    assert entry.message is None
    assert entry.child == "fleet-bd5f5959"


# --- child names --------------------------------------------------------------------------------


def test_a_child_is_named_after_the_set_and_the_start_of_the_cluster_id() -> None:
    assert child_name("fleet", PROD_ID) == "fleet-bd5f5959"
    assert child_name("fleet", PROD_ID.upper()) == "fleet-bd5f5959"
    assert child_name("fleet", PROD_ID, whole_id=True) == f"fleet-{PROD_ID}"


@pytest.mark.parametrize("whole_id", [False, True])
@pytest.mark.parametrize("set_name", ["f" * 253, "a" * 231 + ".-b" + "c" * 30, "a.b" * 80])
def test_a_long_set_name_is_cut_so_that_the_default_target_name_is_valid(
    set_name: str, whole_id: bool
) -> None:
    name = child_name(set_name, PROD_ID, whole_id=whole_id)
    target = f"{name}-kubeconfig"

    assert len(target) <= 253
    assert _DNS_SUBDOMAIN.fullmatch(target)
    assert name.endswith(PROD_ID if whole_id else "-bd5f5959")


def test_a_newcomer_whose_id_starts_like_an_existing_childs_gets_the_whole_id() -> None:
    first = cluster("abcdef01-0000-4000-8000-000000000001", "a")
    second = cluster("abcdef01-0000-4000-8000-000000000002", "b")
    served = existing(first)

    result = plan([first, second], [served])

    (manifest,) = result.create
    assert manifest["metadata"]["name"] == f"fleet-{second.id}"
    assert entry_of(result, second.id).secret_name == f"fleet-{second.id}-kubeconfig"


def test_two_newcomers_whose_ids_start_alike_get_distinct_names_and_no_collision() -> None:
    first = cluster("abcdef01-0000-4000-8000-000000000001", "a")
    second = cluster("abcdef01-0000-4000-8000-000000000002", "b")

    result = plan([first, second])

    assert [m["metadata"]["name"] for m in result.create] == [
        f"fleet-{first.id}",
        f"fleet-{second.id}",
    ]
    assert [e.state for e in result.entries] == [ClusterState.NOT_READY] * 2


# --- reading children ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "owners",
    [
        [],
        [{"uid": SET.uid}],  # owner, not controller
        [{"uid": "another-set", "controller": True}],
        [{"uid": SET.uid, "controller": False}],
    ],
)
def test_an_object_the_set_does_not_control_is_not_its_child(owners: list[Any]) -> None:
    body = {"metadata": {"name": "x", "ownerReferences": owners}, "spec": {"clusterID": PROD_ID}}

    assert Child.from_body(body, set_uid=SET.uid) is None


def test_a_child_is_read_from_its_labels_spec_and_status() -> None:
    body = {
        "metadata": {
            "name": "fleet-bd5f5959",
            "uid": "child-uid",
            "labels": {CLUSTER_ID_LABEL: PROD_ID.upper()},
            "annotations": {"a": "b"},
            "ownerReferences": [{"uid": "other"}, {"uid": SET.uid, "controller": True}],
        },
        "spec": {"clusterID": STAGING_ID, "target": {"name": "spec-name"}},
        "status": {
            "secretName": "written-name",
            "conditions": [{"type": "Ready", "status": "True", "message": "valid until"}],
        },
    }

    child = Child.from_body(body, set_uid=SET.uid)

    assert child == Child(
        name="fleet-bd5f5959",
        uid="child-uid",
        cluster_id=PROD_ID,  # the label first, in lower case
        spec=body["spec"],
        labels=body["metadata"]["labels"],
        annotations={"a": "b"},
        ready=True,
        ready_message="valid until",
        stalled=False,
        secret_name="written-name",
    )


def test_a_child_without_status_or_label_falls_back_to_its_spec() -> None:
    body = {
        "metadata": {"name": "c", "ownerReferences": [{"uid": SET.uid, "controller": True}]},
        "spec": {"clusterID": PROD_ID.upper()},
    }

    child = Child.from_body(body, set_uid=SET.uid)

    assert child is not None
    assert child.cluster_id == PROD_ID
    assert child.secret_name == "c-kubeconfig"
    assert child.ready is False
    assert child.ready_message == "waiting for the first credential"


# --- merge patches ------------------------------------------------------------------------------


def test_a_merge_patch_sets_changed_keys_and_nulls_removed_ones_at_any_depth() -> None:
    observed = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "gone": True}
    desired = {"a": 1, "b": {"c": 20}, "e": [1, 2], "new": {"x": 1}}

    assert merge_patch(observed, desired) == {
        "b": {"c": 20, "d": None},
        "e": [1, 2],
        "new": {"x": 1},
        "gone": None,
    }


def test_a_merge_patch_replaces_a_value_of_another_type_whole() -> None:
    assert merge_patch({"target": "x"}, {"target": {"name": "y"}}) == {"target": {"name": "y"}}


def test_the_merge_patch_between_equal_documents_is_empty() -> None:
    document = {"a": {"b": [1, {"c": None}]}, "d": None}

    assert merge_patch(document, copy.deepcopy(document)) == {}
