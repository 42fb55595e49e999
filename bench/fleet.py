"""Scenarios 8 and 9: one DOClusterAccessSet over a fleet of DigitalOcean clusters.

The DESIGN's target: "a fleet set over 1,000 DigitalOcean clusters: all Ready at the rate limit's
pace, 0 x 429; list calls per resync = pages". One account holds ``Sizes.fleet`` clusters tagged
``env:prod`` and ``Sizes.fleet_unselected`` tagged ``env:staging``, interleaved so that every page
of the listing has both; one token; one set selecting ``env:prod``. The clock starts just before
the set is created and stops when the benchmark's watch delivers the set with ``Ready=True`` and
``ready`` = ``matched`` = the clusters selected.

Scenario 8 lifts every rate limit (what the operator's own work costs); scenario 9 has the emulator
enforce DigitalOcean's limits and the operator run on its defaults (what a user waits for). List
calls and kubeconfig calls share the token's limit, so scenario 9's bound counts both. After Ready,
a short window checks that the fleet has gone quiet; then a resync is asked for (the refresh
annotation), which should cost one list call per page and nothing else.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from bench import figures
from bench.kubeapi import SET_PLURAL, SetWatch, StatusWatch, condition_status
from bench.scenarios import (
    LONG_LIFETIME,
    TOKEN_SECRET,
    Bench,
    MiB,
    Result,
    Sizes,
    timed,
)
from bench.stack import UNLIMITED
from doks_access import bookkeeping, digitalocean
from doks_access_testkit.emulator import Cluster, Emulator, RateLimits

SET_NAME = "fleet"
SELECTED_TAG = "env:prod"
UNSELECTED_TAG = "env:staging"
REGIONS = ("nyc1", "fra1", "ams3", "sfo3", "sgp1")
LIST_ENDPOINT, KUBECONFIG_ENDPOINT = "list_clusters", "kubeconfig"
# What the operator reads and writes for a set: the set, its children, their Secrets, events.
SET_RESOURCES = ("doclusteraccesssets", "doclusteraccesses", "secrets", "events")
CHILDREN_LIST = "LIST doclusteraccesses"  # one per reconciliation of the set
SET_STATUS_PATCH = "PATCH doclusteraccesssets/status"


def account(*, selected: int, unselected: int) -> list[Cluster]:
    """``selected`` clusters tagged ``env:prod`` and ``unselected`` tagged ``env:staging``, spread
    evenly through the listing, over a few regions."""
    total = selected + unselected
    clusters: list[Cluster] = []
    numbers = {SELECTED_TAG: 0, UNSELECTED_TAG: 0}
    for i in range(total):
        # Unselected where the running share of `unselected` steps up: evenly spread.
        stepped = (i + 1) * unselected // total > i * unselected // total
        tag = UNSELECTED_TAG if stepped else SELECTED_TAG
        name = f"{tag.removeprefix('env:')}-{numbers[tag]:05d}"
        numbers[tag] += 1
        clusters.append(
            Cluster(name=name, region=REGIONS[i % len(REGIONS)], tags=(tag, f"team-{i % 7}"))
        )
    return clusters


def pages(clusters: int) -> int:
    """Requests one listing of ``clusters`` takes, at the operator's page size."""
    return max(1, math.ceil(clusters / digitalocean.CLUSTERS_PER_PAGE))


def set_spec() -> dict[str, Any]:
    return {
        "tokenSecretRef": {"name": TOKEN_SECRET},
        "selector": {"tags": [SELECTED_TAG]},
        "template": {"spec": {"expirySeconds": LONG_LIFETIME}},
    }


def all_ready(selected: int) -> Callable[[Mapping[str, Any]], bool]:
    """The set's status once every selected cluster has a Ready child."""

    def done(status: Mapping[str, Any]) -> bool:
        return (
            condition_status(status, "Ready") == "True"
            and status.get("matched") == selected
            and status.get("ready") == selected
        )

    return done


# -- 8. unthrottled --------------------------------------------------------------------------------


