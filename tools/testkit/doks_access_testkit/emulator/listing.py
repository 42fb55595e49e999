"""Clusters as the API shows them, and DigitalOcean's page/per_page pagination.

The operator resolves ``clusterName`` by walking every page of ``GET /v2/kubernetes/clusters``
(there is no name filter), so pages must behave like the real ones: 20 per page by default, at
most 200, ``meta.total`` always, and ``links.pages`` with only the links that make sense (no
``first``/``prev`` on the first page, no ``next``/``last`` on the last), as absolute URLs that keep
``per_page``. A single page has ``"links": {}`` (the ``no_links_on_single_page`` quirk drops the
key instead; see :mod:`.quirks`).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from doks_access_testkit.emulator.clock import rfc3339_seconds
from doks_access_testkit.emulator.state import Cluster

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200

_DIGITS = re.compile(r"[0-9]+")

T = TypeVar("T")


def parse_page(query: Mapping[str, str]) -> tuple[int, int]:
    """``(page, per_page)`` from the query; ``per_page`` above 200 is capped, not refused."""
    page = _positive(query.get("page"), name="page", default=1)
    per_page = _positive(query.get("per_page"), name="per_page", default=DEFAULT_PER_PAGE)
    return page, min(per_page, MAX_PER_PAGE)


def paginate(
    items: Sequence[T], *, page: int, per_page: int, url: str
) -> tuple[list[T], dict[str, Any]]:
    """The items of ``page`` and the ``links`` object; ``url`` is the collection's absolute URL."""
    last = max(1, math.ceil(len(items) / per_page))
    pages: dict[str, str] = {}
    if page > 1:
        pages["first"] = _page_url(url, page=1, per_page=per_page)
        pages["prev"] = _page_url(url, page=min(page - 1, last), per_page=per_page)
    if page < last:
        pages["next"] = _page_url(url, page=page + 1, per_page=per_page)
        pages["last"] = _page_url(url, page=last, per_page=per_page)
    start = (page - 1) * per_page
    return list(items[start : start + per_page]), ({"pages": pages} if pages else {})


def cluster_resource(cluster: Cluster, *, show_tags: bool = True) -> dict[str, Any]:
    """A cluster object shaped like ``models/cluster_read.yml`` (one small node pool).

    The cluster's ``tags`` "require ``tag:read`` scope": without it (``show_tags=False``) the key
    is left out entirely, which is what a client must cope with.
    """
    created = rfc3339_seconds(cluster.created_at or 0.0)
    tags = ["k8s", f"k8s:{cluster.id}"]
    pool_id = _derived_uuid(cluster, "pool")
    resource: dict[str, Any] = {
        "id": cluster.id,
        "name": cluster.name,
        "region": cluster.region,
        "version": cluster.version,
        "cluster_subnet": "10.244.0.0/16",
        "service_subnet": "10.245.0.0/16",
        "vpc_uuid": _derived_uuid(cluster, "vpc"),
        "endpoint": cluster.endpoint,
        "tags": list(dict.fromkeys([*tags, *cluster.tags])),  # a tag is there once or not at all
        "node_pools": [
            {
                "id": pool_id,
                "name": f"{cluster.name}-default-pool",
                "size": "s-2vcpu-4gb",
                "count": 1,
                "tags": [*tags, "k8s:worker"],
                "labels": None,
                "taints": [],
                "auto_scale": False,
                "min_nodes": 0,
                "max_nodes": 0,
                "nodes": [
                    {
                        "id": _derived_uuid(cluster, "node"),
                        "name": f"{cluster.name}-default-pool-0",
                        "status": {"state": "running"},
                        "droplet_id": str(uuid.UUID(pool_id).int % 10**9),
                        "created_at": created,
                        "updated_at": created,
                    }
                ],
            }
        ],
        "maintenance_policy": {"start_time": "00:00", "duration": "4h0m0s", "day": "any"},
        "auto_upgrade": False,
        "isolated_workers": False,
        "status": {"state": cluster.status},
        "created_at": created,
        "updated_at": created,
        "surge_upgrade": False,
        "registry_enabled": False,
        "registries": [],
        "ha": True,
        "control_plane_firewall": {"enabled": False, "allowed_addresses": []},
        "sso": sso_resource(cluster),
        "routing_agent": {"enabled": False},
    }
    if not show_tags:
        del resource["tags"]
    return resource


def sso_resource(cluster: Cluster) -> dict[str, Any]:
    """The cluster's ``sso`` object (``models/sso.yml``): ``issuer_url`` and ``client_id`` are
    "required when ``enabled`` is ``true``", and shown only then, since a disabled SSO has none."""
    sso: dict[str, Any] = {"enabled": cluster.sso, "required": cluster.sso_required}
    if cluster.sso:
        sso["issuer_url"] = cluster.sso_issuer_url
        sso["client_id"] = cluster.sso_client_id
    return sso


def _positive(raw: str | None, *, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw) or int(raw) < 1:
        raise ValueError(f"{name} must be a positive integer")
    return int(raw)


def _page_url(url: str, *, page: int, per_page: int) -> str:
    return f"{url}?{urlencode({'page': page, 'per_page': per_page})}"


def _derived_uuid(cluster: Cluster, what: str) -> str:
    return str(uuid.uuid5(uuid.UUID(cluster.id), what))
