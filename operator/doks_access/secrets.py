"""Every write to a target Secret, in one place: create, replace, recreate, delete.

``rendering`` decides what the Secret should hold (pure); this module turns the difference between
that and the Secret as read into the fewest API calls, and removes a Secret the object no longer
targets -- only if it is still the object's own. It returns the resourceVersion it wrote, so that
the watch event of the operator's own write can be told from someone else's change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from doks_access import kube, rendering

__all__ = ["delete_if_owned", "write"]


async def write(
    api: kube.Kube,
    *,
    namespace: str,
    existing: Mapping[str, Any] | None,
    desired: rendering.SecretManifest,
) -> str | None:
    """Make the Secret ``desired``; return its new resourceVersion (None: it was already so)."""
    change = rendering.write_for(existing, desired)
    if change.action is rendering.WriteAction.UNCHANGED:
        return None
    if change.action is rendering.WriteAction.CREATE:
        return await api.create_secret(namespace=namespace, manifest=change.manifest)
    if change.action is rendering.WriteAction.REPLACE:
        return await api.replace_secret(namespace=namespace, manifest=change.manifest)
    # RECREATE: the type of a Secret cannot change in place.
    uid = (existing or {}).get("metadata", {}).get("uid")
    await api.delete_secret(namespace=namespace, name=desired["metadata"]["name"], uid=uid)
    return await api.create_secret(namespace=namespace, manifest=change.manifest)


async def delete_if_owned(api: kube.Kube, *, namespace: str, name: str, owner_name: str) -> None:
    """Delete the Secret ``name`` if the DOClusterAccess ``owner_name`` manages it (the target
    was renamed); a Secret someone else took over stays."""
    secret = await api.read_secret(namespace=namespace, name=name)
    if secret is None:
        return
    owner = rendering.Owner(namespace=namespace, name=owner_name, uid="")
    claim = rendering.ownership(existing=secret, owner=owner, adopt=False)
    if claim is rendering.Ownership.OURS:
        await api.delete_secret(namespace=namespace, name=name, uid=secret["metadata"]["uid"])
