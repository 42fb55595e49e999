"""Hypothesis writes DOClusterAccessSet specs, plausible and hostile, and cluster listings.

A set spec is either refused with an :class:`InvalidSpecError` naming a field, or parsed; a parsed
one, planned against any listing and any children, never raises, never plans two children with
one name, never plans a child whose spec the operator would refuse nor one for a cluster that
requires SSO, and changes no child when clusters turn SSO-required. This is the pure half of
"bad input gets a clear condition, never a crash"; tests/e2e/test_fleet.py shows the conditions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from doks_access import spec as specs
from doks_access.digitalocean import Cluster
from doks_access.selection import Child, ClusterState, SetIdentity, plan
from doks_access.setspec import parse_set_spec

IDENTITY = SetIdentity(namespace="team", name="fleet", uid="0b6f4c5e-9a3d-4f41-8e0c-2d8f1c1b9a01")

_text = st.text(alphabet=st.sampled_from("abcXYZ019-_.:*?[]!$() /\\é\n"), min_size=0, max_size=24)
_placeholder = st.sampled_from(
    [
        "$(cluster.name)",
        "$(cluster.id)",
        "$(cluster.shortID)",
        "$(cluster.region)",
        "$(set.name)",
        "$(cluster.nope)",
        "$(",
        "$()",
    ]
)


def _mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else ``odd`` (hypothesis's one_of is not uniform)."""
    return st.integers(0, 4).flatmap(lambda n: usual if n else odd)


_dns = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
_word = _mostly(_dns, _text)
_name_like = st.one_of(
    _text, st.builds(lambda a, p, b: a + p + b, _dns | _text, _placeholder, _dns | _text)
)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), _text)
_json: st.SearchStrategy[Any] = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``strategy``, sometimes absent, sometimes any JSON at all."""
    return _mostly(strategy, st.one_of(st.just(None), _json))


_TAGS = ["env:prod", "team-a", "k8s"]
_NAMES = ["a-1", "b-1", "ab-2", "a-1", "Bad_Name", "c"]
_valid_selector = st.fixed_dictionaries(
    {"namePattern": st.sampled_from(["*", "a*", "[a-c]*", "?b*", "*-1"])},
    optional={
        "tags": st.lists(st.sampled_from(_TAGS), min_size=1, max_size=2),
        "regions": st.lists(st.sampled_from(["nyc1", "fra1"]), min_size=1, max_size=2),
    },
)
_hostile_selector = st.fixed_dictionaries(
    {},
    optional={
        "tags": _maybe(st.lists(_word, max_size=3)),
        "regions": _maybe(st.lists(st.sampled_from(["nyc1", "fra1", ""]), max_size=3)),
        "namePattern": _maybe(_word),
        "clusterIDs": _maybe(st.lists(st.uuids().map(str) | _text, max_size=2)),
        "clusterNames": _maybe(st.lists(_text, max_size=2)),
    },
)
_selector = _mostly(_valid_selector, _hostile_selector)
_target = st.fixed_dictionaries(
    {},
    optional={
        "name": _maybe(_name_like),
        "format": _maybe(st.sampled_from(["Kubeconfig", "Flux", "ClusterAPI", "ArgoCD", "x"])),
        "key": _maybe(_text),
        "labels": _maybe(st.dictionaries(_word, _name_like, max_size=2)),
        "annotations": _maybe(st.dictionaries(_text, _name_like, max_size=2)),
        "deletionPolicy": _maybe(st.sampled_from(["Delete", "Retain", "Orphan"])),
    },
)
_spec = st.fixed_dictionaries(
    {
        "tokenSecretRef": _mostly(
            st.just({"name": "do-token"}), st.fixed_dictionaries({"name": _maybe(_word)})
        ),
        "selector": _mostly(_selector, _json),
    },
    optional={
        "template": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "metadata": _maybe(
                        st.fixed_dictionaries(
                            {}, optional={"labels": _maybe(st.dictionaries(_text, _text))}
                        )
                    ),
                    "spec": _maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "expirySeconds": _maybe(st.integers(-1, 10**12)),
                                "target": _maybe(_target),
                                "clusterID": _maybe(_text),
                                "renewBefore": _maybe(st.sampled_from(["1h", "0s", "x", "90m"])),
                            },
                        )
                    ),
                },
            )
        ),
        "resyncInterval": _maybe(st.sampled_from(["5m", "30s", "1h", "", "forever"])),
        "deletionPolicy": _maybe(st.sampled_from(["Delete", "Orphan", "Retain"])),
    },
)
_cluster = st.builds(
    Cluster,
    id=st.uuids().map(str),
    name=_mostly(st.sampled_from(_NAMES), _word),
    region=st.sampled_from(["nyc1", "fra1", "ams3"]),
    endpoint=st.just(""),
    tags=_mostly(st.lists(st.sampled_from(_TAGS), max_size=3).map(tuple), st.none()),
    state=_mostly(
        st.just("running"), st.sampled_from(["provisioning", "deleting", "upgrading", "", "weird"])
    ),
    sso_required=_mostly(st.just(False), st.just(True)),
)


@settings(max_examples=400, deadline=None)
@given(spec=_spec, clusters=st.lists(_cluster, min_size=1, max_size=8))
def test_any_spec_is_refused_by_field_or_planned_without_error(
    spec: dict[str, Any], clusters: list[Cluster]
) -> None:
    body = {"metadata": {"name": IDENTITY.name}, "spec": spec}
    try:
        parsed = parse_set_spec(body)
    except specs.InvalidSpecError as exc:
        refused_field = exc.field
    else:
        refused_field = None
    event("refused" if refused_field else "parsed")
    if refused_field is not None:
        assert refused_field.startswith(("spec", "metadata"))
        return
    event(f"created {min(len(plan(IDENTITY, parsed, clusters, []).create), 2)}+")
    result = plan(IDENTITY, parsed, clusters, [])
    if result.count(ClusterState.SSO_REQUIRED):
        event("a cluster refused: SSO required")
    names = [manifest["metadata"]["name"] for manifest in result.create]
    assert len(names) == len(set(names))
    secrets = [specs.parse_spec(manifest).target.name for manifest in result.create]
    assert len(secrets) == len(set(secrets))  # collisions are refused, never planned
    sso_only = {c.id for c in clusters if c.sso_required} - {
        c.id for c in clusters if not c.sso_required
    }
    assert not {manifest["spec"]["clusterID"] for manifest in result.create} & sso_only
    # And planned again with those children in place, nothing more is created.
    children = [
        Child.from_body({**manifest, "status": {}}, set_uid=IDENTITY.uid)
        for manifest in result.create
    ]
    again = plan(IDENTITY, parsed, clusters, [c for c in children if c is not None])
    assert again.create == ()
    assert again.update == ()
    # Every cluster turning SSO-required changes no child: credentials survive a flag flip.
    flipped = plan(
        IDENTITY,
        parsed,
        [dataclasses.replace(c, sso_required=True) for c in clusters],
        [c for c in children if c is not None],
    )
    assert (flipped.create, flipped.update, flipped.remove) == ((), (), again.remove)
