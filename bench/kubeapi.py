"""The benchmark's side of the Kubernetes API: bulk creation, a status watch, API-server metrics.

It uses ``kubernetes.aio`` like the operator, with its own client and connection pool, from its own
process, so what it spends is never counted as the operator's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from kubernetes.aio import client
from kubernetes.aio import config as kconfig
from kubernetes.aio.client.exceptions import ApiException

from doks_access.bookkeeping import parse_timestamp

GROUP, VERSION, PLURAL, KIND = "doks-access.dev", "v1alpha1", "doclusteraccesses", "DOClusterAccess"
SET_PLURAL, SET_KIND = "doclusteraccesssets", "DOClusterAccessSet"
ACCOUNT_PLURAL = "clusterdoaccounts"
FIELD_MANAGER = "doks-access-bench"


class BenchKube:
    """One API client and the calls the scenarios make."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.own_writes = 0  # writes this client made to the resources the operator writes

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, kubeconfig: Path, *, pool: int = 64) -> AsyncIterator[BenchKube]:
        configuration = client.Configuration()
        await kconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = pool
        api = client.ApiClient(configuration)
        try:
            yield cls(api)
        finally:
            await api.close()  # type: ignore[no-untyped-call]

    async def apply_crd(self, document: Mapping[str, Any]) -> None:
        """Create or replace the CRD, then wait until it is Established."""
        extensions = client.ApiextensionsV1Api(self.api)
        name, plural = document["metadata"]["name"], document["spec"]["names"]["plural"]
        crd = client.V1CustomResourceDefinition.from_dict(dict(document))
        if crd is None:
            raise RuntimeError("an empty CRD document")
        try:
            await extensions.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = await extensions.read_custom_resource_definition(name)
            replacement = client.V1CustomResourceDefinition.from_dict(dict(document))
            if replacement is None or replacement.metadata is None or current.metadata is None:
                raise RuntimeError(f"CRD {name}: no metadata") from exc
            replacement.metadata.resource_version = current.metadata.resource_version
            await extensions.replace_custom_resource_definition(name, replacement)
        for _ in range(300):
            crd = await extensions.read_custom_resource_definition(name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"CRD {name} did not become Established")
        # Established comes before the storage is ready: until then, lists get 429s.
        cluster_scoped = document["spec"].get("scope") == "Cluster"
        for _ in range(300):
            try:
                if cluster_scoped:
                    await self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
                else:
                    await self.list_objects("default", plural=plural)
            except ApiException as exc:
                if exc.status != 429:
                    raise
                await asyncio.sleep(0.1)
            else:
                return
        raise RuntimeError(f"CRD {name}: its storage did not become ready")

    async def create_namespace(self, name: str) -> None:
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        try:
            await self.core.create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    async def create_token_secret(self, *, namespace: str, name: str, token: str) -> None:
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            data={"token": base64.b64encode(token.encode()).decode()},
        )
        self.own_writes += 1
        await self.core.create_namespaced_secret(namespace, body, field_manager=FIELD_MANAGER)

    async def create_object(self, *, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(spec),
        }
        self.own_writes += 1
        await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, field_manager=FIELD_MANAGER
        )

    async def create_set(self, *, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": SET_KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(spec),
        }
        self.own_writes += 1
        await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, SET_PLURAL, body, field_manager=FIELD_MANAGER
        )

    async def create_account(self, name: str, spec: Mapping[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterDOAccount",
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        self.own_writes += 1
        await self.custom.create_cluster_custom_object(
            GROUP, VERSION, ACCOUNT_PLURAL, body, field_manager=FIELD_MANAGER
        )

    async def merge_patch_account(self, name: str, patch: Mapping[str, Any]) -> None:
        self.own_writes += 1
        await self.custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            ACCOUNT_PLURAL,
            name,
            dict(patch),
            _content_type="application/merge-patch+json",
        )

    async def delete_account(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            await self.custom.delete_cluster_custom_object(GROUP, VERSION, ACCOUNT_PLURAL, name)

    async def create_objects(
        self,
        *,
        namespace: str,
        names: Iterable[str],
        spec: Mapping[str, Any],
        concurrency: int = 32,
    ) -> None:
        """Create many objects, ``concurrency`` requests at a time (``kubectl apply`` of a list)."""
        queue = list(names)
        queue.reverse()

        async def worker() -> None:
            while queue:
                await self.create_object(namespace=namespace, name=queue.pop(), spec=spec)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def strip_finalizers(self, namespace: str) -> None:
        """Let a namespace go without an operator: remove every object's finalizers."""
        listing = await self.list_objects(namespace)
        names = [item["metadata"]["name"] for item in listing["items"]]
        patch = {"metadata": {"finalizers": None}}

        async def strip(name: str) -> None:
            with contextlib.suppress(ApiException):
                await self.merge_patch_object(namespace=namespace, name=name, patch=patch)

        for start in range(0, len(names), 64):
            await asyncio.gather(*(strip(name) for name in names[start : start + 64]))

    async def merge_patch_object(
        self, *, namespace: str, name: str, patch: Mapping[str, Any], plural: str = PLURAL
    ) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            dict(patch),
            _content_type="application/merge-patch+json",
        )

    async def list_objects(self, namespace: str, *, plural: str = PLURAL) -> dict[str, Any]:
        listing: dict[str, Any] = await self.custom.list_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, namespace, plural
        )
        return listing

    async def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            await self.core.delete_namespace(name)

    async def server_version(self) -> str:
        info = await client.VersionApi(self.api).get_code()
        return str(info.git_version)

    async def apiserver_metrics(self) -> str:
        request = await self.api.param_serialize(
            method="GET", resource_path="/metrics", auth_settings=["BearerToken"]
        )
        response = await self.api.call_api(*request)
        try:
            if response.status != 200:
                raise RuntimeError(f"GET /metrics from the API server: HTTP {response.status}")
            text: str = await response.response.text()
        finally:
            response.response.release()
        return text


