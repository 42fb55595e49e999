"""Pure arithmetic on what the benchmarks observe: distributions and API-server request counts.

Kept free of I/O so that the numbers the report prints are computed by tested code.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
# Long-lived streams, not calls that cost the API server per request.
STREAM_VERBS = frozenset({"WATCH", "WATCHLIST", "CONNECT"})

RequestKey = tuple[str, str, str]  # verb, resource, subresource
RequestCounts = collections.Counter[RequestKey]


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Order statistics of a sample (seconds, usually)."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        ordered = sorted(values)
        if not ordered:
            raise ValueError("a distribution needs at least one value")
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
            max=ordered[-1],
            mean=math.fsum(ordered) / len(ordered),
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile of sorted values, interpolating linearly between ranks."""
    if not ordered:
        raise ValueError("no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is not in [0, 100]")
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def apiserver_requests(text: str) -> collections.Counter[RequestKey]:
    """``apiserver_request_total`` from the API server's ``/metrics``, by verb and resource.

    Summed over the labels that do not matter here (code, scope, version, component).
    """
    counts: collections.Counter[RequestKey] = collections.Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            key = (
                labels.get("verb", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
            )
            counts[key] += int(sample.value)
    return counts


def delta(
    before: Mapping[RequestKey, int], after: Mapping[RequestKey, int]
) -> collections.Counter[RequestKey]:
    """Requests made between two scrapes (keys with no change are left out)."""
    result: collections.Counter[RequestKey] = collections.Counter()
    for key, value in after.items():
        change = value - before.get(key, 0)
        if change:
            result[key] = change
    return result


def writes(counts: Mapping[RequestKey, int], *, resources: Iterable[str]) -> int:
    """Write requests (create, update, patch, delete) on ``resources``, subresources included."""
    wanted = set(resources)
    return sum(
        n for (verb, resource, _), n in counts.items() if verb in WRITE_VERBS and resource in wanted
    )


def calls(counts: Mapping[RequestKey, int], *, resources: Iterable[str]) -> int:
    """Every request on ``resources`` except long-lived watch streams."""
    wanted = set(resources)
    return sum(
        n
        for (verb, resource, _), n in counts.items()
        if verb not in STREAM_VERBS and resource in wanted
    )


def by_verb(counts: Mapping[RequestKey, int], *, resources: Iterable[str]) -> dict[str, int]:
    """``{"PATCH doclusteraccesses/status": n, ...}`` for the report, sorted."""
    wanted = set(resources)
    shown: dict[str, int] = {}
    for (verb, resource, subresource), n in sorted(counts.items()):
        if resource in wanted:
            name = f"{verb} {resource}" + (f"/{subresource}" if subresource else "")
            shown[name] = shown.get(name, 0) + n
    return shown


def sliding_window_minimum(count: int, *, per_window: int, window: float) -> float:
    """Shortest time in which ``count`` requests fit a sliding-window limit, starting empty.

    The first ``per_window`` go at once, the next when the first leave the window, and so on.
    """
    if count <= 0:
        return 0.0
    return math.ceil(count / per_window - 1) * window if count > per_window else 0.0


def per_object(amount: float, *, objects: float) -> float:
    """``amount`` shared out over ``objects`` (bytes per watched object, say)."""
    if objects <= 0:
        raise ValueError(f"no objects to share {amount} over")
    return amount / objects


def growth_per_object(points: Sequence[Mapping[str, float]], key: str) -> float:
    """How much ``key`` grew per object between the first and the last of ``points``, each of
    which says how many ``objects`` it was taken at."""
    if len(points) < 2:
        raise ValueError("growth needs two points")
    first, last = points[0], points[-1]
    return per_object(last[key] - first[key], objects=last["objects"] - first["objects"])
