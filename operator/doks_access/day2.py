"""The day-2 commands, ``status``, ``renew`` and ``check``: what an administrator asks of the
operator's objects with any kubeconfig, like cert-manager's ``cmctl``.

They use the operator's own Kubernetes client (:mod:`doks_access.kube`: the same discovery of
credentials, the same error mapping) with a few read calls of their own, and
:mod:`doks_access.day2view` for everything shown. Every API failure ends a command with one line
saying what to do (:func:`explain`); no token or kubeconfig content is ever printed.

``renew`` renews DOClusterAccess objects only. A DOClusterAccessSet's refresh annotation asks for a
new *listing* of its clusters, not new credentials, so ``renew`` refuses a set and names the
command that renews its children (``--all -l doks-access.dev/set=NAME``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from doks_access import bookkeeping, kube
from doks_access import day2view as view

__all__ = [
    "Day2Api",
    "check",
    "context_namespace",
    "explain",
    "renew",
    "status",
]

REQUEST_PATIENCE = 30.0  # seconds a command waits for the API server, outside renew's wait
POLL_INTERVAL = 1.0
SET_LABEL = "doks-access.dev/set"
OPERATOR_LABEL = "app.kubernetes.io/name=doks-access-operator"
FIELD_MANAGER = "doks-access-cli"
_BASE = f"/apis/{kube.GROUP}/{kube.VERSION}"
_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# What status and renew need, as (verb, resource).
_NEEDED = (
    ("get", kube.PLURAL),
    ("list", kube.PLURAL),
    ("patch", kube.PLURAL),
    ("list", kube.SET_PLURAL),
)


class Day2Api(kube.Kube):
    """The operator's client, plus the reads only the day-2 commands make."""

    async def served(self) -> list[str] | None:
        """The resources of doks-access.dev/v1alpha1 (API discovery); None: not served."""
        try:
            found = await self._json("GET", _BASE, what=f"discovering {kube.GROUP}/{kube.VERSION}")
        except kube.NotFoundError:
            return None
        return [str(r.get("name")) for r in found.get("resources") or () if isinstance(r, dict)]

    async def listed(
        self, plural: str, *, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Every object of ``plural`` in ``namespace`` (None: all namespaces)."""
        path = _collection(plural, namespace)
        query = [("labelSelector", selector)] if selector else []
        found = await self._json("GET", path, query=query, what=f"listing {plural}")
        return [item for item in found.get("items") or () if isinstance(item, dict)]

    async def read(self, plural: str, *, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"{_collection(plural, namespace)}/{_quoted(name)}"
        try:
            return await self._json("GET", path, what=f"reading {plural} {namespace}/{name}")
        except kube.NotFoundError:
            return None

    async def request_refresh(self, *, namespace: str, name: str, value: str) -> dict[str, Any]:
        """Set the refresh annotation of one DOClusterAccess; the object as patched."""
        patch = {"metadata": {"annotations": {bookkeeping.REFRESH_REQUESTED_AT: value}}}
        return await self._json(
            "PATCH",
            f"{_collection(kube.PLURAL, namespace)}/{_quoted(name)}",
            query=[("fieldManager", FIELD_MANAGER)],
            body=patch,
            content_type="application/merge-patch+json",
            what=f"requesting a refresh of {namespace}/{name}",
        )

    async def leases(self, *, namespace: str | None, name: str) -> list[dict[str, Any]]:
        base = "/apis/coordination.k8s.io/v1"
        if namespace is not None:
            path = f"{base}/namespaces/{_quoted(namespace)}/leases/{_quoted(name)}"
            try:
                return [await self._json("GET", path, what=f"reading Lease {namespace}/{name}")]
            except kube.NotFoundError:
                return []
        query = [("fieldSelector", f"metadata.name={name}")]
        found = await self._json("GET", f"{base}/leases", query=query, what="listing Leases")
        return [item for item in found.get("items") or () if isinstance(item, dict)]

    async def operator_pods(self, *, namespace: str | None) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{_quoted(namespace)}/pods" if namespace else "/api/v1/pods"
        query = [("labelSelector", OPERATOR_LABEL)]
        found = await self._json("GET", path, query=query, what="listing the operator's pods")
        return [item for item in found.get("items") or () if isinstance(item, dict)]

    async def allowed(self, *, verb: str, resource: str, namespace: str | None) -> bool:
        """A SelfSubjectAccessReview: may the caller ``verb`` ``resource`` there?"""
        attributes = {"verb": verb, "group": kube.GROUP, "resource": resource}
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {**attributes, "namespace": namespace or ""}},
        }
        answer = await self._json(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body=review,
            what="asking what you may do (SelfSubjectAccessReview)",
        )
        return bool((answer.get("status") or {}).get("allowed"))


Command = Callable[[Day2Api], Awaitable[int]]


async def connected(source: kube.Source, command: Command, *, err: TextIO) -> int:
    """Run ``command`` with a client for ``source``; an API failure is one line on ``err``."""
    try:
        api = await kube.api_client(source)
    except kube.StartupError as exc:
        print(f"error: {exc}", file=err)
        return view.EXIT_NOT_READY
    try:
        return await command(Day2Api(api))
    except kube.KubeError as exc:
        print(f"error: {explain(exc, source=source)}", file=err)
        return view.EXIT_NOT_READY
    except TimeoutError:
        print(
            f"error: the API server did not answer (credentials from {source.described})", file=err
        )
        return view.EXIT_NOT_READY
    finally:
        await api.close()  # type: ignore[no-untyped-call]


def explain(exc: kube.KubeError, *, source: kube.Source) -> str:
    """One line: what failed and what to do about it."""
    if exc.status == 401:
        return (
            f"{exc}: the API server refuses the credentials from {source.described};"
            " log in again or pass --kubeconfig"
        )
    if exc.status == 403:
        return (
            f"{exc}: forbidden: your user lacks RBAC rights for this"
            " (`doks-access check` lists what is missing)"
        )
    if exc.status == 404:
        return f"{exc}: {_not_installed()}"
    if exc.status == 0:
        return f"{exc}: the API server did not answer (credentials from {source.described})"
    return str(exc)


def _not_installed() -> str:
    return (
        f"the CRDs of {kube.GROUP}/{kube.VERSION} are not installed: apply crds/ "
        "(kubectl apply -f crds/) or install the chart"
    )


async def _require_crds(api: Day2Api, *, err: TextIO) -> bool:
    if await api.served() is None:
        print(f"error: {_not_installed()}", file=err)
        return False
    return True


# -- status --------------------------------------------------------------------------------------


async def status(
    api: Day2Api,
    *,
    namespace: str | None,
    name: str | None,
    output: str,
    out: TextIO,
    err: TextIO,
) -> int:
    """Print the objects (``namespace`` None: every namespace); exit 0 only if all are Ready."""
    async with asyncio.timeout(REQUEST_PATIENCE):
        if not await _require_crds(api, err=err):
            return view.EXIT_NOT_READY
        accesses = await api.listed(kube.PLURAL, namespace=namespace)
        sets = await api.listed(kube.SET_PLURAL, namespace=namespace)
    rows = [view.access_row(body) for body in accesses] + [view.set_row(body) for body in sets]
    if name is not None:
        rows = [row for row in rows if row.name == name]
        if not rows:
            where = f"namespace {namespace}" if namespace else "any namespace"
            print(f"error: no {kube.KIND} or {kube.SET_KIND} {name} in {where}", file=err)
            return view.EXIT_NOT_READY
    rows.sort(key=lambda row: (row.namespace, row.kind, row.name))
    if output == "json":
        print(json.dumps(view.status_json(rows), indent=2), file=out)
    elif rows:
        print(view.table(rows, now=_now(), wide=output == "wide"), file=out)
    else:
        where = f"namespace {namespace}" if namespace else "any namespace"
        print(f"no {kube.KIND} or {kube.SET_KIND} objects in {where}", file=err)
    return view.exit_status(rows)


# -- renew ---------------------------------------------------------------------------------------


async def renew(
    api: Day2Api,
    *,
    targets: Sequence[tuple[str, str]],
    every_in: str | None,
    selector: str | None,
    patience: datetime.timedelta,
    wait: bool,
    err: TextIO,
) -> int:
    """Request a refresh of each target (or of every DOClusterAccess in ``every_in``) and, with
    ``wait``, wait until each has a new credential; exit 0 only if every one was renewed."""
    async with asyncio.timeout(REQUEST_PATIENCE):
        if not await _require_crds(api, err=err):
            return view.EXIT_NOT_READY
        if every_in is not None:
            found = await api.listed(kube.PLURAL, namespace=every_in, selector=selector)
            targets = sorted(_key(body) for body in found)
            if not targets:
                chosen = f" matching {selector}" if selector else ""
                print(f"error: no {kube.KIND} objects{chosen} in namespace {every_in}", file=err)
                return view.EXIT_NOT_READY
        requested = await _request_all(api, targets, err=err)
    failed = len(targets) - len(requested)
    if wait and requested:
        failed += await _wait_for(api, requested, patience=patience, err=err)
    elif requested:
        print("not waiting (--no-wait): `doks-access status` shows the outcome", file=err)
    return view.EXIT_OK if failed == 0 else view.EXIT_NOT_READY


async def _request_all(
    api: Day2Api, targets: Sequence[tuple[str, str]], *, err: TextIO
) -> dict[tuple[str, str], view.Baseline]:
    requested: dict[tuple[str, str], view.Baseline] = {}
    for namespace, name in targets:
        body = await api.read(kube.PLURAL, namespace=namespace, name=name)
        if body is None:
            print(f"{namespace}/{name}: {await _missing(api, namespace, name)}", file=err)
            continue
        await _past_the_second_of(view.Baseline.of(body).issued_at)
        value = view.refresh_value(_now())
        patched = await api.request_refresh(namespace=namespace, name=name, value=value)
        requested[(namespace, name)] = view.Baseline.of(patched)
        print(
            f"{namespace}/{name}: refresh requested ({bookkeeping.REFRESH_REQUESTED_AT}={value})",
            file=err,
        )
    return requested


async def _past_the_second_of(issued_at: datetime.datetime | None) -> None:
    """Wait until the second ``issued_at`` names is over: ``issuedAt`` has whole seconds, so a
    credential issued in the same second as the one held could not be told from it."""
    if issued_at is None:
        return
    wait = (issued_at + datetime.timedelta(seconds=1.1) - _now()).total_seconds()
    if wait > 0:
        await asyncio.sleep(min(wait, 1.1))


async def _missing(api: Day2Api, namespace: str, name: str) -> str:
    if await api.read(kube.SET_PLURAL, namespace=namespace, name=name) is None:
        return f"not found: no {kube.KIND} {name} in namespace {namespace}"
    return (
        f"is a {kube.SET_KIND}; renew renews {kube.KIND} objects only (a set's refresh annotation"
        f" re-lists its clusters). Renew its children with: doks-access renew --all -n {namespace}"
        f" -l {SET_LABEL}={name}"
    )


async def _wait_for(
    api: Day2Api,
    requested: dict[tuple[str, str], view.Baseline],
    *,
    patience: datetime.timedelta,
    err: TextIO,
) -> int:
    """Poll until every requested renewal is done or failed, or ``patience`` ends; the failures."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience.total_seconds()
    pending = dict(requested)
    last: dict[tuple[str, str], view.Progress] = {}
    failed = 0
    while pending:
        for key, before in list(pending.items()):
            body = await api.read(kube.PLURAL, namespace=key[0], name=key[1])
            if body is None:
                progress = view.Progress(view.State.FAILED, "failed: deleted while waiting")
            else:
                progress = view.progress_of(body, before=before)
            last[key] = progress
            if progress.state is not view.State.WAITING:
                print(f"{key[0]}/{key[1]}: {progress.text}", file=err)
                failed += progress.state is view.State.FAILED
                del pending[key]
        if not pending:
            break
        if loop.time() >= deadline:
            for key in pending:
                waited = f"timed out after {patience.total_seconds():g}s"
                print(f"{key[0]}/{key[1]}: {waited}: {last[key].text}", file=err)
            return failed + len(pending)
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))
    return failed


