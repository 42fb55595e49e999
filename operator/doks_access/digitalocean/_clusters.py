"""The few facts about a DOKS cluster the operator uses, read out of the API's JSON.

A cluster object in the API has dozens of fields (node pools, maintenance windows, plugins). The
operator needs seven: the ID to fetch credentials with, the name to resolve ``spec.clusterName``
(DigitalOcean has no name filter, so names are matched over a full listing), the region and the
endpoint for status, and the tags and state a ``DOClusterAccessSet`` selects by, and whether the
cluster requires SSO (then no token credential works on it). Reading only those keeps the operator
indifferent to the rest of the schema changing. Parsing is pure and raises
:class:`MalformedClusterError` with a reason that names fields, not values; the client turns that
into an :class:`InvalidResponseError`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Cluster",
    "ClusterPage",
    "MalformedClusterError",
    "is_cluster_id",
    "parse_cluster",
    "parse_cluster_page",
]

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


class MalformedClusterError(ValueError):
    """The JSON does not have the shape of a cluster (or a page of them)."""


def is_cluster_id(value: str) -> bool:
    """Whether ``value`` has the shape of a DOKS cluster ID (a UUID, hyphenated)."""
    return _UUID.fullmatch(value) is not None


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A DOKS cluster as listed by ``GET /v2/kubernetes/clusters``."""

    id: str
    name: str
    region: str
    endpoint: str  # the API server's URL; empty while the cluster is being provisioned
    # None: the answer has no `tags` (DigitalOcean shows them only to tokens with `tag:read`).
    tags: tuple[str, ...] | None = None
    state: str = ""  # `status.state`: running, provisioning, ...; empty when not given
    # `sso.required`: the cluster refuses every credential but SSO, so no token works on it.
    sso_required: bool = False


@dataclasses.dataclass(frozen=True)
class ClusterPage:
    """One page of a cluster listing."""

    clusters: tuple[Cluster, ...]
    has_next: bool  # `links.pages.next` is present
    total: int | None  # `meta.total`, the number of clusters across all pages


def parse_cluster(value: object) -> Cluster:
    """A :class:`Cluster` from an element of ``kubernetes_clusters``, or ``kubernetes_cluster``."""
    if not isinstance(value, Mapping):
        raise MalformedClusterError("a cluster is not a JSON object")
    cluster_id = _string_field(value, "id")
    if not is_cluster_id(cluster_id):
        raise MalformedClusterError("a cluster's id is not a UUID")
    return Cluster(
        id=cluster_id,
        name=_string_field(value, "name"),
        region=_string_field(value, "region"),
        endpoint=_string_field(value, "endpoint", missing_is_empty=True),
        tags=_tags(value.get("tags")),
        state=_state(value.get("status")),
        sso_required=_sso_required(value.get("sso")),
    )


def parse_cluster_page(body: Mapping[str, Any]) -> ClusterPage:
    """A :class:`ClusterPage` from the body of ``GET /v2/kubernetes/clusters``."""
    items = body.get("kubernetes_clusters")
    if not isinstance(items, list):
        raise MalformedClusterError("kubernetes_clusters is missing or not a list")
    return ClusterPage(
        clusters=tuple(parse_cluster(item) for item in items),
        has_next=_has_next_page(body.get("links")),
        total=_total(body.get("meta")),
    )


def _string_field(value: Mapping[str, Any], name: str, *, missing_is_empty: bool = False) -> str:
    field = value.get(name)
    if field is None and missing_is_empty:
        return ""
    if not isinstance(field, str):
        raise MalformedClusterError(f"a cluster's {name} is missing or not a string")
    return field


def _tags(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise MalformedClusterError("a cluster's tags are not a list of strings")
    return tuple(value)


def _state(status: object) -> str:
    state = status.get("state") if isinstance(status, Mapping) else None
    return state if isinstance(state, str) else ""


def _sso_required(sso: object) -> bool:
    # `sso` is nullable and older answers lack it: either way, nothing is required.
    required = sso.get("required") if isinstance(sso, Mapping) else None
    return required is True


def _has_next_page(links: object) -> bool:
    # `links` is `{}` on a single page and `{"pages": {...}}` otherwise; only `next` matters here.
    pages = links.get("pages") if isinstance(links, Mapping) else None
    next_link = pages.get("next") if isinstance(pages, Mapping) else None
    return isinstance(next_link, str) and bool(next_link)


def _total(meta: object) -> int | None:
    total = meta.get("total") if isinstance(meta, Mapping) else None
    # bool is an int in Python, but `true` is not a count.
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    return None
