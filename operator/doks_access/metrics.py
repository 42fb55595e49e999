"""Prometheus metrics: know *before* a credential expires that its renewals are failing.

Per object (``namespace``, ``name``, ``cluster_id``): when its credential expires, when the next
fetch is planned, its Ready status and its consecutive failures — the series disappear with the
object. Counters: renewals by result, lifetime guard checks by result, DigitalOcean requests by
endpoint and status code (with a latency histogram), Kubernetes writes by kind. Gauges: rate-limit
quota left per token (a short hash of it, never the token), objects managed and expired.

One registry of our own (no process/platform collectors by surprise), served by
:func:`serving` on its own port without blocking the event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from doks_access import endpoints

OBJECT_LABELS = ("namespace", "name", "cluster_id")
READY_VALUES = ("True", "False", "Unknown")
SET_STATES = ("matched", "ready", "pending", "refused")


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectState:
    """What the metrics say about one DOClusterAccess after a reconciliation."""

    cluster_id: str
    expires_at: datetime.datetime | None
    renewal_time: datetime.datetime | None
    ready: str  # "True", "False" or "Unknown"
    failures: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Series:
    """One object's per-object series, as plain numbers (a few dozen bytes per object)."""

    cluster_id: str
    expires_at: float | None
    renewal_time: float | None
    ready: str
    failures: int
    expired: bool


class Metrics:
    """The operator's metrics in one registry; methods are cheap and never block.

    The per-object series are rendered at scrape time from one small record per object rather
    than kept as Prometheus children (six per object, each with its own lock): with thousands of
    objects that was a good part of the operator's memory.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._objects: dict[tuple[str, str], _Series] = {}
        r.register(_PerObject(self._objects))
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
        self.guard_checks = Counter(
            "doks_access_guard_checks",
            "Lifetime guard checks of held credentials (spec.verify) by result: accepted, "
            "rejected (the cluster refused it: a new one is fetched at once), unknown (the "
            "cluster could not be asked).",
            ("result",),
            registry=r,
        )
        self.writes = Counter(
            "doks_access_kubernetes_writes",
            "Kubernetes API writes by kind: Secret, Status, Event, DOClusterAccess.",
            ("kind",),
            registry=r,
        )
        self.set_clusters = Gauge(
            "doks_access_set_clusters",
            "Clusters of a DOClusterAccessSet: matched by its selector, with a Ready child, "
            "pending (not running yet), refused (target names collide, invalid rendering, SSO "
            "required).",
            ("namespace", "name", "state"),
            registry=r,
        )
        self.set_stalled = Gauge(
            "doks_access_set_stalled",
            "1 while a DOClusterAccessSet is Stalled (a problem that needs a human).",
            ("namespace", "name"),
            registry=r,
        )

    def observe_object(
        self, *, namespace: str, name: str, state: ObjectState, now: datetime.datetime
    ) -> None:
        expires_at = state.expires_at
        self._objects[(namespace, name)] = _Series(
            cluster_id=state.cluster_id,
            expires_at=None if expires_at is None else expires_at.timestamp(),
            renewal_time=None if state.renewal_time is None else state.renewal_time.timestamp(),
            ready=state.ready,
            failures=state.failures,
            expired=expires_at is not None and expires_at <= now,
        )

    def forget_object(self, *, namespace: str, name: str) -> None:
        """The object is gone (or no longer ours): its series go too."""
        self._objects.pop((namespace, name), None)

    def observe_set(
        self, *, namespace: str, name: str, counts: Mapping[str, int], stalled: bool
    ) -> None:
        """A set's counts by state (``SET_STATES``) and whether it is Stalled."""
        for state in SET_STATES:
            self.set_clusters.labels(namespace, name, state).set(counts.get(state, 0))
        self.set_stalled.labels(namespace, name).set(1 if stalled else 0)

    def forget_set(self, *, namespace: str, name: str) -> None:
        for state in SET_STATES:
            with contextlib.suppress(KeyError):
                self.set_clusters.remove(namespace, name, state)
        with contextlib.suppress(KeyError):
            self.set_stalled.remove(namespace, name)

    def renewal_result(self, result: str) -> None:
        self.renewals.labels(result).inc()

    def guard_check(self, result: str) -> None:
        self.guard_checks.labels(result).inc()

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


class _PerObject(Collector):
    """The per-object gauges and the object counts, from the records at scrape time."""

    def __init__(self, objects: Mapping[tuple[str, str], _Series]) -> None:
        self._objects = objects

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(list(self._objects.items()))

    def _families(self, objects: Sequence[tuple[tuple[str, str], _Series]] = ()) -> list[Metric]:
        expiration = GaugeMetricFamily(
            "doks_access_credential_expiration_timestamp_seconds",
            "When the credential in the object's Secret expires (Unix time).",
            labels=OBJECT_LABELS,
        )
        renewal = GaugeMetricFamily(
            "doks_access_credential_renewal_timestamp_seconds",
            "When the next fetch for the object is planned (Unix time).",
            labels=OBJECT_LABELS,
        )
        ready = GaugeMetricFamily(
            "doks_access_ready",
            "1 for the current status of the object's Ready condition, else 0.",
            labels=(*OBJECT_LABELS, "status"),
        )
        failures = GaugeMetricFamily(
            "doks_access_consecutive_failures",
            "Failed fetches for the object since its last success.",
            labels=OBJECT_LABELS,
        )
        for (namespace, name), series in objects:
            labels = [namespace, name, series.cluster_id]
            if series.expires_at is not None:
                expiration.add_metric(labels, series.expires_at)
            if series.renewal_time is not None:
                renewal.add_metric(labels, series.renewal_time)
            for value in READY_VALUES:
                ready.add_metric([*labels, value], 1 if value == series.ready else 0)
            failures.add_metric(labels, series.failures)
        managed = GaugeMetricFamily(
            "doks_access_managed_objects", "DOClusterAccess objects being kept.", value=len(objects)
        )
        expired = GaugeMetricFamily(
            "doks_access_expired_objects",
            "DOClusterAccess objects whose credential has expired.",
            value=sum(1 for _, series in objects if series.expired),
        )
        return [expiration, renewal, ready, failures, managed, expired]


def serving(metrics: Metrics, endpoint: str) -> contextlib.AbstractAsyncContextManager[None]:
    """Serve the exposition at ``endpoint`` (e.g. ``http://0.0.0.0:9090/metrics``)."""

    async def scrape(request: web.Request) -> web.Response:
        del request
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return endpoints.serve(endpoint, scrape, what="metrics")
