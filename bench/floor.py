"""The floor: the least work that turns a new DOClusterAccess into a Ready one, done directly.

The same calls the operator must make, with the same clients (the operator's DigitalOcean client,
``kubernetes.aio``), and nothing else: no framework, no finalizer, no event, no validation beyond
what the client does anyway. Scenario 1 compares the operator with this.
"""

from __future__ import annotations

import base64
from typing import Any

from doks_access import digitalocean
from doks_access.bookkeeping import format_timestamp
from doks_access.kube import GROUP, Kube
from doks_access.kubeconfig import Credential

WRITES = 2  # the Secret and the status; the object itself is the benchmark's


async def make_ready(
    *,
    kube: Kube,
    do: digitalocean.DigitalOceanClient,
    namespace: str,
    name: str,
    token: str,
    cluster_id: str,
    expiry_seconds: int,
) -> None:
    """GET the kubeconfig, create the Secret, mark the object Ready: three requests."""
    credential: Credential = await do.fetch_kubeconfig(
        token=token, cluster_id=cluster_id, expiry_seconds=expiry_seconds
    )
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-kubeconfig", "namespace": namespace},
        "type": "Opaque",
        "data": {"kubeconfig": base64.b64encode(credential.raw).decode()},
    }
    await kube.create_secret(namespace=namespace, manifest=secret)
    issued = format_timestamp(credential.issued_at)
    await kube.patch_status(
        namespace=namespace,
        name=name,
        patch={
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Issued",
                    "message": f"written by the {GROUP} floor benchmark",
                    "lastTransitionTime": issued,
                }
            ],
            "issuedAt": issued,
            "expiresAt": format_timestamp(credential.expires_at),
        },
    )
