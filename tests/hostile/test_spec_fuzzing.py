"""Hypothesis writes DOClusterAccess objects, plausible and hostile, to the real API server.

Every object is either refused at admission (the CRD's schema and CEL rules) or accepted and then
settles in a condition a user can act on (objects that name a ClusterDOAccount instead of a token
Secret included: the test's own account, one that does not exist, hostile names) -- ``Ready=True``,
``Stalled=True`` with a reason, or ``Ready=False reason=Suspended`` -- within a bounded time.
Meanwhile the operator stays up, and an unrelated object in the same namespace keeps its Secret
untouched: one tenant's nonsense must not cost another tenant its credential.

Set ``DOKS_ACCESS_HOSTILE_REPORT`` to a file to get the counts as JSON (``HYPOTHESIS_PROFILE=long``
for hundreds of objects).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from doks_access_testkit.emulator import Emulator
from doks_access_testkit.emulator.state import Cluster as EmulatedCluster
from tests import kube
from tests.e2e.objects import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create_token_secret,
    get_access,
    wait_for_condition,
)
from tests.running_operator import ACCOUNT_NAMESPACE, OperatorRunner

REPORT_ENV = "DOKS_ACCESS_HOSTILE_REPORT"
TOKEN_SECRET = "digitalocean-api"
# A token Secret holding text that no HTTP header can carry.
ODD_TOKEN_SECRET = "odd-token"
ODD_TOKEN = "not a token: spaces,\nnewlines and é"
SENTINEL = "sentinel"
SENTINEL_SECRET = f"{SENTINEL}-kubeconfig"
SETTLE_SECONDS = 30.0
REFRESH = "doks-access.dev/refresh-requested-at"


@dataclasses.dataclass
class Tally:
    generated: int = 0
    rejected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    settled: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    slowest_settle_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        stalled = {k.removeprefix("Stalled/"): v for k, v in self.settled.items() if "/" in k}
        return {
            "generated": self.generated,
            "rejected_at_admission": sum(self.rejected.values()),
            "rejected_by_status": dict(self.rejected),
            "ready": self.settled["Ready"],
            "suspended": self.settled["Suspended"],
            "stalled_by_reason": stalled,
            "slowest_settle_seconds": round(self.slowest_settle_seconds, 1),
        }


# -- what hypothesis draws ------------------------------------------------------------------------
#
# Each object is wrong in at most one way the apiserver refuses (an object wrong everywhere is
# refused at once and tests little); the "admissible" values are hostile too -- odd names, huge
# annotations, unknown fields, another object's Secret -- just not in a way admission catches.

_DNS_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_ANY_TEXT = st.text(max_size=40)
_HUGE_TEXT = st.integers(100_000, 250_000).map(lambda n: "h" * n)  # near the 256 KiB cap
_WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too: not JSON, the apiserver must say so
    _ANY_TEXT,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(_ANY_TEXT, _ANY_TEXT, max_size=3),
)
_LABEL_KEY = st.one_of(_DNS_LABEL, st.builds("{}.io/{}".format, _DNS_LABEL, _DNS_LABEL))
_ODD_KEY = st.one_of(_LABEL_KEY, _ANY_TEXT.filter(bool))
_SECRET_NAME = st.one_of(
    st.sampled_from([TOKEN_SECRET, ODD_TOKEN_SECRET, SENTINEL_SECRET, "shared", "missing"]),
    _DNS_LABEL,
)
_BAD_SECRET_NAME = st.one_of(st.just("n" * 254), _ANY_TEXT, _WRONG_TYPES)
_FORMATS = st.sampled_from(["Kubeconfig", "Flux", "ClusterAPI", "ArgoCD"])
_MAX_EXPIRY = 100 * 365 * 86400


def _admissible_cluster(cluster_id: str) -> st.SearchStrategy[dict[str, object]]:
    return st.one_of(
        st.just({"clusterID": cluster_id}),
        st.just({"clusterName": "solo"}),
        st.just({"clusterName": "twin"}),  # two clusters share it
        st.uuids().map(lambda u: {"clusterID": str(u)}),
        st.text(min_size=1, max_size=255).map(lambda n: {"clusterName": n}),
    )


_REFUSED_CLUSTER = st.one_of(
    st.just({}),  # neither
    st.uuids().map(lambda u: {"clusterID": str(u), "clusterName": "solo"}),  # both
    st.text(min_size=256, max_size=400).map(lambda n: {"clusterName": n}),
    _WRONG_TYPES.map(lambda v: {"clusterID": v}),
    _WRONG_TYPES.map(lambda v: {"clusterName": v}),
)
_TOKEN_REF = st.fixed_dictionaries(
    {"name": _SECRET_NAME},
    optional={
        "key": st.sampled_from(["token", "kubeconfig", "nokey"]),
        "namespace": st.sampled_from(["default", "kube-system"]),  # there is no such field
        "unknown": _ANY_TEXT,
    },
)
_TARGET = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(_SECRET_NAME, st.just("n" * 253)),
        "format": _FORMATS,
        "labels": st.dictionaries(_ODD_KEY, st.one_of(_DNS_LABEL, _ANY_TEXT), max_size=3),
        "annotations": st.dictionaries(_ODD_KEY, _ANY_TEXT, max_size=3),
        "deletionPolicy": st.sampled_from(["Delete", "Retain"]),
        "adopt": st.booleans(),
        "namespace": st.just("kube-system"),  # there is no such field
    },
)
# Not 1..599 s: a credential that short is renewed every few seconds by design, which is churn,
# not hostility, and would spend the test token's rate limit.
_EXPIRY = st.one_of(
    st.just(0), st.integers(600, _MAX_EXPIRY), st.integers(_MAX_EXPIRY + 1, 2**63 - 1)
)
_OPTIONAL_SPEC = {
    "expirySeconds": (_EXPIRY, st.one_of(st.integers(-(2**63), -1), st.just(3600.5), _ANY_TEXT)),
    "target": (_TARGET, _WRONG_TYPES.filter(lambda v: v is not None)),
    "renewBefore": (
        st.sampled_from(["1h", "1ms", "0s", "999999h", "1.5h30m", "99999999999999999999h"]),
        st.one_of(_ANY_TEXT, _WRONG_TYPES),
    ),
    "verify": (st.booleans(), _ANY_TEXT),
    "suspend": (st.booleans(), st.integers()),
    "unknownField": (_WRONG_TYPES, _WRONG_TYPES),  # pruned, whatever it is
}
_REFRESH_VALUE = st.one_of(st.just("2026-01-01T00:00:00Z"), _ANY_TEXT, _HUGE_TEXT)
_ANNOTATIONS = st.one_of(
    st.none(),
    st.dictionaries(_LABEL_KEY, _ANY_TEXT, max_size=2),
    st.builds(lambda value: {REFRESH: value}, _REFRESH_VALUE),
)
_REFUSED_ANNOTATIONS = st.one_of(
    st.dictionaries(_ANY_TEXT, _ANY_TEXT, min_size=1, max_size=2),
    st.builds(lambda value: {REFRESH: value, "a.io/big": "b" * 200_000}, _HUGE_TEXT),
    _WRONG_TYPES.filter(lambda v: v is not None),
)
_LABELS = st.one_of(st.none(), st.dictionaries(_LABEL_KEY, _DNS_LABEL, max_size=3))
_REFUSED_LABELS = st.one_of(
    st.dictionaries(_ANY_TEXT, _ANY_TEXT, min_size=1, max_size=2),
    _WRONG_TYPES.filter(lambda v: v is not None),
)
_REFUSABLE = [
    "name",
    "labels",
    "annotations",
    "spec",
    "cluster",
    "tokenSecretRef",
    "accountRef",
    *_OPTIONAL_SPEC,
]
# Where the token comes from: a Secret of the namespace, an account, or -- refused at admission
# -- both or neither.
_TOKEN_SOURCES = st.sampled_from(["secret", "secret", "account", "both", "neither"])


@dataclasses.dataclass(frozen=True)
class Drawn:
    """One object, but for its name's unique suffix (hypothesis replays draws)."""

    name_stem: str
    labels: object
    annotations: object
    spec: object

    def body(self, serial: int) -> dict[str, Any]:
        suffix = f"-x{serial}"
        if self.name_stem == "long":
            # The longest name there is: "<name>-kubeconfig" cannot be a Secret's name.
            name = "l" * (253 - len(suffix)) + suffix
        else:
            name = self.name_stem + suffix
        metadata: dict[str, object] = {"name": name}
        if self.labels is not None:
            metadata["labels"] = self.labels
        if self.annotations is not None:
            metadata["annotations"] = self.annotations
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DOClusterAccess"}
        return {**body, "metadata": metadata, "spec": self.spec}

    def summary(self) -> str:
        # For a failure message: shapes, not megabytes of padding.
        return json.dumps(dataclasses.asdict(self), default=repr)[:2000]