async def fleet(bench: Bench, sizes: Sizes) -> Result:
    selected, unselected = sizes.fleet, sizes.fleet_unselected
    result = Result(
        "fleet",
        f"8. Fleet: a set over {selected:,} of {selected + unselected:,} clusters, no rate limit",
    )
    with timed(result):
        run = await _run(
            bench,
            namespace="bench-fleet",
            selected=selected,
            unselected=unselected,
            limits=UNLIMITED,
            operator_limits=UNLIMITED,
            within=max(120.0, selected * 0.5),
            settle=sizes.fleet_settle,
        )
        _figures(result, run)
    return result


# -- 9. at DigitalOcean's limits -------------------------------------------------------------------


async def fleet_rate_limited(bench: Bench, sizes: Sizes) -> Result:
    limits, selected, unselected = (
        sizes.rate_limits,
        sizes.fleet_rate_limited,
        sizes.fleet_unselected,
    )
    result = Result(
        "fleet-rate-limited",
        f"9. Fleet at the rate limit: a set over {selected:,} of {selected + unselected:,} "
        f"clusters, emulator enforcing {limits.per_minute}/min and {limits.per_hour:,}/h",
    )
    calls = selected + pages(selected + unselected)
    bound = limit_bound(calls, limits=limits)
    with timed(result):
        run = await _run(
            bench,
            namespace="bench-fleet-limited",
            selected=selected,
            unselected=unselected,
            limits=limits,
            # The operator's defaults when `limits` are DigitalOcean's: 10 % kept in reserve.
            operator_limits=RateLimits(per_minute=limits.per_minute, per_hour=limits.per_hour),
            within=bound["operator_s"] * 2 + 120,
            settle=sizes.fleet_settle,
        )
        run["limit_bound"] = bound
        _figures(result, run, bound=bound)
    return result


def limit_bound(calls: int, *, limits: RateLimits) -> dict[str, Any]:
    """The least time ``calls`` requests of one token take under sliding-window limits.

    The emulator, like DigitalOcean, counts an allowed request for a full minute (and a full hour)
    after it arrived; so with ``per_minute`` allowed, the first ``per_minute`` go at once and each
    later group of ``per_minute`` one minute after the one before: the last request can go at
    ``ceil(calls / per_minute - 1)`` minutes. The operator aims at ``0.9 * per_minute`` (its
    default reserve) and counts a request from its answer, so it needs a little more than that
    bound at its own budget. The hourly limit binds only past ``0.9 * per_hour`` calls.
    """
    reserve = digitalocean.RateLimits(per_minute=limits.per_minute, per_hour=limits.per_hour)
    hour_bound = figures.sliding_window_minimum(calls, per_window=reserve.hour_budget, window=3600)
    return {
        "calls": calls,
        "per_minute": limits.per_minute,
        "operator_per_minute": reserve.minute_budget,
        "api_s": figures.sliding_window_minimum(calls, per_window=limits.per_minute, window=60),
        "operator_s": max(
            hour_bound,
            figures.sliding_window_minimum(calls, per_window=reserve.minute_budget, window=60),
        ),
    }


# -- the run both share ----------------------------------------------------------------------------


