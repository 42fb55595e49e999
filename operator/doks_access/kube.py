"""The Kubernetes reads and writes the operator makes, on the official asyncio client.

``kubernetes.aio`` runs on aiohttp like Kopf, so no call blocks the event loop and no thread pool is
involved. Objects cross this boundary as plain JSON dictionaries (camelCase, as the API serves
them), which is what the pure modules work on. API failures are mapped here, once, to
:class:`KubeError` and its subclasses; nothing else in the operator sees ``ApiException``.

Secrets are only ever read by name in one namespace: the operator never lists or watches Secrets
it was not told about (DESIGN 4.8).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio import config as kconfig
from kubernetes.aio.client.exceptions import ApiException

from doks_access import __version__, digitalocean

GROUP = "doks-access.dev"
VERSION = "v1alpha1"
PLURAL = "doclusteraccesses"
KIND = "DOClusterAccess"
COMPONENT = "doks-access-operator"
_MERGE_PATCH = "application/merge-patch+json"


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


async def api_client(*, kubeconfig: Path | None) -> client.ApiClient:
    """An API client from ``kubeconfig``, else the pod's ServiceAccount (in-cluster)."""
    # kubernetes.aio.config has no type annotations.
    api: client.ApiClient
    if kubeconfig is not None:
        path = str(kubeconfig)
        api = await kconfig.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
    else:
        kconfig.load_incluster_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
    api.user_agent = f"{COMPONENT}/{__version__}"
    return api


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
    message = f"{what}: HTTP {status} {exc.reason or ''}".strip()
    if status == 404:
        return NotFoundError(message, status=status)
    if status == 409:
        return ConflictError(message, status=status)
    return KubeError(message, status=status)


class Kube:
    """The operator's Kubernetes API, around one shared ``kubernetes.aio`` API client."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    async def read_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as JSON, or None when it does not exist."""
        try:
            with _calling(f"reading Secret {namespace}/{name}"):
                secret = await self._core.read_namespaced_secret(name, namespace)
        except NotFoundError:
            return None
        result: dict[str, Any] = self._api.sanitize_for_serialization(secret)  # type: ignore[no-untyped-call]
        return result

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
        if not digitalocean.is_usable_token(token):
            # Some other text (a kubeconfig, a sentence): it cannot go into a bearer header, and
            # it is the Secret that needs fixing, like a missing key. Its text stays out of here.
            raise TokenSecretError(
                f"the token in {where} key {key!r} is not one word of printable ASCII",
                reason="Malformed",
            )
        return token

    async def create_secret(self, *, namespace: str, manifest: Mapping[str, object]) -> None:
        name = _name_of(manifest)
        with _calling(f"creating Secret {namespace}/{name}"):
            await self._core.create_namespaced_secret(
                namespace, _secret(manifest), field_manager=COMPONENT
            )

    async def replace_secret(self, *, namespace: str, manifest: Mapping[str, object]) -> None:
        """PUT with the manifest's resourceVersion: a concurrent change makes it a conflict."""
        name = _name_of(manifest)
        with _calling(f"replacing Secret {namespace}/{name}"):
            await self._core.replace_namespaced_secret(
                name, namespace, _secret(manifest), field_manager=COMPONENT
            )

    async def delete_secret(self, *, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete, only if it is still the object ``uid`` names; absence is not an error."""
        preconditions = client.V1Preconditions(uid=uid) if uid else None
        body = client.V1DeleteOptions(preconditions=preconditions)
        with contextlib.suppress(NotFoundError), _calling(f"deleting Secret {namespace}/{name}"):
            await self._core.delete_namespaced_secret(name, namespace, body=body)

    async def patch_status(
        self, *, namespace: str, name: str, patch: Mapping[str, object]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one DOClusterAccess; return the patched object."""
        with _calling(f"updating the status of {namespace}/{name}"):
            patched = await self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(patch)},
                _content_type=_MERGE_PATCH,
            )
        result: dict[str, Any] = patched  # type: ignore[assignment]
        return result

    async def emit_event(
        self,
        *,
        involved: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        now: datetime.datetime,
    ) -> None:
        """Record a core/v1 Event about ``involved`` (a DOClusterAccess body)."""
        metadata = involved["metadata"]
        namespace: str = metadata["namespace"]
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{metadata['name']}.{uuid.uuid4().hex[:16]}", namespace=namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=metadata["name"],
                namespace=namespace,
                uid=metadata.get("uid"),
                resource_version=metadata.get("resourceVersion"),
            ),
            type=type_,
            reason=reason,
            message=message,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=f"{COMPONENT}-{__version__}",
        )
        with _calling(f"recording an event in {namespace}"):
            await self._core.create_namespaced_event(namespace, event)


def _secret(manifest: Mapping[str, object]) -> client.V1Secret:
    secret = client.V1Secret.from_dict(dict(manifest))
    if secret is None:  # pragma: no cover - from_dict only returns None for None
        raise KubeError("an empty Secret manifest")
    return secret


def _name_of(manifest: Mapping[str, object]) -> str:
    metadata = manifest.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name)
