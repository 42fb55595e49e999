"""Small Kubernetes helpers for tests: apply a CRD, wait for a condition, ignore absence."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")
DEFAULT_TIMEOUT_SECONDS = 60.0
_POLL_SECONDS = 0.2


def eventually(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> T:
    """Call ``probe`` until it returns something other than ``None``/``False``; return that.

    Waiting for another process (the garbage collector, the namespace controller) has no event to
    hook into from outside, so polling with a deadline is the honest way to observe it.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(_POLL_SECONDS)


def is_absent(read: Callable[[], object]) -> bool:
    """True once ``read`` answers 404."""
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def delete_ignoring_absence(delete: Callable[[], object]) -> None:
    try:
        delete()
    except ApiException as exc:
        if exc.status != 404:
            raise


def apply_crd(api: client.ApiClient, document: dict[str, Any]) -> str:
    """Create or update a CRD and wait until the apiserver reports it ``Established``."""
    extensions = client.ApiextensionsV1Api(api)
    name: str = document["metadata"]["name"]
    try:
        current = extensions.read_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        extensions.create_custom_resource_definition(document)
    else:
        document = {**document, "metadata": {**document["metadata"]}}
        document["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(name, document)

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(name)
        conditions = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    eventually(established, what=f"CRD {name} to be Established")
    return name


@contextlib.contextmanager
def fresh_namespace(api: client.ApiClient) -> Iterator[str]:
    """A new namespace ``test-<random>`` while inside; deleted after (without waiting for it)."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"doks-access.dev/test": "true"})
        )
    )
    try:
        yield name
    finally:
        delete_ignoring_absence(lambda: core.delete_namespace(name))


@contextlib.contextmanager
def listening(host: str, port: int) -> Iterator[None]:
    """Hold ``host:port`` open, as another program's server would."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        yield