async def _run(
    bench: Bench,
    *,
    namespace: str,
    selected: int,
    unselected: int,
    limits: RateLimits,
    operator_limits: RateLimits,
    within: float,
    settle: float,
) -> dict[str, Any]:
    emulator = bench.account_emulator(
        account(selected=selected, unselected=unselected), limits=limits
    )
    await bench.namespace(namespace)
    operator = bench.operator(emulator=emulator, namespace=namespace, limits=operator_limits)
    async with (
        StatusWatch(bench.kube, namespace) as children,
        SetWatch(bench.kube, namespace) as sets,
    ):
        await asyncio.sleep(2)  # the operator's watches are established
        before, own = await bench.requests(), bench.kube.own_writes
        cpu_before = operator.cpu()
        started = time.monotonic()
        await bench.kube.create_set(namespace=namespace, name=SET_NAME, spec=set_spec())
        ready_at = await sets.wait_status(SET_NAME, all_ready(selected), within=within)
        cpu = operator.cpu() - cpu_before
        peak_rss, rss = operator.peak_rss(), operator.rss()
        counts = figures.delta(before, await bench.requests())
        own_writes = bench.kube.own_writes - own
        calls = _calls(emulator)
        quiet = await _quiet_window(bench, emulator, seconds=settle)
        resync = await _resync(bench, emulator, sets, namespace=namespace, selected=selected)
        history = sets.statuses.get(SET_NAME, [])
        child_ready = sorted(at - started for at in children.ready_at.values())
    last_status = history[-1][1] if history else {}
    return {
        "clusters": selected + unselected,
        "selected": selected,
        "pages": pages(selected + unselected),
        "set_ready_s": None if ready_at is None else round(ready_at - started, 2),
        "matched": last_status.get("matched"),
        "ready": last_status.get("ready"),
        "pending": last_status.get("pending"),
        # Every status the set had until Ready: seconds after its creation, ready of matched.
        "set_timeline": [
            {
                "at_s": round(at - started, 2),
                "matched": status.get("matched"),
                "ready": status.get("ready"),
                "Ready": condition_status(status, "Ready"),
            }
            for at, status in history
            if ready_at is None or at <= ready_at
        ],
        "children_ready": len(child_ready),
        "child_ready_first_s": _rounded(child_ready[0] if child_ready else None),
        "child_ready_p50_s": _rounded(_percentile(child_ready, 50)),
        "child_ready_p95_s": _rounded(_percentile(child_ready, 95)),
        "child_ready_last_s": _rounded(child_ready[-1] if child_ready else None),
        **calls,
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(peak_rss / MiB, 1),
        "rss_mib": round(rss / MiB, 1),
        "api_requests": _requests(counts),
        "api_writes": figures.writes(counts, resources=SET_RESOURCES) - own_writes,
        "quiet": quiet,
        "resync": resync,
    }


def _calls(emulator: Emulator) -> dict[str, Any]:
    return {
        "list_calls": emulator.request_count(LIST_ENDPOINT),
        "kubeconfig_calls": emulator.request_count(KUBECONFIG_ENDPOINT),
        "responses_429": emulator.request_count(outcome=429),
        "digitalocean": emulator.stats(),
    }


async def _quiet_window(bench: Bench, emulator: Emulator, *, seconds: float) -> dict[str, Any]:
    """What the operator asked of DigitalOcean and of the API server in ``seconds`` after the set
    was Ready; a fleet that is done asks nothing until its next resync."""
    before, calls_before = await bench.requests(), emulator.request_count()
    await asyncio.sleep(seconds)
    counts = figures.delta(before, await bench.requests())
    by_verb = _requests(counts)
    return {
        "seconds": seconds,
        "digitalocean_calls": emulator.request_count() - calls_before,
        "api_writes": figures.writes(counts, resources=SET_RESOURCES),
        "children_lists": by_verb.get(CHILDREN_LIST, 0),
        "api_requests": by_verb,
    }


async def _resync(
    bench: Bench, emulator: Emulator, sets: SetWatch, *, namespace: str, selected: int
) -> dict[str, Any]:
    """Ask for a listing now (the refresh annotation) and wait for the set's next
    ``lastSyncTime``: with nothing changed in DigitalOcean, one call per page and no other."""
    history = sets.statuses.get(SET_NAME) or [(0.0, {})]
    synced = history[-1][1].get("lastSyncTime")
    before, own = await bench.requests(), bench.kube.own_writes
    lists, kubeconfigs = (
        emulator.request_count(LIST_ENDPOINT),
        emulator.request_count(KUBECONFIG_ENDPOINT),
    )
    started = time.monotonic()
    annotations = {bookkeeping.REFRESH_REQUESTED_AT: f"{time.time():.6f}"}
    bench.kube.own_writes += 1
    await bench.kube.merge_patch_object(
        namespace=namespace,
        name=SET_NAME,
        patch={"metadata": {"annotations": annotations}},
        plural=SET_PLURAL,
    )
    done = all_ready(selected)
    synced_at = await sets.wait_status(
        SET_NAME,
        lambda status: status.get("lastSyncTime") != synced and done(status),
        within=120,
    )
    counts = figures.delta(before, await bench.requests())
    return {
        "synced_s": None if synced_at is None else round(synced_at - started, 2),
        "list_calls": emulator.request_count(LIST_ENDPOINT) - lists,
        "kubeconfig_calls": emulator.request_count(KUBECONFIG_ENDPOINT) - kubeconfigs,
        "api_writes": figures.writes(counts, resources=SET_RESOURCES)
        - (bench.kube.own_writes - own),
        "api_requests": _requests(counts),
    }


