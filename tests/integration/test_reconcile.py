"""Reconciliations against the real API server and the emulator, driven by hand.

The controller and its dependencies are the operator's own (``Dependencies.create``), without Kopf:
the tests hand it watch events themselves, so they can hand it stale ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from doks_access import config, dispatch
from doks_access.controller import Controller
from doks_access.dependencies import Dependencies
from doks_access.objects import AccessObject
from doks_access_testkit.emulator import Emulator
from tests.conftest import Cluster
from tests.e2e.objects import CLUSTER_ID, GROUP, PLURAL, VERSION, apply_access, create_token_secret


def _events(api: client.ApiClient, namespace: str, name: str) -> list[str]:
    listing = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [event.reason for event in listing.items]


def _get(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return found


@contextlib.asynccontextmanager
async def _controller(cluster: Cluster, emulator: Emulator) -> AsyncIterator[Controller]:
    """The operator's controller, against the session's apiserver and emulator."""
    settings = config.OperatorConfig(
        kubeconfig=cluster.kubeconfig_path,
        digitalocean_api_url=emulator.api_url,
        digitalocean_ca_file=emulator.ca_file,
    )
    deps = await Dependencies.create(settings)
    try:
        yield Controller(deps=deps, dispatcher=dispatch.Dispatcher(workers=1))
    finally:
        await deps.aclose()


@pytest.mark.asyncio
async def test_a_stale_watch_event_after_our_own_status_write_writes_nothing_more(
    cluster: Cluster,
    fresh_digitalocean: Emulator,
    crds: list[str],
    api: client.ApiClient,
    namespace: str,
) -> None:
    # The watch can deliver the object as it was before the operator's own status write after
    # that write; judged against it, the status would be written and its event sent twice.
    del crds
    create_token_secret(api, namespace)
    apply_access(api, namespace, "stale", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    stale = _get(api, namespace, "stale")
    key = (namespace, "stale")
    async with _controller(cluster, fresh_digitalocean) as controller:
        controller.observe(AccessObject.from_body(stale))
        await controller.reconcile(key)
        written = _get(api, namespace, "stale")
        controller.observe(AccessObject.from_body(stale))  # the stale event arrives late
        await controller.reconcile(key)

    assert written["status"]["conditions"][0]["status"] == "True"
    assert (
        _get(api, namespace, "stale")["metadata"]["resourceVersion"]
        == (written["metadata"]["resourceVersion"])
    )
    assert _events(api, namespace, "stale") == ["Issued"]
    assert fresh_digitalocean.request_count("kubeconfig") == 1


@pytest.mark.asyncio
async def test_a_token_no_http_header_can_carry_stalls_instead_of_crashing_the_reconciliation(
    cluster: Cluster,
    fresh_digitalocean: Emulator,
    crds: list[str],
    api: client.ApiClient,
    namespace: str,
) -> None:
    # Found by tests/hostile/test_spec_fuzzing.py: tokenSecretRef naming a Secret that holds some
    # other text (a kubeconfig, a sentence) made the client raise a bare ValueError out of the
    # reconciliation; the object never got a condition, and it failed again and again.
    del crds
    create_token_secret(api, namespace, token="not a token:\nspaces and newlines")
    apply_access(api, namespace, "garbled", {"clusterID": CLUSTER_ID})
    key = (namespace, "garbled")
    async with _controller(cluster, fresh_digitalocean) as controller:
        controller.observe(AccessObject.from_body(_get(api, namespace, "garbled")))
        started = asyncio.get_running_loop().time()
        due = await controller.reconcile(key)

    conditions = {c["type"]: c for c in _get(api, namespace, "garbled")["status"]["conditions"]}
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["reason"]) == (
        "True",
        "TokenSecretMissing",
    )
    assert "not a token" not in conditions["Stalled"]["message"]
    assert due is not None
    assert due > started
    assert fresh_digitalocean.request_count("kubeconfig") == 0


@pytest.mark.asyncio
async def test_a_status_write_that_lands_after_a_spec_change_wakes_the_object_again(
    cluster: Cluster,
    fresh_digitalocean: Emulator,
    crds: list[str],
    api: client.ApiClient,
    namespace: str,
) -> None:
    # The spec changes while the operator reconciles the older one: the PATCH of its status
    # returns the newer object, whose watch events then look old. The change must not be lost.
    del crds
    create_token_secret(api, namespace)
    apply_access(api, namespace, "moving", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    before = _get(api, namespace, "moving")
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "moving", {"spec": {"expirySeconds": 7200}}
    )
    key = (namespace, "moving")
    async with _controller(cluster, fresh_digitalocean) as controller:
        controller.observe(AccessObject.from_body(before))  # the watch is one version behind
        await controller.reconcile(key)
        # The spec change's own event, older than what the PATCH returned, comes in now.
        controller.observe(AccessObject.from_body(_get(api, namespace, "moving")))
        memory = controller.memory(key)
        assert memory is not None
        assert memory.obj.generation == 2
        await controller.reconcile(key)

    status = _get(api, namespace, "moving")["status"]
    issued = datetime.datetime.fromisoformat(status["issuedAt"])
    expires = datetime.datetime.fromisoformat(status["expiresAt"])
    assert expires - issued == datetime.timedelta(seconds=7200)
    assert status["observedGeneration"] == 2
    assert fresh_digitalocean.request_count("kubeconfig") == 2


@pytest.mark.asyncio
async def test_an_object_deleted_unseen_is_forgotten_when_its_status_cannot_be_written(
    cluster: Cluster,
    fresh_digitalocean: Emulator,
    crds: list[str],
    api: client.ApiClient,
    namespace: str,
) -> None:
    # A watch restarted after "410 Gone" lists what exists and never says what went: the
    # controller can hold an object that is gone. Its next reconciliation must drop it rather
    # than retry every few seconds for ever.
    del crds
    create_token_secret(api, namespace)
    apply_access(api, namespace, "gone", {"clusterID": CLUSTER_ID})
    key = (namespace, "gone")
    async with _controller(cluster, fresh_digitalocean) as controller:
        controller.observe(AccessObject.from_body(_get(api, namespace, "gone")))
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "gone"
        )
        due = await controller.reconcile(key)

        assert due is None
        assert controller.memory(key) is None