@st.composite
def _objects(draw: st.DrawFn, cluster_id: str, account: str) -> Drawn:
    refused = draw(st.sampled_from([None, None, None, None, *_REFUSABLE]))

    def pick(field: str, admissible: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
        return draw(other if field == refused else admissible)

    spec: dict[str, object] = {**pick("cluster", _admissible_cluster(cluster_id), _REFUSED_CLUSTER)}
    source = draw(_TOKEN_SOURCES)
    if source in ("secret", "both"):
        spec["tokenSecretRef"] = pick("tokenSecretRef", _TOKEN_REF, _BAD_SECRET_NAME.map(_named))
    if source in ("account", "both"):
        accounts = st.sampled_from([account, account, "missing", "a.b"]).map(_named)
        spec["accountRef"] = pick("accountRef", accounts, _BAD_SECRET_NAME.map(_named))
    for field, (admissible, other) in _OPTIONAL_SPEC.items():
        if field == refused or draw(st.booleans()):
            spec[field] = pick(field, admissible, other)
    return Drawn(
        name_stem=pick("name", st.one_of(_DNS_LABEL, st.just("long")), st.text(min_size=1)),
        labels=pick("labels", _LABELS, _REFUSED_LABELS),
        annotations=pick("annotations", _ANNOTATIONS, _REFUSED_ANNOTATIONS),
        spec=pick("spec", st.just(spec), _WRONG_TYPES),
    )


def _named(name: object) -> dict[str, object]:
    return {"name": name}


# -- the test -------------------------------------------------------------------------------------


def _settled(obj: dict[str, Any]) -> str | None:
    """The condition the object came to rest in, or None while it has not."""
    stalled, ready = condition(obj, "Stalled"), condition(obj, "Ready")
    if stalled and stalled["status"] == "True":
        return f"Stalled/{stalled['reason']}"
    if ready and ready["status"] == "True":
        return "Ready"
    if ready and ready["status"] == "False" and ready["reason"] == "Suspended":
        return "Suspended"
    return None


def _tenant(api: client.ApiClient, namespace: str, digitalocean: Emulator) -> str:
    """An account of this test's own (its rate limit is nobody else's), with one cluster named
    ``solo`` and two named ``twin``; the token Secrets; and a ClusterDOAccount named like the
    namespace that serves it the ``solo`` cluster for an hour at most. Returns ``solo``'s ID."""
    account = f"hostile-{namespace}"
    token = digitalocean.add_token(account=account)
    solo = digitalocean.add_cluster(EmulatedCluster(name="solo", account=account))
    for _ in range(2):
        digitalocean.add_cluster(EmulatedCluster(name="twin", account=account))
    create_token_secret(api, namespace, token=token.token)
    core = client.CoreV1Api(api)
    if kube.is_absent(lambda: core.read_namespace(ACCOUNT_NAMESPACE)):
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=ACCOUNT_NAMESPACE))
        )
    create_token_secret(api, ACCOUNT_NAMESPACE, token=token.token, name=namespace)
    client.CustomObjectsApi(api).create_cluster_custom_object(
        GROUP,
        VERSION,
        "clusterdoaccounts",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterDOAccount",
            "metadata": {"name": namespace},
            "spec": {
                "tokenSecretRef": {"name": namespace},
                "tenants": [{"namespaces": [namespace], "clusters": {"ids": [solo.id]}}],
                "maxExpirySeconds": 3600,
            },
        },
    )
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=ODD_TOKEN_SECRET), string_data={"token": ODD_TOKEN}
        ),
    )
    return solo.id