def _requests(counts: figures.RequestCounts) -> dict[str, int]:
    """Requests on the set's resources by verb, without the long-lived watch streams."""
    return {
        name: n
        for name, n in figures.by_verb(counts, resources=SET_RESOURCES).items()
        if name.split()[0] not in figures.STREAM_VERBS
    }


def _percentile(ordered: list[float], pct: float) -> float | None:
    return figures.percentile(ordered, pct) if ordered else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _figures(result: Result, run: dict[str, Any], *, bound: dict[str, Any] | None = None) -> None:
    selected, expected_pages = run["selected"], run["pages"]
    result.details["run"] = run
    result.add("clusters in the account", run["clusters"])
    result.add(
        "clusters selected (status.matched)",
        run["matched"],
        "",
        target=f"{selected:,}",
        met=lambda v: v == selected,
    )
    ready_target, ready_met = "", None
    if bound is not None:
        slack = bound["operator_s"] + 30
        ready_target, ready_met = f"≤ {slack:,.0f} (bound + 30 s)", (lambda v: v <= slack)
    result.add(
        f"set Ready (ready = {selected:,}) after",
        run["set_ready_s"],
        "s",
        target=ready_target,
        met=ready_met,
    )
    if bound is not None:
        result.add(
            f"bound at the API's limit ({bound['calls']:,} calls at {bound['per_minute']}/min)",
            bound["api_s"],
            "s",
        )
        result.add(
            f"bound at the operator's budget ({bound['operator_per_minute']}/min)",
            bound["operator_s"],
            "s",
        )
    result.add("first child Ready after", run["child_ready_first_s"], "s")
    result.add("child Ready p50", run["child_ready_p50_s"], "s")
    result.add("last child Ready after", run["child_ready_last_s"], "s")
    result.add(
        f"list calls ({run['clusters']:,} clusters, {digitalocean.CLUSTERS_PER_PAGE} a page)",
        run["list_calls"],
        "",
        target=f"= pages ({expected_pages})",
        met=lambda v: v == expected_pages,
    )
    result.add(
        "kubeconfig calls",
        run["kubeconfig_calls"],
        "",
        target=f"{selected:,}",
        met=lambda v: v == selected,
    )
    result.add("429 responses", run["responses_429"], "", target="0", met=lambda v: v == 0)
    requests: Mapping[str, int] = run["api_requests"]
    result.add("set reconciliations (LISTs of its children)", requests.get(CHILDREN_LIST, 0))
    result.add("set status patches", requests.get(SET_STATUS_PATCH, 0))
    result.add("API writes per child", run["api_writes"] / selected if selected else None)
    result.add("operator CPU until Ready", run["cpu_s"], "s")
    result.add("operator peak RSS", run["peak_rss_mib"], "MiB")
    quiet = run["quiet"]
    window = f"in the {quiet['seconds']:.0f} s after Ready"
    result.add(
        f"DigitalOcean calls {window}",
        quiet["digitalocean_calls"],
        "",
        target="0",
        met=lambda v: v == 0,
    )
    result.add(f"API writes {window}", quiet["api_writes"], "", target="0", met=lambda v: v == 0)
    resync = run["resync"]
    result.add("a resync asked for: synced and Ready after", resync["synced_s"], "s")
    result.add(
        "list calls of the resync",
        resync["list_calls"] if resync["synced_s"] is not None else None,
        "",
        target=f"= pages ({expected_pages})",
        met=lambda v: v == expected_pages,
    )
    result.add(
        "kubeconfig calls of the resync",
        resync["kubeconfig_calls"],
        "",
        target="0",
        met=lambda v: v == 0,
    )
    result.add("API writes of the resync", resync["api_writes"])
    if run["set_ready_s"] is None:
        result.notes.append(
            f"the set was not Ready with ready = {selected:,} in time: last seen matched "
            f"{run['matched']}, ready {run['ready']}, pending {run['pending']}; "
            f"{run['children_ready']:,} children Ready"
        )
