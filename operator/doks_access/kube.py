"""The Kubernetes reads and writes the operator makes, on the official asyncio client.

``kubernetes.aio`` runs on aiohttp like Kopf, so no call blocks the event loop and no thread pool is
involved. Objects cross this boundary as plain JSON dictionaries (camelCase, as the API serves
them), which is what the pure modules work on. API failures are mapped here, once, to
:class:`KubeError` and its subclasses; nothing else in the operator sees ``ApiException``. Every
write is counted here too (``on_write``), so that no call site can forget it.

Where the credentials come from is decided here, once (:func:`find_source`), for this client and
for Kopf's: ``--kubeconfig``, else in-cluster, else ``$KUBECONFIG``, else ``~/.kube/config``.

Secrets are only ever read by name in one namespace: the operator never lists or watches Secrets
it was not told about (DESIGN 4.8).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import datetime
import json
import os
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes.aio import client
from kubernetes.aio import config as kconfig
from kubernetes.aio.client.exceptions import ApiException

from doks_access import __version__, bookkeeping
from doks_access.tokens import is_usable_token

GROUP = "doks-access.dev"
VERSION = "v1alpha1"
PLURAL = "doclusteraccesses"
KIND = "DOClusterAccess"
SET_PLURAL = "doclusteraccesssets"
ACCOUNT_PLURAL = "clusterdoaccounts"
SET_KIND = "DOClusterAccessSet"
COMPONENT = "doks-access-operator"
_MERGE_PATCH = "application/merge-patch+json"

# What a pod sees (kubernetes.aio.config.incluster_config checks the same).
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT"
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
# How long the start-up check keeps trying an API server that does not answer (yet).
PREFLIGHT_PATIENCE = 20.0

WriteObserver = Callable[[str], None]  # told the kind of every write: Secret, Status, Event


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(KubeError):
    """The object does not exist (404)."""


class ConflictError(KubeError):
    """Someone else changed or created the object first (409)."""


class TokenSecretError(Exception):
    """The DigitalOcean token cannot be read from its Secret; ``reason`` says why, for status."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StartupError(Exception):
    """The operator cannot start and waiting will not help: no credentials, no CRD, no access.

    The message is the one line the process prints before it exits.
    """


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the API server's address and credentials come from."""

    kubeconfig: str | None  # a kubeconfig path (or a $KUBECONFIG list); None: in-cluster
    described: str  # for the log and error messages

    @property
    def in_cluster(self) -> bool:
        return self.kubeconfig is None


def find_source(
    *,
    explicit: Path | None,
    environ: Mapping[str, str] = os.environ,
    home: Path | None = None,
    service_account_token: Path = SERVICE_ACCOUNT_TOKEN,
) -> Source:
    """``explicit`` (``--kubeconfig``), else in-cluster, else ``$KUBECONFIG``, else
    ``~/.kube/config``, as ``kubectl`` looks; :class:`StartupError` when there is none."""
    if explicit is not None:
        return Source(str(explicit), f"--kubeconfig {explicit}")
    in_pod = bool(environ.get(SERVICE_HOST_ENV) and environ.get(SERVICE_PORT_ENV))
    if in_pod and service_account_token.is_file():
        return Source(None, "the pod's ServiceAccount (in-cluster)")
    if environ.get("KUBECONFIG"):
        return Source(environ["KUBECONFIG"], f"$KUBECONFIG ({environ['KUBECONFIG']})")
    default = (home if home is not None else Path.home()) / ".kube" / "config"
    if default.is_file():
        return Source(str(default), str(default))
    raise StartupError(
        "no Kubernetes credentials: not running in a pod, $KUBECONFIG is not set and"
        f" {default} does not exist (pass --kubeconfig)"
    )