def _secret_state(api: client.ApiClient, namespace: str, name: str) -> tuple[str, object]:
    secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    return secret.metadata.resource_version, secret.data


def test_any_object_is_refused_at_admission_or_settles_and_harms_no_neighbour(
    api: client.ApiClient,
    namespace: str,
    crds: list[str],
    digitalocean: Emulator,
    operator: OperatorRunner,
) -> None:
    del crds  # installed: admission is the CRD's schema
    cluster_id = _tenant(api, namespace, digitalocean)
    objects = client.CustomObjectsApi(api)
    sentinel_body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DOClusterAccess",
        "metadata": {"name": SENTINEL},
        "spec": {
            "clusterID": cluster_id,
            "expirySeconds": 3600,
            "tokenSecretRef": {"name": TOKEN_SECRET},
        },
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, sentinel_body)
    wait_for_condition(api, namespace, SENTINEL, "Ready", "True", "Issued")
    sentinel_secret = _secret_state(api, namespace, SENTINEL_SECRET)
    token_secret = _secret_state(api, namespace, TOKEN_SECRET)
    log_start = len(operator.log())
    tally, serials = Tally(), itertools.count()
    started = time.monotonic()

    @given(drawn=_objects(cluster_id, namespace))
    def apply_one(drawn: Drawn) -> None:
        body = drawn.body(next(serials))
        tally.generated += 1
        try:
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        except ApiException as exc:
            if exc.status not in (400, 422):
                raise AssertionError(f"{exc.status} for {drawn.summary()}") from None
            tally.rejected[str(exc.status)] += 1
            return
        name = body["metadata"]["name"]
        applied = time.monotonic()
        outcome = kube.eventually(
            lambda: _settled(get_access(api, namespace, name)),
            what=f"a settled condition for {drawn.summary()}",
            timeout=SETTLE_SECONDS,
        )
        tally.settled[outcome] += 1
        tally.slowest_settle_seconds = max(tally.slowest_settle_seconds, time.monotonic() - applied)

    try:
        apply_one()
    finally:
        _report(tally, seconds=time.monotonic() - started)
        kube.delete_ignoring_absence(
            lambda: objects.delete_cluster_custom_object(
                GROUP, VERSION, "clusterdoaccounts", namespace
            )
        )

    assert operator.process.exit_code() is None
    sentinel = get_access(api, namespace, SENTINEL)
    assert condition(sentinel, "Ready")["status"] == "True"
    assert condition(sentinel, "Stalled") is None
    assert _secret_state(api, namespace, SENTINEL_SECRET) == sentinel_secret
    assert _secret_state(api, namespace, TOKEN_SECRET) == token_secret
    log = operator.log()[log_start:]
    assert "Traceback" not in log
    assert ODD_TOKEN.split(":")[0] not in log
    assert tally.settled, "no generated object got past admission: the generator is too hostile"


def _report(tally: Tally, *, seconds: float) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    try:
        report = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        report = {}
    report["spec_fuzzing"] = {**tally.as_json(), "seconds": round(seconds, 1)}
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=True))
