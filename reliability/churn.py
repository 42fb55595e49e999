"""Objects that come and go while a scenario runs: created, edited and deleted at a steady pace.

Churn is the background of a real management cluster; it must not disturb the objects that are
left alone. Each operation is chosen by a seeded generator, so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from bench.kubeapi import GROUP, PLURAL, VERSION, BenchKube
from reliability.rig import TOKEN_SECRET

FORMATS = ("Kubeconfig", "Flux", "ArgoCD")


@dataclasses.dataclass
class ChurnCounts:
    created: int = 0
    edited: int = 0
    deleted: int = 0
    errors: int = 0


class Churn:
    """Keeps about ``population`` objects alive: one create, edit or delete per ``period``."""

    def __init__(
        self,
        *,
        kube: BenchKube,
        namespace: str,
        clusters: list[str],
        lifetime: int,
        population: int = 6,
        period: float = 2.0,
        seed: int = 9,
    ) -> None:
        self._kube, self.namespace, self._clusters = kube, namespace, clusters
        self._lifetime, self._population, self._period = lifetime, population, period
        self._random = random.Random(seed)
        self._serial = 0
        self.live: dict[str, str] = {}  # name -> target Secret name
        self.gone: list[str] = []  # target Secrets of deleted objects
        self.counts = ChurnCounts()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._step()
            except ApiException:
                self.counts.errors += 1
            with contextlib.suppress(TimeoutError):
                remaining = self._period - (time.monotonic() - started)
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, remaining))

    async def _step(self) -> None:
        roll = self._random.random()
        if len(self.live) < self._population // 2 or (
            roll < 0.4 and len(self.live) < self._population
        ):
            await self._create()
        elif roll < 0.8:
            await self._edit(self._random.choice(sorted(self.live)))
        else:
            await self._delete(self._random.choice(sorted(self.live)))

    async def _create(self) -> None:
        self._serial += 1
        name = f"churn-{self._serial:04d}"
        spec = {
            "clusterID": self._random.choice(self._clusters),
            "expirySeconds": self._lifetime,
            "tokenSecretRef": {"name": TOKEN_SECRET},
            "target": {"format": self._random.choice(FORMATS)},
        }
        await self._kube.create_object(namespace=self.namespace, name=name, spec=spec)
        self.live[name] = f"{name}-kubeconfig"
        self.counts.created += 1

    async def _edit(self, name: str) -> None:
        """A label (no new credential), or a new format or lifetime (a new credential at once)."""
        choice = self._random.choice(("label", "format", "lifetime"))
        patch: dict[str, Any]
        if choice == "label":
            patch = {"metadata": {"labels": {"churn": str(self._random.randrange(1000))}}}
        elif choice == "format":
            patch = {"spec": {"target": {"format": self._random.choice(FORMATS)}}}
        else:
            lifetime = self._lifetime + self._random.choice((0, 30, 60))
            patch = {"spec": {"expirySeconds": lifetime}}
        await self._kube.merge_patch_object(namespace=self.namespace, name=name, patch=patch)
        self.counts.edited += 1

    async def _delete(self, name: str) -> None:
        await self._kube.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        self.gone.append(self.live.pop(name))
        self.counts.deleted += 1

    async def problems(self) -> list[str]:
        """What is wrong now: a live object not Ready or without its Secret, a deleted object's
        Secret still there."""
        found = []
        listing = await self._kube.list_objects(self.namespace)
        ready = {
            item["metadata"]["name"]
            for item in listing["items"]
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in item.get("status", {}).get("conditions", [])
            )
        }
        listed = await self._kube.core.list_namespaced_secret(self.namespace)
        secrets = {s.metadata.name for s in listed.items if s.metadata is not None}
        for name, secret in sorted(self.live.items()):
            if name not in ready:
                found.append(f"{name} is not Ready")
            if secret not in secrets:
                found.append(f"{name} has no Secret {secret}")
        found += [f"{secret} outlived its object" for secret in self.gone if secret in secrets]
        return found