# -- check ---------------------------------------------------------------------------------------


async def check(
    api: Day2Api,
    *,
    namespaces: Sequence[str | None],
    lease_namespace: str | None,
    lease_name: str,
    out: TextIO,
) -> int:
    """CRDs served, an operator running, the caller's RBAC; exit 0 only if all pass."""
    async with asyncio.timeout(REQUEST_PATIENCE):
        checks = [await _check_crds(api), await _check_operator(api, lease_namespace, lease_name)]
        checks += [await _check_rbac(api, namespace) for namespace in namespaces]
    print(view.checks_text(checks), file=out)
    return view.EXIT_OK if all(c.ok for c in checks) else view.EXIT_NOT_READY


async def _check_crds(api: Day2Api) -> view.Check:
    kinds = (kube.PLURAL, kube.SET_PLURAL, kube.ACCOUNT_PLURAL)
    title = f"CRDs served: {', '.join(kinds)} in {kube.GROUP}/{kube.VERSION}"
    try:
        served = await api.served()
    except kube.KubeError as exc:
        return view.Check(title, ok=False, found=(str(exc),), fix="check the kubeconfig")
    if served is None:
        return view.Check(
            title, ok=False, found=(f"{kube.GROUP}/{kube.VERSION} is not served",), fix=_fix_crds()
        )
    # An install from before ClusterDOAccount lacks its CRD, and its older DOClusterAccess CRD
    # would drop spec.accountRef: all three come from the same crds/.
    missing = [plural for plural in kinds if plural not in served]
    found = tuple(
        f"{plural}.{kube.GROUP}/{kube.VERSION}: {'missing' if plural in missing else 'served'}"
        for plural in kinds
    )
    return view.Check(title, ok=not missing, found=found, fix=_fix_crds())


