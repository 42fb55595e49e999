"""Publish what a reconciliation found: the status patch, the events, the per-object metrics.

Everything comes from one typed :class:`~doks_access.status.Report`; what to write is decided by
the pure ``status`` module, and this module only writes it: a PATCH when the status changed (none
when an idle check recomputed the same one), one event per change of state, and the object's
series for Prometheus.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from doks_access import kube, metrics, status
from doks_access.objects import AccessObject

__all__ = ["publish"]


async def publish(
    obj: AccessObject,
    report: status.Report,
    *,
    api: kube.Kube,
    collected: metrics.Metrics,
    now: datetime.datetime,
) -> Mapping[str, Any] | None:
    """Write the status ``report`` calls for; return the object as the PATCH returned it (None:
    nothing to write)."""
    current = status.status_for(previous=obj.status, report=report, now=now)
    patch = status.status_patch(previous=obj.status, current=current)
    written = None
    if patch is not None:
        written = await api.patch_status(namespace=obj.namespace, name=obj.name, patch=patch)
    collected.observe_object(
        namespace=obj.namespace,
        name=obj.name,
        state=metrics.ObjectState(
            cluster_id=current.cluster_id or "",
            expires_at=current.expires_at,
            renewal_time=current.renewal_time,
            ready=current.ready,
            failures=current.failed_attempts,
        ),
        now=now,
    )
    events = status.events_for(previous=obj.status, current=current)
    if events:
        version = written["metadata"].get("resourceVersion") if written else None
        involved = kube.Involved(
            namespace=obj.namespace,
            name=obj.name,
            uid=obj.uid,
            resource_version=version or obj.resource_version,
        )
        for event in events:
            await api.emit_event(
                involved=involved,
                type_=event.type.value,
                reason=event.reason,
                message=event.message,
                now=now,
            )
    return written
