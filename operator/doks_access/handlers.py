"""Kopf wiring, and nothing else: log in and watch.

Kopf lists and watches DOClusterAccess objects and the Secrets the operator manages (by its label,
server-side), and hands each event to the :class:`~doks_access.controller.Controller`, which keeps
a trimmed record and wakes the object in the dispatcher when there is news. DOClusterAccessSet
events go to the :class:`~doks_access.fleet.SetController`, which is also told of every event of
a set's child (a DOClusterAccess whose controlling owner is a set). There are no Kopf
daemons, timers or change handlers: nothing per object lives in Kopf between events, Kopf writes
no annotations, and no finalizer is needed (owned Secrets are garbage-collected through their
ownerReference).

The finalizer name stays configured as ``doks-access.dev/daemon``, the one the daemon-based
versions put on every object: since no handler needs it any more, Kopf removes it from each object
on the first event it sees, so that objects created by those versions can still be deleted.

What the handlers use comes from ``memo`` (built by ``cli`` before Kopf starts): the controller
and the clients, whose Kubernetes credentials Kopf's login reuses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from doks_access import bookkeeping, kube
from doks_access.controller import Controller
from doks_access.dependencies import Dependencies
from doks_access.fleet import SetController, SetObject
from doks_access.objects import AccessObject

# The daemons' finalizer, kept so that Kopf takes it off objects the daemon-based versions made.
LEGACY_FINALIZER = f"{kube.GROUP}/daemon"


def registry() -> kopf.OperatorRegistry:
    """The registry these handlers were added to (Kopf's default one)."""
    return kopf.get_default_registry()


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: with no change handlers, Kopf never needs one, yet by default it deep-copies
    every watched body (``managedFields`` included) on every event to build it."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[object] | None = None
    ) -> kopf.BodyEssence:
        del body, extra_fields
        return {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        del body
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        del body, patch, essence


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # events are the reconciler's, one per state change
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = LEGACY_FINALIZER
    settings.execution.max_workers = 1  # nothing here is synchronous; no thread pool needed
    # One known CRD and exact namespace names: no cluster-wide discovery of CRDs and namespaces,
    # which would need RBAC the operator has no other use for. cli checked that the CRD exists.
    settings.scanning.disabled = True


@kopf.on.login(id="login")
async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """Kopf's client uses the credentials the operator's own client loaded (one source)."""
    deps: Dependencies = memo["deps"]
    configuration = deps.api.configuration
    # Refreshed from the ServiceAccount's token file in a pod; static from a kubeconfig.
    authorization = await configuration.get_api_key_with_prefix("BearerToken")
    token = (authorization or "").partition(" ")[2]
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme="Bearer" if token else None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        username=configuration.username or None,
        password=configuration.password or None,
        proxy_url=configuration.proxy,
        default_namespace=None,
        expiration=None,
    )


@kopf.on.event(kube.GROUP, kube.VERSION, kube.PLURAL, id="doclusteraccess")
async def access_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller: Controller = memo["controller"]
    key = (body.metadata.namespace or "", body.metadata.name or "")
    owner = _owning_set(body)
    if owner is not None:  # a set's child: the set looks at its news (status, edit, deletion)
        sets: SetController = memo["sets"]
        sets.child_changed((key[0], owner))
    if event["type"] == "DELETED":
        controller.forget(key)
        return
    memory = controller.memory(key)
    controller.observe(
        AccessObject.from_body(event["object"], known=memory.obj if memory else None)
    )


@kopf.on.event(kube.GROUP, kube.VERSION, kube.SET_PLURAL, id="doclusteraccessset")
async def set_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    sets: SetController = memo["sets"]
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if event["type"] == "DELETED":
        sets.forget(key)
        return
    sets.observe(SetObject.from_body(event["object"], known=sets.memory(key)))


async def account_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A ClusterDOAccount changed, appeared or went: the objects and sets using it look again."""
    del event
    name = body.metadata.name or ""
    controller: Controller = memo["controller"]
    sets: SetController = memo["sets"]
    controller.account_changed(name)
    sets.account_changed(name)


def watch_accounts() -> None:
    """Watch ClusterDOAccounts too: only where they can be listed (accounts enabled), since a
    watch without the RBAC for it would be refused again and again."""
    kopf.on.event(kube.GROUP, kube.VERSION, kube.ACCOUNT_PLURAL, id="clusterdoaccount")(
        account_event
    )


def _owning_set(body: kopf.Body) -> str | None:
    for owner in body.metadata.get("ownerReferences") or ():
        if owner.get("controller") and owner.get("kind") == kube.SET_KIND:
            return str(owner.get("name") or "") or None
    return None


@kopf.on.event(
    "v1",
    "secrets",
    labels={bookkeeping.MANAGED_BY_LABEL: bookkeeping.MANAGED_BY_VALUE},
    id="managed-secret",
)
async def secret_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller: Controller = memo["controller"]
    owner = (body.metadata.annotations or {}).get(bookkeeping.OWNER, "")
    namespace, _slash, name = owner.partition("/")
    if namespace != body.metadata.namespace:
        return  # not written by a DOClusterAccess of this namespace
    version = "" if event["type"] == "DELETED" else str(body.metadata.get("resourceVersion") or "")
    controller.secret_changed(
        (namespace, name), name=body.metadata.name or "", resource_version=version
    )