def _fix_crds() -> str:
    return "kubectl apply --server-side -f crds/ (or install the chart with crds.enabled=true)"


async def _check_operator(api: Day2Api, lease_namespace: str | None, lease_name: str) -> view.Check:
    title = "an operator is running"
    now, found, running = _now(), [], False
    where = f"namespace {lease_namespace}" if lease_namespace else "any namespace"
    try:
        leases = await api.leases(namespace=lease_namespace, name=lease_name)
        if not leases:
            found.append(f"no Lease {lease_name} in {where} (leader election)")
        for lease in leases:
            current, sentence = view.lease_holder(lease, now=now)
            running |= current
            found.append(sentence)
    except kube.KubeError as exc:
        found.append(f"cannot look for Lease {lease_name} in {where}: {_refusal(exc)}")
    try:
        pods = await api.operator_pods(namespace=lease_namespace)
        ready = [_pod_name(pod) for pod in pods if _pod_ready(pod)]
        running |= bool(ready)
        found.append(
            f"{len(pods)} pod(s) labelled {OPERATOR_LABEL} in {where}, {len(ready)} Ready"
            + (f": {', '.join(ready)}" if ready else "")
        )
    except kube.KubeError as exc:
        found.append(f"cannot list pods labelled {OPERATOR_LABEL} in {where}: {_refusal(exc)}")
    fix = (
        "install the operator (the chart), or run `doks-access run --leader-election`; pass"
        " --lease-namespace/--lease-name where its Lease is (a local `doks-access run` without"
        " leader election leaves nothing to find)"
    )
    return view.Check(title, ok=running, found=tuple(found), fix=fix)


