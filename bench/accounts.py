"""Scenario 10: a policy change reaching every object of a ClusterDOAccount (issue 18).

``Sizes.accounts`` objects in one namespace get their credentials through one account that grants
every cluster. Then the platform team takes the grant away (one patch of the account): the clock
runs until the benchmark's watch has seen every object ``Stalled`` (``ClusterNotAllowed``), while
every credential stays in place. Then the grant is given back, and the clock runs until no object
is ``Stalled``. Neither change may cost a DigitalOcean call or a new credential; what each costs
the API server is counted by resource from its ``/metrics``.

No target is set by DESIGN 8 for this; the figures say what a change costs at this size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from bench import figures
from bench.kubeapi import StatusWatch, condition_status
from bench.scenarios import (
    KUBECONFIG_ENDPOINT,
    LONG_LIFETIME,
    TOKEN_SECRET,
    Bench,
    MiB,
    Result,
    Sizes,
    names,
    timed,
)
from bench.stack import UNLIMITED

ACCOUNT = "bench-accounts"
# What deciding again reads and writes: the account, the namespace's labels, the objects' status.
POLICY_RESOURCES = ("clusterdoaccounts", "namespaces", "doclusteraccesses", "secrets", "events")


class PolicyWatch(StatusWatch):
    """A :class:`StatusWatch` that also notes when each object was last seen turning Stalled,
    and when it last turned from Stalled to not."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stalled: dict[str, bool] = {}
        self.changed_at: dict[str, float] = {}

    async def wait_stalled(self, wanted: set[str], *, stalled: bool, within: float) -> bool:
        def done() -> bool:
            return all(self.stalled.get(name, False) is stalled for name in wanted)

        return await self._wait_for(done, within=within)

    async def _observe(self, item: Mapping[str, Any]) -> None:
        await super()._observe(item)
        name = item["metadata"]["name"]
        now = condition_status(item.get("status") or {}, "Stalled") == "True"
        if self.stalled.get(name, False) is not now:
            self.stalled[name] = now
            self.changed_at[name] = time.monotonic()
            await self._notify()


async def account_change(bench: Bench, sizes: Sizes) -> Result:
    count = sizes.accounts
    result = Result(
        "accounts",
        f"10. A ClusterDOAccount change reaching {count:,} objects: all Stalled, then all resumed",
    )
    with timed(result):
        emulator = bench.emulator(clusters=10, limits=UNLIMITED)
        namespace = await bench.namespace("bench-accounts")
        grants_all = _account_spec(namespace, {"all": True})
        await bench.account(ACCOUNT, grants_all)
        operator = bench.operator(
            emulator=emulator,
            namespace=namespace,
            limits=UNLIMITED,
            extra_args=(f"--account-namespace={namespace}",),
        )
        object_names = names("tenant", count)
        clusters = [c.id for c in emulator.clusters()]
        async with PolicyWatch(bench.kube, namespace) as watch:
            await asyncio.sleep(2)  # the operator's watches are established
            for start in range(0, count, len(clusters)):
                group = object_names[start : start + len(clusters)]
                await asyncio.gather(
                    *(
                        bench.kube.create_object(
                            namespace=namespace,
                            name=name,
                            spec={
                                "clusterID": cluster,
                                "expirySeconds": LONG_LIFETIME,
                                "accountRef": {"name": ACCOUNT},
                            },
                        )
                        for name, cluster in zip(group, clusters, strict=False)
                    )
                )
            if not await watch.wait_ready(object_names, within=max(120, count * 0.5)):
                result.notes.append(f"{len(watch.ready_at)} of {count} became Ready")
                return result
            await asyncio.sleep(3)  # trailing writes (events) land
            wanted = set(object_names)
            calls_before = emulator.request_count()
            issued = emulator.request_count(KUBECONFIG_ENDPOINT)

            refused = _account_spec(namespace, {"names": ["no-such-cluster"]})
            await _measured(
                bench, watch, result, wanted, spec=refused, stalled=True, label="all Stalled"
            )
            await _measured(
                bench, watch, result, wanted, spec=grants_all, stalled=False, label="all resumed"
            )
            result.add(
                "DigitalOcean calls for both changes",
                emulator.request_count() - calls_before,
                target="0",
                met=lambda v: v == 0,
            )
            result.add(
                "credentials replaced",
                emulator.request_count(KUBECONFIG_ENDPOINT) - issued,
                target="0",
                met=lambda v: v == 0,
            )
            unready = len(watch.not_ready)
            result.add("objects not Ready at any time", unready, target="0", met=lambda v: v == 0)
            result.add("operator RSS after", operator.rss() / MiB, "MiB")
    return result


async def _measured(
    bench: Bench,
    watch: PolicyWatch,
    result: Result,
    wanted: set[str],
    *,
    spec: Mapping[str, Any],
    stalled: bool,
    label: str,
) -> bool:
    """Apply ``spec`` to the account; how long until every object's Stalled is ``stalled``, and
    what it cost the API server per object (the benchmark's one PATCH of the account included)."""
    before = await bench.requests()
    started = time.monotonic()
    await bench.kube.merge_patch_account(ACCOUNT, {"spec": dict(spec)})
    done = await watch.wait_stalled(wanted, stalled=stalled, within=max(120, len(wanted) * 0.5))
    finished = max((watch.changed_at.get(name, started) for name in wanted), default=started)
    await asyncio.sleep(3)  # trailing writes (events) land
    counts = figures.delta(before, await bench.requests())
    result.add(f"{label} after", finished - started if done else None, "s")
    per_object = figures.calls(counts, resources=POLICY_RESOURCES) / len(wanted)
    result.add(f"API requests per object ({label})", per_object)
    result.details[f"requests ({label})"] = figures.by_verb(counts, resources=POLICY_RESOURCES)
    if not done:
        settled = sum(1 for name in wanted if watch.stalled.get(name, False) is stalled)
        result.notes.append(f"{label}: {settled} of {len(wanted)} in time")
    return done


def _account_spec(namespace: str, clusters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "tokenSecretRef": {"name": TOKEN_SECRET},
        "tenants": [{"namespaces": [namespace], "clusters": dict(clusters)}],
    }
