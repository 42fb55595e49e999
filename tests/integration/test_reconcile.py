"""One reconciliation against the real API server and the emulator, called directly."""

from __future__ import annotations

import contextlib
import datetime
import random
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def _dependencies(
    cluster: Cluster, emulator: Emulator
) -> AsyncIterator[reconcile.Dependencies]:
    """What the reconciler needs, against the session's apiserver and emulator."""
    aio = await kube.api_client(kubeconfig=cluster.kubeconfig_path)
    deps = reconcile.Dependencies(
        kube=kube.Kube(aio),
        digitalocean=digitalocean.DigitalOceanClient(
            base_url=emulator.api_url, verify=emulator.client_ssl_context()
        ),
        rng=random.Random(0),  # noqa: S311 - backoff jitter
        metrics=metrics.Metrics(),
    )
    try:
        yield deps
    finally:
        await deps.digitalocean.aclose()
        await aio.close()


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
    memory = reconcile.Memory()
    now = datetime.datetime.now(datetime.UTC)
    async with _dependencies(cluster, fresh_digitalocean) as deps:
        await reconcile.reconcile(stale, deps=deps, memory=memory, now=now)
        written = _get(api, namespace, "stale")
        await reconcile.reconcile(
            stale, deps=deps, memory=memory, now=now + datetime.timedelta(seconds=1)
        )

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
    # reconciliation; the object never got a condition, and the daemon failed again and again.
    del crds
    create_token_secret(api, namespace, token="not a token:\nspaces and newlines")
    apply_access(api, namespace, "garbled", {"clusterID": CLUSTER_ID})
    now = datetime.datetime.now(datetime.UTC)
    async with _dependencies(cluster, fresh_digitalocean) as deps:
        outcome = await reconcile.reconcile(
            _get(api, namespace, "garbled"), deps=deps, memory=reconcile.Memory(), now=now
        )

    conditions = {c["type"]: c for c in _get(api, namespace, "garbled")["status"]["conditions"]}
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["reason"]) == (
        "True",
        "TokenSecretMissing",
    )
    assert "not a token" not in conditions["Stalled"]["message"]
    assert outcome.wake_at is not None
    assert outcome.wake_at > now
    assert fresh_digitalocean.request_count("kubeconfig") == 0