async def _check_rbac(api: Day2Api, namespace: str | None) -> view.Check:
    where = f"namespace {namespace}" if namespace else "all namespaces"
    title = f"RBAC for status and renew in {where}"
    missing = [
        f"{verb} {resource}"
        for verb, resource in _NEEDED
        if not await api.allowed(verb=verb, resource=resource, namespace=namespace)
    ]
    if not missing:
        return view.Check(title, ok=True, found=(f"allowed: {_needed_text()}",))
    binding = "a ClusterRoleBinding" if namespace is None else f"a RoleBinding in {namespace}"
    fix = (
        f"grant {_needed_text()} in API group {kube.GROUP} with a Role or ClusterRole and {binding}"
        " (the chart's aggregated roles give view and edit these rights)"
    )
    return view.Check(title, ok=False, found=(f"not allowed: {', '.join(missing)}",), fix=fix)


def _needed_text() -> str:
    return ", ".join(f"{verb} {resource}" for verb, resource in _NEEDED)


def _refusal(exc: kube.KubeError) -> str:
    return "forbidden (no RBAC rights)" if exc.status == 403 else str(exc)


def _pod_ready(pod: dict[str, Any]) -> bool:
    state = pod.get("status") or {}
    conditions = state.get("conditions") or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return state.get("phase") == "Running" and ready


def _pod_name(pod: dict[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


# -- the namespace of the current context --------------------------------------------------------


def context_namespace(source: kube.Source, *, namespace_file: Path = _NAMESPACE_FILE) -> str:
    """The namespace commands use without -n: the current context's, as kubectl's; in a pod its
    own; else ``default``."""
    if source.kubeconfig is None:
        try:
            return namespace_file.read_text().strip() or "default"
        except OSError:
            return "default"
    documents = []
    for path in source.kubeconfig.split(os.pathsep):
        try:
            loaded = yaml.safe_load(Path(path).expanduser().read_text()) if path else None
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict):
            documents.append(loaded)
    current = next((d["current-context"] for d in documents if d.get("current-context")), None)
    for document in documents:
        for context in document.get("contexts") or ():
            if isinstance(context, dict) and context.get("name") == current:
                return str((context.get("context") or {}).get("namespace") or "default")
    return "default"


def _collection(plural: str, namespace: str | None) -> str:
    if namespace is None:
        return f"{_BASE}/{plural}"
    return f"{_BASE}/namespaces/{_quoted(namespace)}/{plural}"


def _key(body: dict[str, Any]) -> tuple[str, str]:
    metadata = body.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _quoted(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
