"""The first seven scenarios of the benchmark (issues 8 and 14), each returning the figures it
measured; the fleet's two (8 and 9) are in :mod:`bench.fleet` and the accounts' (10) in
:mod:`bench.accounts`, on the same :class:`Bench`.

A scenario never asserts: it measures, compares with the target of DESIGN 8 (as issue 14 revised
them) and says whether the target was met. Sizes come from a :class:`Sizes` so the same code runs
the full benchmark and a small smoke run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bench import census, figures, floor
from bench.kubeapi import BenchKube, StatusWatch
from bench.stack import (
    DIGITALOCEAN_LIMITS,
    TOKEN,
    UNLIMITED,
    OperatorProcess,
    account_emulator,
    fleet_emulator,
)
from doks_access import digitalocean, kube
from doks_access.config import DEFAULT_WORKERS
from doks_access_testkit.emulator import Cluster, Emulator, RateLimits

MiB = 1024 * 1024
TOKEN_SECRET = "digitalocean-api"
# What the operator writes to: its objects' status (and finalizer), Secrets, Events.
OPERATOR_RESOURCES = ("doclusteraccesses", "secrets", "events")
KUBECONFIG_ENDPOINT = "kubeconfig"
LONG_LIFETIME = 86_400  # a day: nothing falls due during a benchmark
KiB = 1024


@dataclasses.dataclass(frozen=True)
class Sizes:
    latency_samples: int = 50
    burst: int = 1000
    # Grown in this order; the targets apply at idle_target, larger sizes are reported without.
    # A size the API server cannot hold ends the growth with a note.
    idle: tuple[int, ...] = (1000, 5000, 10_000, 20_000)
    idle_target: int = 10_000
    idle_window: float = 60.0
    idle_settle: float = 15.0  # a quiet spell of the API server before the idle window
    workers: tuple[int, ...] = (2, 4, 8, 16, 32)  # scenario 7, each a burst of `burst` objects
    restart: int = 1000
    sustained: int = 1000
    sustained_lifetime: int = 120
    sustained_duration: float = 600.0
    rate_limited: int = 1000
    rate_limits: RateLimits = DIGITALOCEAN_LIMITS  # scenarios 6 and 9
    fleet: int = 1000  # scenario 8: the clusters the set selects
    fleet_unselected: int = 200  # in the same account, not selected (scenarios 8 and 9)
    fleet_rate_limited: int = 1000  # scenario 9
    fleet_settle: float = 30.0  # the window after Ready in which nothing should happen
    accounts: int = 1000  # scenario 10: objects served through one ClusterDOAccount

    @classmethod
    def smoke(cls) -> Sizes:
        """Small enough for the test suite: the same code paths, in about a minute."""
        return cls(
            latency_samples=5,
            burst=40,
            idle=(20, 40),
            idle_target=40,
            idle_window=5.0,
            idle_settle=5.0,
            workers=(2, 8),
            restart=40,
            sustained=10,
            sustained_lifetime=30,
            sustained_duration=40.0,
            rate_limited=15,
            rate_limits=RateLimits(per_hour=5000, per_minute=10),
            fleet=30,
            fleet_unselected=190,  # two pages
            fleet_rate_limited=15,
            fleet_settle=5.0,
            accounts=30,
        )


@dataclasses.dataclass
class Figure:
    """One measured value, with its target when DESIGN 8 or the issue sets one."""

    what: str
    value: float | None  # None: could not be measured (the scenario says why in its notes)
    unit: str = ""
    target: str = ""
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Result:
    scenario: str
    title: str
    figures: list[Figure] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(
        self,
        what: str,
        value: float | None,
        unit: str = "",
        *,
        target: str = "",
        met: Callable[[float], bool] | None = None,
    ) -> None:
        verdict = None if met is None or value is None else met(value)
        if met is not None and value is None:
            verdict = False
        self.figures.append(Figure(what, value, unit, target, verdict))

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "figures": [f.as_dict() for f in self.figures],
            "details": self.details,
            "notes": self.notes,
        }


class Bench:
    """What the scenarios share: the API client, the kubeconfig, emulators and operators."""

    def __init__(
        self,
        *,
        kube_: BenchKube,
        kubeconfig: Path,
        work_dir: Path,
        stack: contextlib.ExitStack,
        profile: Path | None = None,
    ) -> None:
        self.kube, self.kubeconfig, self.work_dir = kube_, kubeconfig, work_dir
        self.profile = profile
        self._stack = stack
        self._operators: list[OperatorProcess] = []
        self._namespaces: list[str] = []
        self._accounts: list[str] = []

    def emulator(self, *, clusters: int, limits: RateLimits) -> Emulator:
        emulator = fleet_emulator(clusters=clusters, limits=limits)
        self._stack.enter_context(emulator)
        return emulator

    def account_emulator(self, clusters: Iterable[Cluster], *, limits: RateLimits) -> Emulator:
        """An emulator with one account holding ``clusters``, in this order."""
        emulator = account_emulator(clusters, limits=limits)
        self._stack.enter_context(emulator)
        return emulator

    def operator(
        self,
        *,
        emulator: Emulator,
        namespace: str,
        limits: RateLimits,
        extra_args: tuple[str, ...] = (),
        census: bool = False,
    ) -> OperatorProcess:
        """The operator on one namespace; with ``census``, started through :mod:`bench.census`."""
        number = len(self._operators) + 1
        process = OperatorProcess(
            kubeconfig=self.kubeconfig,
            emulator=emulator,
            namespaces=[namespace],
            log_path=self.work_dir / f"operator-{number}-{namespace}.log",
            limits=limits,
            profile=None if self.profile is None else self.profile / namespace,
            extra_args=extra_args,
            census=self.work_dir / f"census-{number}-{namespace}" if census else None,
        )
        self._stack.callback(process.stop)
        self._operators.append(process)
        return process

    async def stage(
        self,
        namespace: str,
        *,
        limits: RateLimits = UNLIMITED,
        operator_limits: RateLimits | None = None,
        census: bool = False,
    ) -> tuple[Emulator, str, OperatorProcess]:
        """An emulator with ten clusters, a namespace with the token Secret, an operator on both."""
        emulator = self.emulator(clusters=10, limits=limits)
        await self.namespace(namespace)
        operator = self.operator(
            emulator=emulator, namespace=namespace, limits=operator_limits or limits, census=census
        )
        return emulator, namespace, operator

    async def namespace(self, name: str) -> str:
        """A new namespace with the DigitalOcean token Secret the objects refer to."""
        await self.kube.create_namespace(name)
        self._namespaces.append(name)
        await self.kube.create_token_secret(namespace=name, name=TOKEN_SECRET, token=TOKEN)
        return name

    async def account(self, name: str, spec: dict[str, Any]) -> None:
        """A new ClusterDOAccount (cluster-scoped: deleted by :meth:`clean_up`)."""
        await self.kube.create_account(name, spec)
        self._accounts.append(name)

    def stop_operators(self, *, keep: OperatorProcess | None = None) -> None:
        """Stop the operators of finished scenarios, so that nothing they do counts in the next."""
        for process in self._operators:
            if process is not keep:
                process.stop()

    async def clean_up(self) -> None:
        """Leave a borrowed cluster as it was: stop the operators, delete what was created."""
        for process in self._operators:
            process.stop()
        for namespace in self._namespaces:
            await self.kube.strip_finalizers(namespace)
            await self.kube.delete_namespace(namespace)
        for account in self._accounts:
            await self.kube.delete_account(account)

    async def requests(self) -> figures.RequestCounts:
        return figures.apiserver_requests(await self.kube.apiserver_metrics())


def spec(cluster_id: str, *, expiry_seconds: int) -> dict[str, Any]:
    return {
        "clusterID": cluster_id,
        "expirySeconds": expiry_seconds,
        "tokenSecretRef": {"name": TOKEN_SECRET},
    }


def names(prefix: str, count: int, *, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(start, start + count)]


@contextlib.contextmanager
def timed(result: Result) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        result.seconds = time.monotonic() - started


async def _create_spread(
    bench: Bench, emulator: Emulator, *, namespace: str, object_names: list[str], expiry: int
) -> None:
    """Create objects spread over the emulator's clusters, 32 requests at a time."""
    clusters = [c.id for c in emulator.clusters()]
    groups: dict[str, list[str]] = {}
    for i, name in enumerate(object_names):
        groups.setdefault(clusters[i % len(clusters)], []).append(name)
    await asyncio.gather(
        *(
            bench.kube.create_objects(
                namespace=namespace,
                names=group,
                spec=spec(cluster_id, expiry_seconds=expiry),
                concurrency=max(1, 32 // len(groups)),
            )
            for cluster_id, group in groups.items()
        )
    )


# -- 1. latency ------------------------------------------------------------------------------------


async def latency(bench: Bench, sizes: Sizes) -> Result:
    result = Result("latency", "1. Latency, one object at a time: create → Ready, vs the floor")
    with timed(result):
        emulator = bench.emulator(clusters=1, limits=UNLIMITED)
        (cluster_id,) = [c.id for c in emulator.clusters()]
        operated = await bench.namespace("bench-latency")
        direct = await bench.namespace("bench-floor")
        bench.operator(emulator=emulator, namespace=operated, limits=UNLIMITED)
        context = ssl.create_default_context(cafile=str(emulator.ca_file))
        api = await kube.api_client(kube.find_source(explicit=bench.kubeconfig))
        do = digitalocean.DigitalOceanClient(
            base_url=emulator.api_url,
            verify=context,
            rate_limits=digitalocean.RateLimits(
                per_minute=UNLIMITED.per_minute, per_hour=UNLIMITED.per_hour
            ),
        )
        floor_kube = kube.Kube(api)
        samples: dict[str, list[float]] = {"operator": [], "floor": []}
        warmup = 3
        before, own_before = await bench.requests(), bench.kube.own_writes
        floor_writes = 0
        try:
            async with (
                StatusWatch(bench.kube, operated) as op_watch,
                StatusWatch(bench.kube, direct) as floor_watch,
            ):
                for i in range(warmup + sizes.latency_samples):
                    name = f"obj-{i:04d}"
                    # Alternate, so that any drift of the machine affects both alike.
                    started = time.monotonic()
                    await bench.kube.create_object(
                        namespace=direct, name=name, spec=spec(cluster_id, expiry_seconds=3600)
                    )
                    floor_writes += floor.WRITES
                    await floor.make_ready(
                        kube=floor_kube,
                        do=do,
                        namespace=direct,
                        name=name,
                        token=TOKEN,
                        cluster_id=cluster_id,
                        expiry_seconds=3600,
                    )
                    floor_ok = await floor_watch.wait_ready([name], within=30)
                    floor_time = floor_watch.ready_at.get(name, math.inf) - started
                    started = time.monotonic()
                    await bench.kube.create_object(
                        namespace=operated, name=name, spec=spec(cluster_id, expiry_seconds=3600)
                    )
                    op_ok = await op_watch.wait_ready([name], within=60)
                    op_time = op_watch.ready_at.get(name, math.inf) - started
                    if i >= warmup and floor_ok and op_ok:
                        samples["floor"].append(floor_time)
                        samples["operator"].append(op_time)
        finally:
            await do.aclose()
            await api.close()  # type: ignore[no-untyped-call]
        await asyncio.sleep(2)  # trailing writes land
        counts = figures.delta(before, await bench.requests())
        operator_writes = (
            figures.writes(counts, resources=OPERATOR_RESOURCES)
            - (bench.kube.own_writes - own_before)
            - floor_writes
        )
        result.details["operator_requests"] = figures.by_verb(counts, resources=OPERATOR_RESOURCES)
        result.details["samples_seconds"] = {
            k: [round(v, 4) for v in vs] for k, vs in samples.items()
        }
        result.details["warmup_samples_dropped"] = warmup
        if len(samples["operator"]) < sizes.latency_samples:
            result.notes.append(
                f"only {len(samples['operator'])} of {sizes.latency_samples} objects became Ready"
            )
        if not samples["operator"]:
            result.add("operator p50", None, "ms", target="≤ 1.3x floor", met=lambda v: False)
            return result
        op = figures.Distribution.of(samples["operator"])
        fl = figures.Distribution.of(samples["floor"])
        result.add("objects (sequential)", op.count)
        result.add(
            "API writes per issuance (operator)",
            operator_writes / (warmup + sizes.latency_samples),
            "",
            target="≤ 4",
            met=lambda v: v <= 4,
        )
        result.add("floor p50", fl.p50 * 1000, "ms")
        result.add("floor p95", fl.p95 * 1000, "ms")
        result.add("operator p50", op.p50 * 1000, "ms")
        result.add("operator p95", op.p95 * 1000, "ms")
        result.add(
            "ratio p50 (operator / floor)",
            op.p50 / fl.p50,
            "x",
            target="≤ 1.3",
            met=lambda v: v <= 1.3,
        )
        result.add(
            "ratio p95 (operator / floor)",
            op.p95 / fl.p95,
            "x",
            target="≤ 1.5",
            met=lambda v: v <= 1.5,
        )
    return result


# -- 2. burst --------------------------------------------------------------------------------------


async def burst(bench: Bench, sizes: Sizes, *, keep: dict[str, Any]) -> Result:
    result = Result("burst", f"2. Burst: {sizes.burst:,} objects created at once → all Ready")
    with timed(result):
        emulator, namespace, operator = await bench.stage("bench-burst")
        object_names = names("burst", sizes.burst)
        async with StatusWatch(bench.kube, namespace) as watch:
            await asyncio.sleep(2)  # the operator's watches are established
            before, own_before = await bench.requests(), bench.kube.own_writes
            calls_before = emulator.request_count(KUBECONFIG_ENDPOINT)
            cpu_before = operator.cpu()
            started = time.monotonic()
            await _create_spread(
                bench,
                emulator,
                namespace=namespace,
                object_names=object_names,
                expiry=LONG_LIFETIME,
            )
            created = time.monotonic() - started
            ready = await watch.wait_ready(object_names, within=max(120, sizes.burst * 0.5))
            finished = time.monotonic()
            await asyncio.sleep(5)  # trailing writes (events) land
            after, own_after = await bench.requests(), bench.kube.own_writes
            cpu = operator.cpu() - cpu_before
            calls = emulator.request_count(KUBECONFIG_ENDPOINT) - calls_before
        counts = figures.delta(before, after)
        ours = own_after - own_before
        writes = figures.writes(counts, resources=OPERATOR_RESOURCES) - ours
        latencies = [watch.ready_at[n] - started for n in object_names if n in watch.ready_at]
        result.add("objects", sizes.burst)
        result.add("creating them took", created, "s")
        result.add(
            "all Ready after",
            finished - started if ready else None,
            "s",
            target="≤ 12",
            met=lambda v: v <= 12,
        )
        if not ready:
            result.notes.append(f"{len(latencies)} of {sizes.burst} became Ready in time")
        if latencies:
            spread = figures.Distribution.of(latencies)
            result.add("Ready p50 after the first create", spread.p50, "s")
            result.add("Ready p95 after the first create", spread.p95, "s")
        result.add(
            "DigitalOcean calls per object",
            calls / sizes.burst,
            "",
            target="1.00",
            met=lambda v: v == 1.0,
        )
        result.add(
            "API writes per issuance", writes / sizes.burst, "", target="≤ 4", met=lambda v: v <= 4
        )
        result.add("operator CPU during the burst", cpu, "s")
        result.add("operator RSS after", operator.rss() / MiB, "MiB")
        result.details["operator_requests"] = figures.by_verb(counts, resources=OPERATOR_RESOURCES)
        result.details["benchmark_writes_subtracted"] = ours
        keep.update(namespace=namespace, emulator=emulator, operator=operator, names=object_names)
    return result


# -- 4. restart ------------------------------------------------------------------------------------


def _replanned(metrics_text: str) -> int:
    """Objects for which the operator has a planned renewal time (its per-object gauge)."""
    return sum(
        1
        for line in metrics_text.splitlines()
        if line.startswith("doks_access_credential_renewal_timestamp_seconds{")
    )


async def restart(bench: Bench, sizes: Sizes, *, burst_state: dict[str, Any]) -> Result:
    result = Result(
        "restart",
        f"4. Restart: operator killed and started again over {sizes.restart:,} fresh Secrets",
    )
    with timed(result):
        operator: OperatorProcess = burst_state["operator"]
        emulator: Emulator = burst_state["emulator"]
        count = len(burst_state["names"])
        before, own_before = await bench.requests(), bench.kube.own_writes
        calls_before = emulator.request_count()
        operator.kill()
        started = time.monotonic()
        operator.start()
        serving = time.monotonic() - started
        replanned_after = None
        deadline = started + 300
        while time.monotonic() < deadline:
            if _replanned(await asyncio.to_thread(operator.metrics)) >= count:
                replanned_after = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(10)  # anything it would still do
        after, own_after = await bench.requests(), bench.kube.own_writes
        calls = emulator.request_count() - calls_before
        counts = figures.delta(before, after)
        writes = figures.writes(counts, resources=OPERATOR_RESOURCES) - (own_after - own_before)
        # Every non-watch call that is not a write, whoever made it: the benchmark only wrote.
        reads = figures.calls(counts, resources=OPERATOR_RESOURCES) - figures.writes(
            counts, resources=OPERATOR_RESOURCES
        )
        result.add("objects", count)
        result.add("DigitalOcean calls", calls, "", target="0", met=lambda v: v == 0)
        result.add("API writes", writes, "", target="0", met=lambda v: v == 0)
        result.add("API reads (non-watch) on its resources", reads, "")
        result.add("process start → metrics served", serving, "s")
        result.add("process start → every object re-planned", replanned_after, "s")
        result.details["operator_requests"] = figures.by_verb(counts, resources=OPERATOR_RESOURCES)
    return result


# -- 3. idle scale ---------------------------------------------------------------------------------

IDLE_STALL = 180.0  # no new object Ready for this long: the API server cannot hold that many
IDLE_SETTLE_LIMIT = 300.0  # the longest wait for the API server to go quiet before a window


async def idle(bench: Bench, sizes: Sizes) -> Result:
    result = Result("idle", "3. Idle scale: memory and CPU with nothing due")
    with timed(result):
        # Through bench.census, which answers SIGUSR1 with a census of the live objects.
        emulator, namespace, operator = await bench.stage("bench-idle", census=True)
        baseline = operator.rss()
        result.add("operator RSS with no objects", baseline / MiB, "MiB")
        points: list[dict[str, float]] = []
        censuses: list[dict[str, Any]] = []
        await _census(operator, censuses, watched=0, result=result)
        existing = 0
        try:
            async with StatusWatch(bench.kube, namespace) as watch:
                for size in sizes.idle:
                    new = names("idle", size - existing, start=existing)
                    started = time.monotonic()
                    try:
                        await _create_spread(
                            bench,
                            emulator,
                            namespace=namespace,
                            object_names=new,
                            expiry=LONG_LIFETIME,
                        )
                    except Exception as exc:  # the API server cannot hold this many
                        result.notes.append(
                            f"stopped growing at {existing:,}: creating the objects up to "
                            f"{size:,} failed: {_short(exc)}"
                        )
                        break
                    if not await _wait_all_ready(
                        watch, new, stall=IDLE_STALL, limit=max(300, len(new) * 0.5)
                    ):
                        became = len(set(new) & watch.ready_at.keys())
                        result.notes.append(
                            f"stopped growing at {existing:,}: at {size:,}, {became:,} of the "
                            f"{len(new):,} new objects became Ready (none more for "
                            f"{IDLE_STALL:.0f} s, or too slowly)"
                        )
                        break
                    took = time.monotonic() - started
                    existing = size
                    point = await _idle_point(
                        bench, emulator, operator, sizes, size=size, took=took, baseline=baseline
                    )
                    points.append(point)
                    _idle_figures(result, sizes, point)
                    # After the point's figures: the census's CPU and time are in no window.
                    await _census(operator, censuses, watched=size, result=result)
        except Exception as exc:  # the benchmark's own watch, when the API server is overloaded
            result.notes.append(f"stopped growing at {existing:,}: {_short(exc)}")
        if sizes.idle_target not in {point["objects"] for point in points}:
            _idle_figures(result, sizes, {"objects": sizes.idle_target})  # measured: not met
        if len(points) >= 2:
            result.add(
                "RSS growth per object",
                figures.growth_per_object(points, "rss_mib") * 1024,
                "KiB",
                target="≤ 10",
                met=lambda v: v <= 10,
            )
        if points:
            last = points[-1]
            result.add(
                f"RSS per object over the empty operator (at {last['objects']:,.0f})",
                last["rss_per_object_over_empty_kib"],
                "KiB",
            )
        result.details["points"] = points
        result.details["baseline_rss_mib"] = round(baseline / MiB, 1)
        result.details["census"] = _census_details(censuses)
    return result


async def _wait_all_ready(
    watch: StatusWatch, object_names: list[str], *, stall: float, limit: float
) -> bool:
    """True once every object is Ready; False once none has become Ready for ``stall`` seconds,
    or after ``limit`` seconds in all."""
    wanted = set(object_names)
    started = last_progress = time.monotonic()
    last_count = -1
    while True:
        left = limit - (time.monotonic() - started)
        if left <= 0:
            return False
        if await watch.wait_ready(wanted, within=min(10.0, left)):
            return True
        count = len(wanted & watch.ready_at.keys())
        if count > last_count:
            last_count, last_progress = count, time.monotonic()
        elif time.monotonic() - last_progress >= stall:
            return False


async def _idle_point(
    bench: Bench,
    emulator: Emulator,
    operator: OperatorProcess,
    sizes: Sizes,
    *,
    size: int,
    took: float,
    baseline: int,
) -> dict[str, float]:
    """Let the creation's aftermath settle, then what an idle window of the operator costs."""
    settled = await _quiet(bench, quiet=sizes.idle_settle, limit=IDLE_SETTLE_LIMIT)
    before, own = await bench.requests(), bench.kube.own_writes
    calls_before = emulator.request_count()
    cpu_before = operator.cpu()
    window_start = time.monotonic()
    await asyncio.sleep(sizes.idle_window)
    window = time.monotonic() - window_start
    cpu = operator.cpu() - cpu_before
    rss = operator.rss()
    after = await bench.requests()
    counts = figures.delta(before, after)
    writes = figures.writes(counts, resources=OPERATOR_RESOURCES) - (bench.kube.own_writes - own)
    return {
        "objects": size,
        "ready": 1.0,
        "create_to_all_ready_s": round(took, 1),
        "rss_mib": round(rss / MiB, 1),
        "rss_per_object_over_empty_kib": round(
            figures.per_object(rss - baseline, objects=size) / KiB, 2
        ),
        "cpu_percent_of_one_core": round(100 * cpu / window, 2),
        "digitalocean_calls": emulator.request_count() - calls_before,
        "api_writes": writes,
        "api_calls_non_watch": figures.calls(counts, resources=OPERATOR_RESOURCES),
        "settle_s": round(settled, 1),
    }


async def _quiet(bench: Bench, *, quiet: float, limit: float) -> float:
    """Wait until the API server has seen no non-watch call on the operator's resources for
    ``quiet`` seconds, at most ``limit`` seconds; return the time waited.

    After a burst of new Secrets, kube-controller-manager's garbage collector checks their owners
    with GETs, about ten a second, for as long as a minute or two. Those are not the operator's;
    an idle window started before they end would count them. An operator that kept calling would
    keep this from ever being quiet, and its calls would still be counted after ``limit``.
    """
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = await bench.requests()
        await asyncio.sleep(quiet)
        counts = figures.delta(before, await bench.requests())
        if figures.calls(counts, resources=OPERATOR_RESOURCES) == 0:
            break
    return time.monotonic() - started


def _idle_figures(result: Result, sizes: Sizes, point: dict[str, float]) -> None:
    """The figures of one size; the targets apply at ``sizes.idle_target`` only.

    A point with nothing but ``objects`` is a target size that was not reached: its figures are
    n/a, and not met.
    """
    size = int(point["objects"])
    targeted = size == sizes.idle_target
    suffix = f" at {size:,}"
    result.add(
        f"RSS{suffix}",
        point.get("rss_mib"),
        "MiB",
        target="≤ 200 (must ≤ 300)" if targeted else "",
        met=(lambda v: v <= 200) if targeted else None,
    )
    if targeted:
        result.add(
            f"RSS{suffix}, the must-have",
            point.get("rss_mib"),
            "MiB",
            target="≤ 300",
            met=lambda v: v <= 300,
        )
    result.add(
        f"CPU{suffix} ({sizes.idle_window:.0f} s idle)",
        point.get("cpu_percent_of_one_core"),
        "% core",
        target="≤ 1" if targeted else "",
        met=(lambda v: v <= 1) if targeted else None,
    )
    result.add(
        f"DigitalOcean calls{suffix}",
        point.get("digitalocean_calls"),
        "",
        target="0",
        met=lambda v: v == 0,
    )
    result.add(
        f"API calls{suffix} (non-watch)",
        point.get("api_calls_non_watch"),
        "",
        target="0",
        met=lambda v: v == 0,
    )


async def _census(
    operator: OperatorProcess, censuses: list[dict[str, Any]], *, watched: int, result: Result
) -> None:
    """A census of the operator's live objects, with ``watched`` objects; a failure is a note."""
    try:
        taken = await asyncio.to_thread(operator.census)
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        result.notes.append(f"no census at {watched:,}: {_short(exc)}")
        return
    taken["watched"] = watched
    censuses.append(taken)


def _census_details(censuses: list[dict[str, Any]]) -> dict[str, Any]:
    """What the results keep of the censuses: each one's totals, and the breakdown per object
    between the smallest and the largest size (the empty operator when only one size was taken).
    """
    details: dict[str, Any] = {"taken": [census.summary(c) for c in censuses]}
    sized = [c for c in censuses if c["watched"]]
    small = sized[0] if len(sized) >= 2 else (censuses[0] if censuses else None)
    large = censuses[-1] if censuses else None
    if small is not None and large is not None and large["watched"] > small["watched"]:
        details["breakdown"] = {
            "objects_from": small["watched"],
            "objects_to": large["watched"],
            **census.breakdown(small, large, objects=large["watched"] - small["watched"]),
        }
    return details


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- 5. sustained renewals -------------------------------------------------------------------------


async def sustained(bench: Bench, sizes: Sizes) -> Result:
    count, lifetime = sizes.sustained, sizes.sustained_lifetime
    result = Result(
        "sustained",
        f"5. Sustained renewals: {count:,} objects, {lifetime} s credentials, "
        f"{sizes.sustained_duration / 60:.0f} min",
    )
    with timed(result):
        emulator, namespace, operator = await bench.stage("bench-sustained")
        object_names = names("renew", count)
        async with StatusWatch(bench.kube, namespace) as watch:
            await _create_spread(
                bench, emulator, namespace=namespace, object_names=object_names, expiry=lifetime
            )
            ready = await watch.wait_ready(object_names, within=max(120, count * 0.5))
            if not ready:
                result.notes.append("not every object became Ready")
            before, own = await bench.requests(), bench.kube.own_writes
            calls_before = emulator.request_count(KUBECONFIG_ENDPOINT)
            issued_before = len(emulator.issued_credentials())
            renewals_before = len(watch.renewals)
            cpu_before = operator.cpu()
            window_start = time.time()
            await asyncio.sleep(sizes.sustained_duration)
            window = time.time() - window_start
            cpu = operator.cpu() - cpu_before
            after = await bench.requests()
            calls = emulator.request_count(KUBECONFIG_ENDPOINT) - calls_before
            issued = len(emulator.issued_credentials()) - issued_before
            renewals = watch.renewals[renewals_before:]
            writes = figures.writes(figures.delta(before, after), resources=OPERATOR_RESOURCES) - (
                bench.kube.own_writes - own
            )
            now = time.time()
            expiries = watch.latest_expiry()
            expired_now = sum(1 for e in expiries.values() if e is None or e <= now)
        lifetimes = calls / (count * window / lifetime)
        result.add("window", window, "s")
        result.add("renewals seen", len(renewals))
        result.add(
            "DigitalOcean calls per credential issued",
            calls / issued if issued else None,
            "",
            target="1.00",
            met=lambda v: v == 1.0,
        )
        result.add(
            "DigitalOcean calls per object per lifetime",
            lifetimes,
            "",
            target="≈ 1 (renewal at ~2/3 of it: ~1.5)",
        )
        result.add(
            "API writes per renewal",
            writes / calls if calls else None,
            "",
            target="≤ 3",
            met=lambda v: v <= 3,
        )
        if renewals:
            late = figures.Distribution.of([r.observed - r.planned for r in renewals])
            margin = figures.Distribution.of([r.previous_expiry - r.observed for r in renewals])
            result.add("lateness p50 (status updated - planned)", late.p50, "s")
            result.add("lateness p95", late.p95, "s")
            result.add("lateness max", late.max, "s")
            result.add(
                "smallest margin before the old credential expired",
                min(r.previous_expiry - r.observed for r in renewals),
                "s",
                target="> 0",
                met=lambda v: v > 0,
            )
            result.details["margin_seconds"] = dataclasses.asdict(margin)
            result.details["lateness_seconds"] = dataclasses.asdict(late)
        result.add(
            "objects ever not Ready after first Ready",
            len(watch.not_ready),
            "",
            target="0",
            met=lambda v: v == 0,
        )
        result.add("objects expired at the end", expired_now, "", target="0", met=lambda v: v == 0)
        result.add("operator CPU during the window", 100 * cpu / window, "% core")
        result.notes.append(
            "status times have whole-second precision, so lateness is known to ±1 s"
        )
    return result


# -- 6. rate-limited burst -------------------------------------------------------------------------


async def rate_limited(bench: Bench, sizes: Sizes) -> Result:
    limits, count = sizes.rate_limits, sizes.rate_limited
    result = Result(
        "rate-limited",
        f"6. Rate-limited burst: {count:,} objects, emulator enforcing "
        f"{limits.per_minute}/min and {limits.per_hour:,}/h",
    )
    with timed(result):
        # The operator with its defaults: DigitalOcean's published limits, 10 % kept in reserve.
        emulator, namespace, _ = await bench.stage(
            "bench-ratelimited",
            limits=limits,
            operator_limits=RateLimits(per_minute=limits.per_minute, per_hour=limits.per_hour),
        )
        object_names = names("limited", count)
        async with StatusWatch(bench.kube, namespace) as watch:
            started = time.monotonic()
            await _create_spread(
                bench,
                emulator,
                namespace=namespace,
                object_names=object_names,
                expiry=LONG_LIFETIME,
            )
            minimum = figures.sliding_window_minimum(count, per_window=limits.per_minute, window=60)
            ready = await watch.wait_ready(object_names, within=minimum * 2 + 120)
            took = time.monotonic() - started if ready else None
        throttled = emulator.request_count(KUBECONFIG_ENDPOINT, outcome=429)
        budget = digitalocean.RateLimits(
            per_minute=limits.per_minute, per_hour=limits.per_hour
        ).minute_budget  # the operator's default reserve
        result.add("objects", count)
        result.add("429 responses", throttled, "", target="none or a handful", met=lambda v: v <= 5)
        result.add("DigitalOcean calls", emulator.request_count(KUBECONFIG_ENDPOINT), "")
        result.add("all Ready after", took, "s")
        result.add("theoretical minimum at the API's limit", minimum, "s")
        result.add(
            "minimum with the operator's 10 % reserve",
            figures.sliding_window_minimum(count, per_window=budget, window=60),
            "s",
        )
        if not ready:
            result.notes.append(f"{len(watch.ready_at)} of {count} became Ready in time")
    return result


# -- 7. workers ------------------------------------------------------------------------------------


async def workers(bench: Bench, sizes: Sizes) -> Result:
    """Scenario 2's burst once per worker-pool size, each with a fresh operator and namespace."""
    result = Result("workers", f"7. Burst by number of workers: {sizes.burst:,} objects")
    with timed(result):
        emulator = bench.emulator(clusters=10, limits=UNLIMITED)
        runs: list[dict[str, Any]] = []
        for count in sizes.workers:
            namespace = await bench.namespace(f"bench-workers-{count}")
            default = " (the default)" if count == DEFAULT_WORKERS else ""
            try:
                operator = bench.operator(
                    emulator=emulator,
                    namespace=namespace,
                    limits=UNLIMITED,
                    extra_args=(f"--workers={count}",),
                )
            except RuntimeError as exc:  # an operator without --workers, say
                result.add(f"all Ready after, {count} workers{default}", None, "s")
                result.notes.append(f"{count} workers: {_short(exc)}")
                continue
            try:
                run = await _burst_run(
                    bench, emulator, operator, namespace=namespace, count=sizes.burst
                )
            finally:
                operator.stop()  # nothing of it runs during the next
            run = {"workers": count, "default": count == DEFAULT_WORKERS, **run}
            runs.append(run)
            result.add(f"all Ready after, {count} workers{default}", run["all_ready_s"], "s")
            if run["all_ready_s"] is None:
                result.notes.append(
                    f"{count} workers: {run['ready']} of {sizes.burst} became Ready in time"
                )
        result.details["runs"] = runs
        result.details["default_workers"] = DEFAULT_WORKERS
    return result


async def _burst_run(
    bench: Bench, emulator: Emulator, operator: OperatorProcess, *, namespace: str, count: int
) -> dict[str, Any]:
    """Create ``count`` objects at once and time them until all are Ready (scenario 2, lighter:
    no API-server request counts)."""
    object_names = names("burst", count)
    async with StatusWatch(bench.kube, namespace) as watch:
        await asyncio.sleep(2)  # the operator's watches are established
        calls_before = emulator.request_count(KUBECONFIG_ENDPOINT)
        cpu_before = operator.cpu()
        started = time.monotonic()
        await _create_spread(
            bench, emulator, namespace=namespace, object_names=object_names, expiry=LONG_LIFETIME
        )
        created = time.monotonic() - started
        ready = await watch.wait_ready(object_names, within=max(120, count * 0.5))
        finished = time.monotonic()
        cpu = operator.cpu() - cpu_before
        peak_rss = operator.peak_rss()
        calls = emulator.request_count(KUBECONFIG_ENDPOINT) - calls_before
    latencies = [watch.ready_at[n] - started for n in object_names if n in watch.ready_at]
    spread = figures.Distribution.of(latencies) if latencies else None
    return {
        "objects": count,
        "ready": len(latencies),
        "creating_s": round(created, 2),
        "all_ready_s": round(finished - started, 2) if ready else None,
        "ready_p50_s": None if spread is None else round(spread.p50, 2),
        "ready_p95_s": None if spread is None else round(spread.p95, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(peak_rss / MiB, 1),
        "digitalocean_calls_per_object": round(calls / count, 2),
    }


Scenario = Callable[[Bench, Sizes], Awaitable[Result]]
