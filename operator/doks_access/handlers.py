"""Kopf wiring, and nothing else: one daemon per DOClusterAccess, woken when something changes.

Each object gets a daemon that reconciles, then sleeps until the time the reconciliation asked for
(the renewal time, a retry) — no periodic API calls, no Kopf progress annotations. Watch events on
the object (a new generation, a new refresh-requested-at) and on the Secrets the operator manages
(found by its label, server-side) wake the daemon early: that is how drift, deletion of the Secret
and manual refreshes are handled at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import random
import ssl
from typing import Any

import kopf
from kubernetes.aio import client as kclient

from doks_access import bookkeeping, digitalocean, health, kube, metrics, reconcile
from doks_access.config import OperatorConfig

Key = tuple[str, str]  # namespace, name
KUBE_RETRY = datetime.timedelta(seconds=5)
logger = logging.getLogger(__name__)


def registry() -> kopf.OperatorRegistry:
    """The registry these handlers were added to (Kopf's default one)."""
    return kopf.get_default_registry()


@dataclasses.dataclass
class Waker:
    """Wakes one object's daemon; remembers what it last saw of the object to wake only on news."""

    event: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    seen: tuple[object, ...] = ()


@dataclasses.dataclass
class Runtime:
    """What the handlers share: clients built once at start-up, and the wakers."""

    deps: reconcile.Dependencies
    api: kclient.ApiClient
    wakers: dict[Key, Waker] = dataclasses.field(default_factory=dict)


@kopf.on.login(id="login")
def login(logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    # Kopf's own client: from $KUBECONFIG when `run --kubeconfig` set it, else in-cluster.
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(logger=logger, **kwargs)
    return kopf.login_with_service_account(logger=logger, **kwargs)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo["config"]
    settings.posting.enabled = False  # events are the reconciler's, one per state change
    settings.persistence.finalizer = f"{kube.GROUP}/daemon"
    settings.execution.max_workers = 1  # nothing here is synchronous; no thread pool needed
    # One known CRD and exact namespace names: no cluster-wide discovery of CRDs and namespaces,
    # which would need RBAC the operator has no other use for. The CRD must exist at start.
    settings.scanning.disabled = True
    api = await kube.api_client(kubeconfig=config.kubeconfig)
    verify: ssl.SSLContext | bool = True
    if config.digitalocean_ca_file is not None:
        verify = ssl.create_default_context(cafile=str(config.digitalocean_ca_file))
    collected: metrics.Metrics = memo["metrics"]
    memo["runtime"] = Runtime(
        api=api,
        deps=reconcile.Dependencies(
            kube=kube.Kube(api),
            digitalocean=digitalocean.DigitalOceanClient(
                base_url=config.digitalocean_api_url,
                verify=verify,
                rate_limits=config.rate_limits,
                observer=collected,
            ),
            rng=random.Random(),  # noqa: S311 - backoff jitter, not cryptography
            metrics=collected,
        ),
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.deps.digitalocean.aclose()
        await runtime.api.close()  # type: ignore[no-untyped-call]


@kopf.daemon(kube.GROUP, kube.VERSION, kube.PLURAL, id="credential", cancellation_timeout=10)
async def keep_credential(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo["runtime"]
    in_flight: dict[str, float] = memo["in_flight"]
    key = (body.metadata.namespace or "", body.metadata.name or "")
    waker = runtime.wakers.setdefault(key, Waker())
    memory = reconcile.Memory()
    try:
        while not stopped:
            waker.event.clear()
            waker.seen = _news(body)
            in_flight[f"{key[0]}/{key[1]}"] = asyncio.get_running_loop().time()
            try:
                outcome = await reconcile.reconcile(
                    body, deps=runtime.deps, memory=memory, now=_now()
                )
            except kube.KubeError as exc:
                # The apiserver is restarting, or a write raced another: look again shortly.
                logger.warning("%s/%s: %s; retrying in %s", *key, exc, KUBE_RETRY)
                outcome = reconcile.Outcome(wake_at=_now() + KUBE_RETRY)
            finally:
                in_flight.pop(f"{key[0]}/{key[1]}", None)
            await _sleep(waker, stopped, until=outcome.wake_at)
    finally:
        runtime.wakers.pop(key, None)
        runtime.deps.metrics.forget_object(namespace=key[0], name=key[1])


@kopf.on.probe(id="reconciliations")
async def reconciliations(memo: kopf.Memo, **_: Any) -> int:
    """Fails the liveness endpoint while a reconciliation is stuck; else counts those running."""
    in_flight: dict[str, float] = memo["in_flight"]
    found = health.stuck(in_flight, now=asyncio.get_running_loop().time())
    if found:
        raise kopf.PermanentError(
            f"reconciliations stuck for over {health.STUCK_AFTER:.0f}s: {found}"
        )
    return len(in_flight)


@kopf.on.event(kube.GROUP, kube.VERSION, kube.PLURAL, id="wake-on-change")
async def object_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    waker = runtime.wakers.get((body.metadata.namespace or "", body.metadata.name or ""))
    if waker is not None and _news(body) != waker.seen:
        waker.event.set()


@kopf.on.event(
    "v1",
    "secrets",
    labels={bookkeeping.MANAGED_BY_LABEL: bookkeeping.MANAGED_BY_VALUE},
    id="wake-on-secret",
)
async def secret_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    owner = (body.metadata.annotations or {}).get(bookkeeping.OWNER, "")
    namespace, _slash, name = owner.partition("/")
    waker = runtime.wakers.get((namespace, name))
    if waker is not None:
        waker.event.set()


def _news(body: kopf.Body) -> tuple[object, ...]:
    """What, changed on the object, deserves a reconciliation (our own status writes do not)."""
    annotations = body.metadata.annotations or {}
    return (body.metadata.get("generation"), annotations.get(bookkeeping.REFRESH_REQUESTED_AT))


async def _sleep(
    waker: Waker, stopped: kopf.DaemonStopped, *, until: datetime.datetime | None
) -> None:
    timeout = None if until is None else max(0.0, (until - _now()).total_seconds())
    woken = asyncio.ensure_future(waker.event.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        stopping.cancel()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
