"""One reconciliation against the real API server and the emulator, called directly."""

from __future__ import annotations

import datetime
import random
from typing import Any

import pytest
from kubernetes import client

from doks_access import digitalocean, kube, metrics, reconcile
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


@pytest.mark.asyncio
async def test_a_stale_body_after_our_own_status_write_writes_nothing_more(
    cluster: Cluster,
    fresh_digitalocean: Emulator,
    crds: list[str],
    api: client.ApiClient,
    namespace: str,
) -> None:
    # The daemon can wake (for the Secret it just wrote) with the body from before its own status
    # write; that must not write the same status, and send the same event, a second time.
    del crds
    create_token_secret(api, namespace)
    apply_access(api, namespace, "stale", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    stale = _get(api, namespace, "stale")
    aio = await kube.api_client(kubeconfig=cluster.kubeconfig_path)
    deps = reconcile.Dependencies(
        kube=kube.Kube(aio),
        digitalocean=digitalocean.DigitalOceanClient(
            base_url=fresh_digitalocean.api_url, verify=fresh_digitalocean.client_ssl_context()
        ),
        rng=random.Random(0),  # noqa: S311 - backoff jitter
        metrics=metrics.Metrics(),
    )
    memory = reconcile.Memory()
    now = datetime.datetime.now(datetime.UTC)
    try:
        await reconcile.reconcile(stale, deps=deps, memory=memory, now=now)
        written = _get(api, namespace, "stale")
        await reconcile.reconcile(
            stale, deps=deps, memory=memory, now=now + datetime.timedelta(seconds=1)
        )
    finally:
        await deps.digitalocean.aclose()
        await aio.close()

    assert written["status"]["conditions"][0]["status"] == "True"
    assert (
        _get(api, namespace, "stale")["metadata"]["resourceVersion"]
        == (written["metadata"]["resourceVersion"])
    )
    assert _events(api, namespace, "stale") == ["Issued"]
    assert fresh_digitalocean.request_count("kubeconfig") == 1