async def api_client(source: Source) -> client.ApiClient:
    """An API client for ``source``; :class:`StartupError` when it cannot be loaded."""
    # kubernetes.aio.config has no type annotations.
    configuration = client.Configuration()
    if source.kubeconfig is not None and not _any_file(source.kubeconfig):
        raise StartupError(
            f"cannot load Kubernetes credentials from {source.described}: no such file"
        )
    try:
        if source.kubeconfig is None:
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await kconfig.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=source.kubeconfig,
                client_configuration=configuration,
                persist_config=False,
            )
    except (kconfig.ConfigException, OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        # The loaders' messages name files and fields, never credentials.
        raise StartupError(
            f"cannot load Kubernetes credentials from {source.described}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    # Like Kopf's client: no *_PROXY variables or ~/.netrc for the API server (a kubeconfig's
    # proxy-url still applies). aiohttp would look both up in a thread for every request.
    configuration.client_session_kwargs = {"trust_env": False}
    api = client.ApiClient(configuration=configuration)
    api.user_agent = f"{COMPONENT}/{__version__}"
    return api


def _any_file(paths: str) -> bool:
    """Whether any file of a kubeconfig path list (``$KUBECONFIG`` style) exists."""
    return any(Path(path).expanduser().is_file() for path in paths.split(os.pathsep) if path)


@contextlib.contextmanager
def _calling(what: str) -> Iterator[None]:
    """Map every failure of one API call, answered or not, to :class:`KubeError`."""
    try:
        yield
    except ApiException as exc:
        raise _mapped(exc, what=what) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise KubeError(f"{what}: {type(exc).__name__}") from None


def _mapped(exc: ApiException, *, what: str) -> KubeError:
    # The body can echo what we sent (a Secret's data): it never goes into the message.
    status = int(exc.status or 0)
    return _error(status, f"{what}: HTTP {status} {exc.reason or ''}")


def _error(status: int, message: str) -> KubeError:
    message = message.strip()
    if status == 404:
        return NotFoundError(message, status=status)
    if status == 409:
        return ConflictError(message, status=status)
    return KubeError(message, status=status)


@dataclasses.dataclass(frozen=True, slots=True)
class Involved:
    """The object (a DOClusterAccess unless ``kind`` says otherwise) an event is about."""

    namespace: str
    name: str
    uid: str
    resource_version: str | None = None
    kind: str = KIND


class Kube:
    """The operator's Kubernetes API, around one shared ``kubernetes.aio`` API client.

    Requests and answers are JSON dictionaries, sent through the client's own authentication,
    TLS and connection pool, but not through its generated models: building and validating a
    model for every Secret and Event, then turning it back into JSON, was a fifth of a
    reconciliation's CPU.
    """

    def __init__(self, api: client.ApiClient, *, on_write: WriteObserver | None = None) -> None:
        self._api = api
        self._on_write = on_write

    async def read_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as JSON, or None when it does not exist."""
        try:
            return await self._json(
                "GET", _secret_path(namespace, name), what=f"reading Secret {namespace}/{name}"
            )
        except NotFoundError:
            return None

    async def secret_version(self, *, namespace: str, name: str) -> str | None:
        """The Secret's resourceVersion (None: it does not exist), to notice that it changed."""
        secret = await self.read_secret(namespace=namespace, name=name)
        return None if secret is None else str(secret["metadata"].get("resourceVersion"))

    async def read_token(self, *, namespace: str, name: str, key: str) -> str:
        """The DigitalOcean API token from the Secret ``name``'s ``key``."""
        where = f"Secret {namespace}/{name}"
        secret = await self.read_secret(namespace=namespace, name=name)
        if secret is None:
            raise TokenSecretError(f"the token {where} does not exist", reason="NotFound")
        encoded = (secret.get("data") or {}).get(key)
        if not encoded:
            raise TokenSecretError(f"the token {where} has no key {key!r}", reason="MissingKey")
        try:
            token = base64.b64decode(encoded, validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            raise TokenSecretError(
                f"the token in {where} key {key!r} is not valid text", reason="Malformed"
            ) from None
        if not token:
            raise TokenSecretError(f"the token in {where} key {key!r} is empty", reason="Empty")
        if not is_usable_token(token):
            # Some other text (a kubeconfig, a sentence): it cannot go into a bearer header, and
            # it is the Secret that needs fixing, like a missing key. Its text stays out of here.
            raise TokenSecretError(
                f"the token in {where} key {key!r} is not one word of printable ASCII",
                reason="Malformed",
            )
        return token

    async def create_secret(self, *, namespace: str, manifest: Mapping[str, object]) -> str:
        """Create the Secret; return its resourceVersion."""
        name = _name_of(manifest)
        created = await self._json(
            "POST",
            _secret_path(namespace),
            query=[("fieldManager", COMPONENT)],
            body=manifest,
            what=f"creating Secret {namespace}/{name}",
        )
        self._wrote("Secret")
        return _version_of(created)

    async def replace_secret(self, *, namespace: str, manifest: Mapping[str, object]) -> str:
        """PUT with the manifest's resourceVersion (a concurrent change makes it a conflict);
        return the new resourceVersion."""
        name = _name_of(manifest)
        replaced = await self._json(
            "PUT",
            _secret_path(namespace, name),
            query=[("fieldManager", COMPONENT)],
            body=manifest,
            what=f"replacing Secret {namespace}/{name}",
        )
        self._wrote("Secret")
        return _version_of(replaced)

    async def delete_secret(self, *, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete, only if it is still the object ``uid`` names; absence is not an error."""
        options: dict[str, object] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if uid:
            options["preconditions"] = {"uid": uid}
        with contextlib.suppress(NotFoundError):
            await self._json(
                "DELETE",
                _secret_path(namespace, name),
                body=options,
                what=f"deleting Secret {namespace}/{name}",
            )
            self._wrote("Secret")

    async def patch_status(
        self, *, namespace: str, name: str, patch: Mapping[str, object]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one DOClusterAccess; return the patched object."""
        return await self._patch_status(
            _access_path(namespace, name), patch, what=f"updating the status of {namespace}/{name}"
        )

    async def emit_event(
        self,
        *,
        involved: Involved,
        type_: str,
        reason: str,
        message: str,
        now: datetime.datetime,
    ) -> None:
        """Record a core/v1 Event about ``involved``."""
        namespace = involved.namespace
        reference: dict[str, object] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": involved.kind,
            "name": involved.name,
            "namespace": namespace,
            "uid": involved.uid,
        }
        if involved.resource_version:
            reference["resourceVersion"] = involved.resource_version
        timestamp = bookkeeping.format_timestamp(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{involved.name}.{uuid.uuid4().hex[:16]}",
                "namespace": namespace,
            },
            "involvedObject": reference,
            "type": type_,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": f"{COMPONENT}-{__version__}",
        }
        await self._json(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            body=event,
            what=f"recording an event in {namespace}",
        )
        self._wrote("Event")

    async def list_access(self, *, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The DOClusterAccess objects of ``namespace`` that carry the labels selected."""
        listed = await self._json(
            "GET",
            _access_path(namespace),
            query=[("labelSelector", label_selector)],
            what=f"listing {PLURAL} in {namespace}",
        )
        items = listed.get("items")
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    async def create_access(self, *, namespace: str, manifest: Mapping[str, object]) -> None:
        """Create a DOClusterAccess; :class:`ConflictError` when the name is taken."""
        await self._json(
            "POST",
            _access_path(namespace),
            query=[("fieldManager", COMPONENT)],
            body=manifest,
            what=f"creating {KIND} {namespace}/{_name_of(manifest)}",
        )
        self._wrote(KIND)

    async def patch_access(
        self, *, namespace: str, name: str, uid: str, patch: Mapping[str, Any]
    ) -> None:
        """Merge-patch a DOClusterAccess, only if it is still the object ``uid`` names."""
        metadata = dict(patch.get("metadata") or {})
        body = {**patch, "metadata": {**metadata, "uid": uid}}  # uid: a precondition
        await self._json(
            "PATCH",
            _access_path(namespace, name),
            query=[("fieldManager", COMPONENT)],
            body=body,
            content_type=_MERGE_PATCH,
            what=f"updating {KIND} {namespace}/{name}",
        )
        self._wrote(KIND)

    async def delete_access(self, *, namespace: str, name: str, uid: str, orphan: bool) -> None:
        """Delete a DOClusterAccess if it is still ``uid``; ``orphan`` keeps what it owns (its
        Secret), which the garbage collector then releases. Absence is not an error."""
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            "propagationPolicy": "Orphan" if orphan else "Background",
        }
        with contextlib.suppress(NotFoundError):
            await self._json(
                "DELETE",
                _access_path(namespace, name),
                body=options,
                what=f"deleting {KIND} {namespace}/{name}",
            )
            self._wrote(KIND)

    async def patch_set_status(
        self, *, namespace: str, name: str, patch: Mapping[str, object]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one DOClusterAccessSet."""
        what = f"updating the status of {SET_KIND} {namespace}/{name}"
        return await self._patch_status(_set_path(namespace, name), patch, what=what)

    async def _patch_status(
        self, path: str, patch: Mapping[str, object], *, what: str
    ) -> dict[str, Any]:
        patched = await self._json(
            "PATCH",
            f"{path}/status",
            body={"status": dict(patch)},
            content_type=_MERGE_PATCH,
            what=what,
        )
        self._wrote("Status")
        return patched

    async def read_account(self, name: str) -> dict[str, Any] | None:
        """The ClusterDOAccount ``name`` (cluster-scoped), or None when there is none."""
        path = f"/apis/{GROUP}/{VERSION}/{ACCOUNT_PLURAL}/{urllib.parse.quote(name, safe='')}"
        try:
            return await self._json("GET", path, what=f"reading ClusterDOAccount {name}")
        except NotFoundError:
            return None

    async def accounts_listable(self) -> bool:
        """Whether ClusterDOAccounts can be listed (and so watched): their CRD is installed and
        the operator's RBAC includes them (the chart's accounts.enabled)."""
        path = f"/apis/{GROUP}/{VERSION}/{ACCOUNT_PLURAL}"
        try:
            await self._json("GET", path, query=[("limit", "1")], what="listing ClusterDOAccounts")
        except KubeError as exc:
            if exc.status in (403, 404):
                return False
            raise
        return True

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The labels of ``namespace``, which a ClusterDOAccount's rules may select by."""
        path = f"/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}"
        found = await self._json("GET", path, what=f"reading namespace {namespace}")
        labels = (found.get("metadata") or {}).get("labels") or {}
        return {str(key): str(value) for key, value in labels.items()}

    async def set_exists(self, *, namespace: str, name: str) -> bool:
        """Whether the DOClusterAccessSet ``namespace/name`` exists."""
        return await self._exists(_set_path(namespace, name), f"{SET_KIND} {namespace}/{name}")

    async def access_exists(self, *, namespace: str, name: str) -> bool:
        """Whether the DOClusterAccess ``namespace/name`` exists."""
        return await self._exists(_access_path(namespace, name), f"{KIND} {namespace}/{name}")

    async def _exists(self, path: str, described: str) -> bool:
        try:
            await self._json("GET", path, what=f"reading {described}")
        except NotFoundError:
            return False
        return True

    async def check_access(self, *, namespaces: tuple[str, ...]) -> None:
        """Prove at start-up that the CRDs exist and their objects can be listed where the
        operator works (every namespace when ``namespaces`` is empty).

        :class:`StartupError` for what waiting cannot fix (401, 403, 404); an API server that
        does not answer is given :data:`PREFLIGHT_PATIENCE` seconds.
        """
        for plural, kind in ((PLURAL, KIND), (SET_PLURAL, SET_KIND)):
            for namespace in namespaces or (None,):
                await self._check_listing(namespace, plural=plural, kind=kind)

    async def _check_listing(self, namespace: str | None, *, plural: str, kind: str) -> None:
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        collection = f"/apis/{GROUP}/{VERSION}"
        path = (
            f"{collection}/namespaces/{_quoted(namespace)}/{plural}"
            if namespace
            else f"{collection}/{plural}"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PREFLIGHT_PATIENCE
        while True:
            try:
                await self._json(
                    "GET", path, query=[("limit", "1")], what=f"listing {plural}.{GROUP} {where}"
                )
            except KubeError as exc:
                if exc.status == 404:
                    raise StartupError(
                        f"the {kind} CRD ({plural}.{GROUP}) is not installed: apply crds/ first"
                    ) from None
                if exc.status in (401, 403):
                    raise StartupError(
                        f"{exc}: the operator's credentials are refused, or lack RBAC rights"
                    ) from None
                if loop.time() >= deadline:
                    raise StartupError(f"{exc}: the API server did not answer in time") from None
            else:
                return
            await asyncio.sleep(1.0)

    async def _json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, object] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the JSON answer, or :class:`KubeError` for an error or no answer."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        with _calling(what):
            # kubernetes.aio has no type annotations here.
            _, url, headers, payload, _ = await self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params=headers,
                body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"],
            )
            response = await self._api.call_api(method, url, header_params=headers, body=payload)
            data: bytes = await response.read()  # type: ignore[no-untyped-call]
        if response.status >= 400:
            # The body can echo what we sent (a Secret's data): it never goes into the message.
            raise _error(response.status, f"{what}: HTTP {response.status} {response.reason or ''}")
        try:
            answer = json.loads(data)
        except ValueError:
            raise KubeError(f"{what}: the answer is not JSON", status=response.status) from None
        return answer if isinstance(answer, dict) else {}

    def _wrote(self, kind: str) -> None:
        if self._on_write is not None:
            self._on_write(kind)


def _secret_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{_quoted(namespace)}/secrets"
    return base if name is None else f"{base}/{_quoted(name)}"


def _access_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{_quoted(namespace)}/{PLURAL}"
    return base if name is None else f"{base}/{_quoted(name)}"


def _set_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{_quoted(namespace)}/{SET_PLURAL}"
    return base if name is None else f"{base}/{_quoted(name)}"


def _quoted(segment: str) -> str:
    # Names are DNS labels and subdomains; quoting keeps anything else from changing the path.
    return urllib.parse.quote(segment, safe="")


def _version_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _name_of(manifest: Mapping[str, object]) -> str:
    metadata = manifest.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name)