@dataclasses.dataclass
class Renewal:
    """One credential replaced by the next, as the watch saw it."""

    name: str
    observed: float  # wall clock, when the status with the new issuedAt arrived
    planned: float  # the previous status's renewalTime
    previous_expiry: float  # the previous status's expiresAt


@dataclasses.dataclass
class _Seen:
    issued_at: str | None = None
    expires_at: float | None = None
    renewal_time: float | None = None


class _Watch:
    """Lists, then watches, the objects of one kind in one namespace and hands each version to
    :meth:`_observe` as it arrives (in this process, so times are the benchmark's)."""

    plural = PLURAL

    def __init__(self, kube: BenchKube, namespace: str) -> None:
        self._kube, self.namespace = kube, namespace
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        synced = asyncio.ensure_future(self._synced.wait())
        await asyncio.wait({synced, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():  # it failed: say why rather than wait forever
            synced.cancel()
            self._task.result()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _wait_for(self, done: Callable[[], bool], *, within: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), within)
            except TimeoutError:
                return False
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _run(self) -> None:
        while True:
            listing = await self._kube.list_objects(self.namespace, plural=self.plural)
            for item in listing["items"]:
                await self._observe(item)
            self._synced.set()
            version = listing["metadata"]["resourceVersion"]
            try:
                await self._stream(version)
            except _ExpiredError:
                continue

    async def _stream(self, version: str) -> None:
        custom = self._kube.custom
        while True:
            response = await custom.list_namespaced_custom_object_without_preload_content(
                GROUP,
                VERSION,
                self.namespace,
                self.plural,
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=240,
            )
            async with response:
                async for line in response.content:
                    event = json.loads(line)
                    kind, item = event["type"], event["object"]
                    if kind == "ERROR":
                        raise _ExpiredError
                    version = item["metadata"]["resourceVersion"]
                    if kind in ("ADDED", "MODIFIED"):
                        await self._observe(item)

    async def _observe(self, item: Mapping[str, Any]) -> None:
        raise NotImplementedError


class StatusWatch(_Watch):
    """Watches every DOClusterAccess of one namespace and notes when each became Ready, and every
    renewal after that. Times are taken as events arrive, in this process.
    """

    def __init__(self, kube: BenchKube, namespace: str) -> None:
        super().__init__(kube, namespace)
        self.ready_at: dict[str, float] = {}  # name → time.monotonic() of the first Ready=True
        self.renewals: list[Renewal] = []
        self.not_ready: set[str] = set()  # objects seen Ready=False after having been Ready
        self._seen: dict[str, _Seen] = {}

    async def wait_ready(self, names: Iterable[str], *, within: float) -> bool:
        """True once every one of ``names`` has been Ready; False after ``within`` seconds."""
        wanted = set(names)
        return await self._wait_for(lambda: wanted <= self.ready_at.keys(), within=within)

    async def _observe(self, item: Mapping[str, Any]) -> None:
        now_monotonic, now_wall = time.monotonic(), time.time()
        name = item["metadata"]["name"]
        status = item.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        seen = self._seen.setdefault(name, _Seen())
        issued = status.get("issuedAt")
        if ready and issued:
            if seen.issued_at is not None and issued != seen.issued_at:
                self.renewals.append(
                    Renewal(
                        name=name,
                        observed=now_wall,
                        planned=seen.renewal_time or 0.0,
                        previous_expiry=seen.expires_at or 0.0,
                    )
                )
            seen.issued_at = issued
            seen.expires_at = _epoch(status.get("expiresAt"))
            seen.renewal_time = _epoch(status.get("renewalTime"))
        if ready and name not in self.ready_at:
            self.ready_at[name] = now_monotonic
            await self._notify()
        elif not ready and name in self.ready_at:
            self.not_ready.add(name)

    def latest_expiry(self) -> dict[str, float | None]:
        return {name: seen.expires_at for name, seen in self._seen.items()}


class SetWatch(_Watch):
    """Watches the DOClusterAccessSets of one namespace and keeps every status each one had, with
    the time it arrived (``time.monotonic()``)."""

    plural = SET_PLURAL

    def __init__(self, kube: BenchKube, namespace: str) -> None:
        super().__init__(kube, namespace)
        self.statuses: dict[str, list[tuple[float, dict[str, Any]]]] = {}

    async def wait_status(
        self, name: str, done: Callable[[Mapping[str, Any]], bool], *, within: float
    ) -> float | None:
        """When set ``name`` first had a status ``done`` holds for; None after ``within`` s."""

        def first() -> float | None:
            return next((at for at, status in self.statuses.get(name, ()) if done(status)), None)

        if not await self._wait_for(lambda: first() is not None, within=within):
            return None
        return first()

    async def _observe(self, item: Mapping[str, Any]) -> None:
        history = self.statuses.setdefault(item["metadata"]["name"], [])
        status = dict(item.get("status") or {})
        if not history or history[-1][1] != status:
            history.append((time.monotonic(), status))
            await self._notify()


def condition_status(status: Mapping[str, Any], kind: str) -> str | None:
    """``True``, ``False`` or ``Unknown`` for the condition ``kind`` of a status; None if absent."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


class _ExpiredError(Exception):
    """The watch's resourceVersion is too old: list again."""


def _epoch(text: object) -> float | None:
    moment = parse_timestamp(text)
    return None if moment is None else moment.timestamp()
