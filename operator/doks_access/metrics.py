"""Prometheus metrics: know *before* a credential expires that its renewals are failing.

Per object (``namespace``, ``name``, ``cluster_id``): when its credential expires, when the next
fetch is planned, its Ready status and its consecutive failures — the series disappear with the
object. Counters: renewals by result, DigitalOcean requests by endpoint and status code (with a
latency histogram), Kubernetes writes by kind. Gauges: rate-limit quota left per token (a short
hash of it, never the token), objects managed and expired.

One registry of our own (no process/platform collectors by surprise), served by
:func:`serving` on its own port without blocking the event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from doks_access import endpoints

OBJECT_LABELS = ("namespace", "name", "cluster_id")
READY_VALUES = ("True", "False", "Unknown")


@dataclasses.dataclass(frozen=True)
class ObjectState:
    """What the metrics say about one DOClusterAccess after a reconciliation."""

    cluster_id: str
    expires_at: datetime.datetime | None
    renewal_time: datetime.datetime | None
    ready: str  # "True", "False" or "Unknown"
    failures: int


class Metrics:
    """The operator's metrics in one registry; methods are cheap and never block."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.expiration = Gauge(
            "doks_access_credential_expiration_timestamp_seconds",
            "When the credential in the object's Secret expires (Unix time).",
            OBJECT_LABELS,
            registry=r,
        )
        self.renewal = Gauge(
            "doks_access_credential_renewal_timestamp_seconds",
            "When the next fetch for the object is planned (Unix time).",
            OBJECT_LABELS,
            registry=r,
        )
        self.ready = Gauge(
            "doks_access_ready",
            "1 for the current status of the object's Ready condition, else 0.",
            (*OBJECT_LABELS, "status"),
            registry=r,
        )
        self.failures = Gauge(
            "doks_access_consecutive_failures",
            "Failed fetches for the object since its last success.",
            OBJECT_LABELS,
            registry=r,
        )
        self.renewals = Counter(
            "doks_access_renewals",
            "Fetch attempts by result: success, or the failure's reason.",
            ("result",),
            registry=r,
        )
        self.requests = Counter(
            "doks_access_digitalocean_requests",
            "DigitalOcean API requests by endpoint and HTTP status code (none: no answer).",
            ("endpoint", "code"),
            registry=r,
        )
        self.latency = Histogram(
            "doks_access_digitalocean_request_duration_seconds",
            "DigitalOcean API request duration.",
            ("endpoint",),
            registry=r,
        )
        self.remaining = Gauge(
            "doks_access_digitalocean_ratelimit_remaining",
            "Requests left in DigitalOcean's hourly window, per token (a hash of it).",
            ("token",),
            registry=r,
        )
        self.writes = Counter(
            "doks_access_kubernetes_writes",
            "Kubernetes API writes by kind: Secret, Status, Event.",
            ("kind",),
            registry=r,
        )
        self.managed = Gauge(
            "doks_access_managed_objects", "DOClusterAccess objects being kept.", registry=r
        )
        self.expired = Gauge(
            "doks_access_expired_objects",
            "DOClusterAccess objects whose credential has expired.",
            registry=r,
        )
        self._objects: dict[tuple[str, str], tuple[str, bool]] = {}  # key → (cluster_id, expired)

    def observe_object(
        self, *, namespace: str, name: str, state: ObjectState, now: datetime.datetime
    ) -> None:
        key = (namespace, name)
        previous = self._objects.get(key)
        if previous is not None and previous[0] != state.cluster_id:
            self._remove_series(namespace, name, previous[0])
        labels = (namespace, name, state.cluster_id)
        if state.expires_at is not None:
            self.expiration.labels(*labels).set(state.expires_at.timestamp())
        if state.renewal_time is not None:
            self.renewal.labels(*labels).set(state.renewal_time.timestamp())
        for value in READY_VALUES:
            self.ready.labels(*labels, value).set(1 if value == state.ready else 0)
        self.failures.labels(*labels).set(state.failures)
        expired = state.expires_at is not None and state.expires_at <= now
        self._objects[key] = (state.cluster_id, expired)
        self._count_objects()

    def forget_object(self, *, namespace: str, name: str) -> None:
        """The object is gone (or no longer ours): its series go too."""
        previous = self._objects.pop((namespace, name), None)
        if previous is not None:
            self._remove_series(namespace, name, previous[0])
        self._count_objects()

    def renewal_result(self, result: str) -> None:
        self.renewals.labels(result).inc()

    def kubernetes_write(self, kind: str) -> None:
        self.writes.labels(kind).inc()

    def response(
        self, *, endpoint: str, code: str, seconds: float, token_key: str, remaining: int | None
    ) -> None:
        """The DigitalOcean client's observer hook (see ``digitalocean.ResponseObserver``)."""
        self.requests.labels(endpoint, code).inc()
        self.latency.labels(endpoint).observe(seconds)
        if remaining is not None:
            self.remaining.labels(token_key).set(remaining)

    def exposition(self) -> bytes:
        exposition: bytes = generate_latest(self.registry)
        return exposition

    def _remove_series(self, namespace: str, name: str, cluster_id: str) -> None:
        labels = (namespace, name, cluster_id)
        for gauge in (self.expiration, self.renewal, self.failures):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for value in READY_VALUES:
            with contextlib.suppress(KeyError):
                self.ready.remove(*labels, value)

    def _count_objects(self) -> None:
        self.managed.set(len(self._objects))
        self.expired.set(sum(1 for _, expired in self._objects.values() if expired))


def serving(metrics: Metrics, endpoint: str) -> contextlib.AbstractAsyncContextManager[None]:
    """Serve the exposition at ``endpoint`` (e.g. ``http://0.0.0.0:9090/metrics``)."""

    async def scrape(request: web.Request) -> web.Response:
        del request
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return endpoints.serve(endpoint, scrape, what="metrics")
