"""The reliability scenarios of issue 9: a continuity soak, and one scenario per injected fault.

Each scenario sets up its own namespace, clusters and operator, runs consumers against every
object's Secret while it does its damage, and returns an :class:`Outcome`: what it counted and a
list of checks, each passed or failed with the figures behind it. A scenario never raises for a
failed check, so one bad result does not hide the others; the command exits non-zero if any check
failed. Sizes come from :class:`Sizes`, so the same code runs the long suites and a smoke run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from bench.stack import OperatorProcess
from doks_access import digitalocean
from doks_access_testkit.emulator import Fault
from doks_access_testkit.emulator.state import ClusterMode
from reliability import ledger
from reliability.churn import Churn
from reliability.consumers import Consumer
from reliability.ledger import Attempt, ConsumerTally
from reliability.rig import Rig, condition, epoch, is_ready, log_entries, log_problems, running

FORMATS = ({"format": "Kubeconfig"}, {"format": "ArgoCD"}, {"format": "Flux"})
# Where each format keeps the kubeconfig (Argo CD's Secret is read from its own keys).
_KEYS = {"Kubeconfig": "kubeconfig", "Flux": "value", "ArgoCD": "config"}
AUDIT_GRACE = 15.0  # seconds past its renewal time before a credential counts as stale
FETCHING = "fetching a credential ("
# How the operator logs the end of a fetch: written, failed, or refused for a human to fix.
FETCH_ENDS = (
    "wrote a credential",
    "fetching a credential failed",
    "fetching a credential needs attention",
)
WRITE_SETTLE = 2.0  # seconds from DigitalOcean's answer to the Secret write, with room to spare
# kube-apiserver caches a successful token review this long, whatever its flags say: a token it
# accepted may go on working that much past its expiry or revocation (tools/testkit's emulator).
APISERVER_CACHE = 10.0
REJECTED = "the cluster refuses the held credential"  # how the lifetime guard logs a 401
WROTE = "wrote a credential"


@dataclasses.dataclass(frozen=True)
class Sizes:
    lifetime: int = 60  # credential lifetime of the soak and of most fault scenarios
    soak_lifetimes: float = 10.5
    soak_objects_per_mode: int = 2
    soak_consumers: int = 2  # per object, plus one that sees the Secret ``consumer_lag`` late
    consumer_lag: float = 5.0
    churn_population: int = 6
    churn_period: float = 2.0
    objects: int = 4
    fault_lifetime: int = 240
    fault_window: float = 40.0
    hang_window: float = 45.0  # past the operator's 30 s read timeout
    throttle_window: float = 90.0
    retry_after: int = 20
    restarts: int = 3
    restart_pause: float = 15.0
    kills: int = 10
    failovers: int = 4
    guard_lifetime: int = 120  # the lifetime guard's scenarios: checks at 30, 60 and 90 s
    lifetime_cap: int = 15  # DigitalOcean's cap: 15 s past it, the 30 s check is past the cache

    @classmethod
    def smoke(cls) -> Sizes:
        """The same code paths in a few minutes, for the test suite."""
        return cls(
            lifetime=20,
            soak_lifetimes=2.5,
            soak_objects_per_mode=1,
            soak_consumers=1,
            consumer_lag=2.0,
            churn_population=4,
            churn_period=1.0,
            objects=2,
            fault_lifetime=120,
            fault_window=8.0,
            hang_window=8.0,
            throttle_window=12.0,
            retry_after=4,
            restarts=1,
            restart_pause=5.0,
            kills=2,
            failovers=1,
            guard_lifetime=80,
            lifetime_cap=5,
        )


@dataclasses.dataclass
class Check:
    what: str
    passed: bool
    detail: str = ""


@dataclasses.dataclass
class Outcome:
    """One scenario's row of RELIABILITY.md, and the checks behind its result."""

    scenario: str
    title: str
    load: str = ""
    faults: str = "none"
    seconds: float = 0.0
    consumer_attempts: int = 0
    consumer_refused: int = 0
    objects: int = 0
    objects_lost: int = 0
    do_calls: str = ""
    refusals_expected: str = ""  # why the refusals counted were expected, if they were
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    checks: list[Check] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, what: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(what, passed, detail))

    def consumers(self, tallies: Sequence[ConsumerTally]) -> None:
        self.consumer_attempts = sum(t.attempts for t in tallies)
        self.consumer_refused = ledger.total(tallies, Attempt.REFUSED)
        self.figures["consumer attempts by outcome"] = {
            a.value: ledger.total(tallies, a) for a in Attempt
        }

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["seconds"] = round(self.seconds, 1)
        data["passed"] = self.passed
        return data


@dataclasses.dataclass
class Fleet:
    """A scenario's objects, one cluster each, and the consumers reading their Secrets."""

    namespace: str
    names: list[str]
    clusters: dict[str, str]  # object name -> cluster id
    consumers: dict[str, list[Consumer]]  # object name -> its consumers

    @property
    def all_consumers(self) -> list[Consumer]:
        return [c for group in self.consumers.values() for c in group]

    def tallies(self) -> list[ConsumerTally]:
        return [c.tally for c in self.all_consumers]

    def seen(self) -> dict[str, set[str]]:
        """Per cluster: the credentials the object's on-time consumers saw in its Secret."""
        return {
            self.clusters[name]: {f for c in group if not c.lagged for f in c.tally.credentials}
            for name, group in self.consumers.items()
        }

    async def written(self) -> dict[str, set[str]]:
        """Per cluster: the credentials seen, and the one its Secret holds now (a renewal after
        the consumers stopped was written too)."""
        written = self.seen()
        for name, group in self.consumers.items():
            if now := await group[0].current():
                written[self.clusters[name]].add(now)
        return written


async def _fleet(
    rig: Rig,
    namespace: str,
    *,
    count: int,
    lifetime: int,
    mode: ClusterMode = "token",
    prefix: str = "obj",
    consumers: int = 1,
    lag: float = 0.0,
    renew_before: str | None = None,
    verify: bool = False,
    max_lifetime: int | None = None,
) -> Fleet:
    ids = rig.clusters(f"{namespace}-{prefix}", count, mode=mode, max_lifetime=max_lifetime)
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    for i, (name, cluster) in enumerate(zip(names, ids, strict=True)):
        await rig.create(
            namespace,
            name,
            cluster_id=cluster,
            lifetime=lifetime,
            target=FORMATS[i % len(FORMATS)],
            renew_before=renew_before,
            verify=verify,
        )
    groups = {
        name: [
            Consumer(
                kube=rig.kube,
                namespace=namespace,
                secret=f"{name}-kubeconfig",
                key=_KEYS[FORMATS[i % len(FORMATS)]["format"]],
                lag=delay,
            )
            for delay in [0.0] * consumers + ([lag] if lag else [])
        ]
        for i, name in enumerate(names)
    }
    return Fleet(namespace, names, dict(zip(names, ids, strict=True)), groups)


def _merge(*fleets: Fleet) -> Fleet:
    first = fleets[0]
    return Fleet(
        first.namespace,
        [n for f in fleets for n in f.names],
        {k: v for f in fleets for k, v in f.clusters.items()},
        {k: v for f in fleets for k, v in f.consumers.items()},
    )


async def _stage(
    rig: Rig,
    outcome: Outcome,
    namespace: str,
    *,
    count: int,
    lifetime: int,
    verify: bool = False,
    max_lifetime: int | None = None,
) -> tuple[Fleet, OperatorProcess] | None:
    """A namespace, ``count`` objects with one consumer each, an operator; ``None`` (and a failed
    check) if they did not all become Ready. ``verify``: ``spec.verify``; ``max_lifetime``: the
    clusters' cap on credential lifetimes."""
    await rig.namespace(namespace)
    fleet = await _fleet(
        rig, namespace, count=count, lifetime=lifetime, verify=verify, max_lifetime=max_lifetime
    )
    operator = rig.operator(namespace)
    if not await _ready(rig, fleet, outcome):
        return None
    outcome.load = f"{count} objects, {lifetime} s credentials, 1 consumer each"
    return fleet, operator


async def _ready(rig: Rig, fleet: Fleet, outcome: Outcome, *, within: float = 90.0) -> bool:
    ready = await rig.wait_until(fleet.namespace, fleet.names, is_ready, within=within)
    outcome.check("every object became Ready", ready)
    return ready


async def _finish(
    rig: Rig,
    fleet: Fleet,
    outcome: Outcome,
    operators: Sequence[OperatorProcess],
    *,
    lifetime: float,
    duration: float,
    allowance: int = 0,
    replaced: int = 0,
    unreachable_allowed: bool = False,
) -> None:
    """The checks every scenario ends with: consumers, objects, calls, the operator itself.

    The credentials the objects may cost: one each, one per renewal the ``duration`` allows, one
    per refresh the scenario requested, ``replaced``: one per credential the scenario made the
    cluster refuse (written, and used, so not waste), and the ``allowance`` of fetches its faults
    may waste.
    """
    tallies = fleet.tallies()
    outcome.consumers(tallies)
    outcome.objects = len(fleet.names)
    lost = await rig.audit(fleet.namespace, fleet.names, grace=AUDIT_GRACE)
    outcome.objects_lost = len(lost)
    outcome.check("no object lost or stale", not lost, "; ".join(lost))
    issued = rig.issued(fleet.clusters.values())
    # A fetch answered just before the count above is written a moment later; it is not waste.
    await asyncio.sleep(WRITE_SETTLE)
    seen = fleet.seen()
    written = {
        cluster: len(credentials) for cluster, credentials in (await fleet.written()).items()
    }
    wasted = ledger.wasted_fetches(issued, written)
    renewals = ledger.fetch_bound(lifetime=lifetime, duration=duration) * len(fleet.names)
    requested = rig.refreshes_requested[fleet.namespace]
    bound = renewals + requested + replaced + allowance
    calls = sum(issued.values())
    replacements = f" + {replaced} replaced after a refusal" if replaced else ""
    outcome.do_calls = (
        f"{calls} credentials for {len(fleet.names)} objects (at most {bound}: "
        f"{renewals} by schedule + {requested} requested{replacements} + {allowance} allowed "
        "waste)"
    )
    outcome.figures["credentials issued"] = calls
    outcome.figures["credentials never written"] = wasted
    outcome.figures["credentials written after the consumers stopped"] = sum(
        written.values()
    ) - sum(len(credentials) for credentials in seen.values())
    if wasted:
        outcome.figures["issued / written per object"] = {
            name: f"{issued[cluster]} / {written.get(cluster, 0)}"
            for name, cluster in fleet.clusters.items()
        }
    outcome.check(
        f"at most {allowance} credential(s) fetched and not written",
        wasted <= allowance,
        f"{wasted} wasted",
    )
    outcome.check(
        "no more credentials than first fetch, renewals, requests"
        + (", replacements" if replaced else "")
        + " and allowed waste",
        calls <= bound,
        f"{calls} ≤ {bound}",
    )
    if not unreachable_allowed:
        unreachable = ledger.total(tallies, Attempt.UNREACHABLE)
        missing = ledger.total(tallies, Attempt.NO_CREDENTIAL)
        outcome.check(
            "consumers always found a credential and an answering API server",
            unreachable == 0 and missing == 0,
            f"unreachable {unreachable}, no credential {missing}",
        )
    alive = all(p.alive() for p in operators)
    outcome.check("the operator kept running", alive)
    problems = sum(log_problems(p.log_path) for p in operators)
    outcome.figures["operator log entries at ERROR or with a traceback"] = problems


@contextlib.contextmanager
def _timed(outcome: Outcome) -> Any:
    started = time.monotonic()
    try:
        yield
    finally:
        outcome.seconds = time.monotonic() - started


# -- soak ------------------------------------------------------------------------------------------


async def soak(rig: Rig, sizes: Sizes) -> Outcome:
    outcome = Outcome("soak", "Continuity soak: consumers authenticate through rotations")
    with _timed(outcome):
        namespace = await rig.namespace("rel-soak")
        lifetime = sizes.lifetime
        n = sizes.soak_objects_per_mode
        token = await _fleet(
            rig,
            namespace,
            count=n,
            lifetime=lifetime,
            prefix="token",
            consumers=sizes.soak_consumers,
            lag=sizes.consumer_lag,
        )
        cert = await _fleet(
            rig,
            namespace,
            count=n,
            lifetime=lifetime,
            mode="certificate",
            prefix="cert",
            consumers=sizes.soak_consumers,
            lag=sizes.consumer_lag,
        )
        fleet = _merge(token, cert)
        operator = rig.operator(namespace)
        if not await _ready(rig, fleet, outcome):
            return outcome
        churn = Churn(
            kube=rig.kube,
            namespace=namespace,
            clusters=rig.clusters(f"{namespace}-churn", 3),
            lifetime=lifetime,
            population=sizes.churn_population,
            period=sizes.churn_period,
        )
        duration = lifetime * sizes.soak_lifetimes
        started = time.monotonic()
        async with running(fleet.all_consumers, churn.run):
            await asyncio.sleep(duration)
        problems: list[str] = []
        for _ in range(120):  # the last edits settle: at most a fetch each
            problems = await churn.problems()
            if not problems:
                break
            await asyncio.sleep(0.5)
        consumers = len(fleet.all_consumers)
        outcome.load = (
            f"{len(fleet.names)} objects ({n} token, {n} certificate), {consumers} consumers "
            f"every 250 ms ({len(fleet.names)} of them {sizes.consumer_lag:g} s late), "
            f"churn of {sizes.churn_population} objects, 1 operation per "
            f"{sizes.churn_period:g} s"
        )
        outcome.figures["churn operations"] = dataclasses.asdict(churn.counts)
        outcome.check("churned objects settled", not problems, "; ".join(problems[:5]))
        outcome.check("churn operations all accepted", churn.counts.errors == 0)
        rotations = {
            name: max(len(c.tally.credentials) for c in group) - 1
            for name, group in fleet.consumers.items()
        }
        outcome.figures["rotations seen per object"] = rotations
        wanted = math.floor(duration / lifetime)
        outcome.check(
            f"every object rotated at least {wanted} times under its consumers",
            min(rotations.values()) >= wanted,
            f"min {min(rotations.values())}",
        )
        refused = ledger.total(fleet.tallies(), Attempt.REFUSED)
        outcome.check("no consumer was refused", refused == 0)
        await _finish(
            rig,
            fleet,
            outcome,
            [operator],
            lifetime=lifetime,
            duration=time.monotonic() - started + 10,
        )
        outcome.check(
            "the operator logged no error",
            outcome.figures["operator log entries at ERROR or with a traceback"] == 0,
        )
    return outcome


# -- DigitalOcean unreachable for a while ----------------------------------------------------------


async def brownout(rig: Rig, sizes: Sizes) -> Outcome:
    """5xx, then requests that hang past the client's timeout, then refused connections: each for
    longer than several backoff steps, each shorter than the credential's remaining life."""
    outcome = Outcome(
        "brownout", "DigitalOcean failing for a while: 5xx, timeouts, connections refused"
    )
    with _timed(outcome):
        lifetime = sizes.fault_lifetime
        staged = await _stage(rig, outcome, "rel-brownout", count=sizes.objects, lifetime=lifetime)
        if staged is None:
            return outcome
        fleet, operator = staged
        emulator = rig.emulator

        def fault(spec: Fault) -> tuple[Callable[[], Any], Callable[[], Any]]:
            return (lambda: emulator.add_fault(spec)), emulator.clear_faults

        start_503, end_503 = fault(Fault(kind="status", status=503, endpoint="kubeconfig"))
        start_hang, end_hang = fault(Fault(kind="hang", endpoint="kubeconfig"))
        phases: list[tuple[str, float, Callable[[], Any], Callable[[], Any]]] = [
            ("503", sizes.fault_window, start_503, end_503),
            ("hang", sizes.hang_window, start_hang, end_hang),
            (
                "refused",
                sizes.fault_window,
                emulator.refuse_connections,
                emulator.accept_connections,
            ),
        ]
        started = time.monotonic()
        async with running(fleet.all_consumers):
            for name, window, begin, end in phases:
                # A hang shorter than two read timeouts is absorbed by the client's own retry:
                # the reconciliation never sees it fail (that is the point of the retry).
                fails = name != "hang"
                await _phase(
                    rig, fleet, outcome, name=name, window=window, begin=begin, end=end, fails=fails
                )
        outcome.faults = ", ".join(f"{name} for {window:g} s" for name, window, *_ in phases)
        hung = emulator.request_count("kubeconfig", outcome="hung")
        outcome.figures["requests left hanging"] = hung
        if sizes.hang_window > digitalocean.Timeouts().read:
            outcome.check(
                "hang: every object's request timed out and was tried again",
                hung >= 2 * len(fleet.names),
                f"{hung} hung requests",
            )
        await _finish(
            rig,
            fleet,
            outcome,
            [operator],
            lifetime=lifetime,
            duration=time.monotonic() - started + 10,
            # A request the operator gave up on may still be answered after its timeout: that
            # credential is issued and never written; at most one per object per hang.
            allowance=len(fleet.names) * 2,
        )
    return outcome


async def _phase(
    rig: Rig,
    fleet: Fleet,
    outcome: Outcome,
    *,
    name: str,
    window: float,
    begin: Callable[[], Any],
    end: Callable[[], Any],
    fails: bool = True,
) -> None:
    """One fault for ``window`` seconds, with a renewal requested as it starts."""
    failures_before = _count(rig, fleet, "fetching a credential failed")
    await asyncio.to_thread(begin)
    began = time.time()
    await rig.request_refresh(fleet.namespace, fleet.names, f"{name}-{began:.0f}")
    retrying: set[str] = set()
    ready_throughout = True
    while time.time() < began + window:
        with contextlib.suppress(ApiException, OSError):
            found = await rig.objects(fleet.namespace)
            ready_throughout &= all(is_ready(found[n]) for n in fleet.names)
            retrying |= {
                n
                for n in fleet.names
                if condition(found[n], "Reconciling") == ("True", "RetryingAfterError")
            }
        await asyncio.sleep(0.25)
    ended = time.time()
    await asyncio.to_thread(end)
    recovered = await rig.wait_until(
        fleet.namespace,
        fleet.names,
        lambda obj: (
            is_ready(obj) and condition(obj, "Reconciling") != ("True", "RetryingAfterError")
        ),
        within=120,
    )
    await asyncio.sleep(1)  # consumers read the Secret every 250 ms
    recoveries = [_consumer_recovery(fleet, n, ended) for n in fleet.names]
    attempts = _count(rig, fleet, "fetching a credential failed") - failures_before
    outcome.figures[f"{name}: failed fetch attempts per object"] = round(
        attempts / len(fleet.names), 1
    )
    outcome.figures[f"{name}: seconds from the end of the fault to consumers using a new one"] = [
        round(r, 1) for r in recoveries
    ]
    outcome.check(f"{name}: Ready stayed True", ready_throughout)
    if fails:
        outcome.check(
            f"{name}: every object showed RetryingAfterError",
            retrying == set(fleet.names),
            f"{len(retrying)} of {len(fleet.names)}",
        )
    outcome.check(
        f"{name}: every object got a new credential by itself afterwards",
        recovered and max(recoveries) < 120,
        f"slowest {max(recoveries):.1f} s",
    )


def _consumer_recovery(fleet: Fleet, name: str, moment: float) -> float:
    """Seconds after ``moment`` until the object's consumers first used a new credential."""
    seen = [c.tally.new_credential_after(moment) for c in fleet.consumers[name] if not c.lagged]
    return min((at for at in seen if at is not None), default=math.inf) - moment


def _count(rig: Rig, fleet: Fleet, message: str) -> int:
    path = rig.work_dir / f"{fleet.namespace}-operator.log"
    return sum(1 for e in log_entries(path) if str(e.get("message", "")).startswith(message))


async def outage(rig: Rig, sizes: Sizes) -> Outcome:
    """DigitalOcean unreachable until past expiry: Expired is reported, and it recovers."""
    outcome = Outcome("outage", "DigitalOcean unreachable past expiry")
    with _timed(outcome):
        lifetime = sizes.lifetime
        staged = await _stage(rig, outcome, "rel-outage", count=sizes.objects, lifetime=lifetime)
        if staged is None:
            return outcome
        fleet, operator = staged
        namespace = fleet.namespace
        async with running(fleet.all_consumers):
            await asyncio.to_thread(rig.emulator.refuse_connections)
            down = time.time()
            expires = max(
                c.expires_at
                for cluster in fleet.clusters.values()
                for c in rig.emulator.issued_credentials(cluster_id=cluster)
            )
            expired = await rig.wait_until(
                namespace,
                fleet.names,
                lambda obj: condition(obj, "Ready") == ("False", "Expired"),
                within=lifetime + 60,
            )
            reported = time.time()
            await asyncio.sleep(5)
            await asyncio.to_thread(rig.emulator.accept_connections)
            back = time.time()
            recovered = await rig.wait_until(namespace, fleet.names, is_ready, within=600)
            ready_again = time.time()
            await asyncio.sleep(3)  # consumers see the new credential
        outcome.faults = (
            f"connections refused for {back - down:.0f} s, until {back - expires:.0f} s past expiry"
        )
        outcome.check("Ready=False Expired reported once the credentials expired", expired)
        outcome.figures["seconds from expiry to Expired reported"] = round(reported - expires, 1)
        outcome.figures["seconds from DigitalOcean's return to Ready"] = round(
            ready_again - back, 1
        )
        outcome.check("Ready again after DigitalOcean returned", recovered)
        # Refusals are expected only while no valid credential could exist.
        window = (expires - 1, ready_again + 3)
        stray = sum(t.refused_outside([window]) for t in fleet.tallies())
        outcome.check("consumers refused only between expiry and recovery", stray == 0)
        await _finish(
            rig,
            fleet,
            outcome,
            [operator],
            lifetime=lifetime,
            duration=time.time() - down + lifetime,
            unreachable_allowed=False,
        )
        outcome.refusals_expected = " (expected: expired while DigitalOcean was unreachable)"
    return outcome


async def throttled(rig: Rig, sizes: Sizes) -> Outcome:
    """Every kubeconfig request answered 429 with retry-after: the operator waits, no storm."""
    outcome = Outcome("throttled", "Sustained 429 with retry-after")
    with _timed(outcome):
        lifetime = sizes.fault_lifetime
        objects = max(5, sizes.objects)
        staged = await _stage(rig, outcome, "rel-throttled", count=objects, lifetime=lifetime)
        if staged is None:
            return outcome
        fleet, operator = staged
        namespace = fleet.namespace
        emulator = rig.emulator
        before = emulator.request_count("kubeconfig", outcome=429)
        window = sizes.throttle_window
        started = time.monotonic()
        async with running(fleet.all_consumers):
            emulator.add_fault(
                Fault(
                    kind="status", status=429, retry_after=sizes.retry_after, endpoint="kubeconfig"
                )
            )
            await rig.request_refresh(namespace, fleet.names, f"throttled-{time.time():.0f}")
            await asyncio.sleep(window)
            emulator.clear_faults()
            ended = time.time()
            recovered = await rig.wait_until(
                namespace,
                fleet.names,
                lambda obj: (
                    is_ready(obj) and condition(obj, "Reconciling") != ("True", "RateLimited")
                ),
                within=sizes.retry_after * 3 + 30,
            )
            await asyncio.sleep(2)
        throttled_requests = emulator.request_count("kubeconfig", outcome=429) - before
        # Waiting out every retry-after, each object asks at most once per retry-after, plus once.
        bound = objects * (math.ceil(window / sizes.retry_after) + 1)
        outcome.load = f"{objects} objects due at once, {lifetime} s credentials"
        outcome.faults = f"429 with retry-after {sizes.retry_after} s for {window:g} s"
        outcome.figures["requests answered 429"] = throttled_requests
        outcome.figures["429s per object per minute"] = round(
            throttled_requests / objects / (window / 60), 2
        )
        outcome.check(
            "no retry storm: at most one request per object per retry-after",
            throttled_requests <= bound,
            f"{throttled_requests} ≤ {bound}",
        )
        outcome.check("every object renewed once the 429s stopped", recovered)
        recoveries = [_consumer_recovery(fleet, n, ended) for n in fleet.names]
        outcome.figures["seconds from the last 429 to consumers using a new credential"] = [
            round(r, 1) for r in recoveries
        ]
        await _finish(
            rig,
            fleet,
            outcome,
            [operator],
            lifetime=lifetime,
            duration=time.monotonic() - started + 10,
        )
    return outcome


# -- the control plane restarted -------------------------------------------------------------------


async def apiserver_restart(rig: Rig, sizes: Sizes) -> Outcome:
    return await _restarts(rig, sizes, component="kube-apiserver")


async def etcd_restart(rig: Rig, sizes: Sizes) -> Outcome:
    return await _restarts(rig, sizes, component="etcd")


async def _restarts(rig: Rig, sizes: Sizes, *, component: str) -> Outcome:
    name = f"{component.removeprefix('kube-')}-restart"
    outcome = Outcome(name, f"{component} restarted during renewals")
    plane = rig.plane
    if plane is None:
        outcome.notes.append("skipped: needs the local control plane")
        return outcome
    restart = plane.restart_apiserver if component == "kube-apiserver" else plane.restart_etcd
    with _timed(outcome):
        lifetime = sizes.lifetime
        staged = await _stage(rig, outcome, f"rel-{name}", count=sizes.objects, lifetime=lifetime)
        if staged is None:
            return outcome
        fleet, operator = staged
        namespace = fleet.namespace
        started = time.monotonic()
        outages = []
        async with running(fleet.all_consumers):
            for i in range(sizes.restarts):
                # A renewal in flight as the restart begins: fetched, not yet written.
                await rig.request_refresh(namespace, fleet.names, f"restart-{i}")
                await asyncio.sleep(0.2)
                began = time.monotonic()
                await asyncio.to_thread(restart)
                outages.append(time.monotonic() - began)
                await asyncio.sleep(sizes.restart_pause)
            settled = await rig.wait_until(namespace, fleet.names, is_ready, within=90)
            await asyncio.sleep(lifetime)  # a natural renewal after the restarts
        outcome.faults = (
            f"{component} restarted {sizes.restarts} times (down {max(outages):.1f} s at most), "
            "each just after every object was asked to renew"
        )
        outcome.check("every object Ready after the restarts", settled)
        await _finish(
            rig,
            fleet,
            outcome,
            [operator],
            lifetime=lifetime,
            duration=time.monotonic() - started + lifetime,
            allowance=0,
            unreachable_allowed=True,
        )
        outcome.notes.append(
            "consumers cannot reach the API server while it restarts; those attempts are "
            "counted apart from refusals"
        )
    return outcome


# -- the operator killed ---------------------------------------------------------------------------


async def operator_kill(rig: Rig, sizes: Sizes) -> Outcome:
    """SIGKILL in the middle of a renewal (after the fetch was sent), again and again."""
    outcome = Outcome("operator-kill", "Operator SIGKILLed in the middle of renewals")
    with _timed(outcome):
        lifetime = sizes.lifetime
        staged = await _stage(rig, outcome, "rel-kill", count=sizes.objects, lifetime=lifetime)
        if staged is None:
            return outcome
        fleet, operator = staged
        namespace = fleet.namespace
        # Each fetch takes a second, so that the kill lands while one is in flight.
        rig.emulator.add_fault(Fault(kind="latency", seconds=1.0, endpoint="kubeconfig"))
        started = time.monotonic()
        landed = 0
        in_flight = 0  # fetches under way at the kills: each may be a credential never written
        process_start = 0  # where the running process's log begins
        async with running(fleet.all_consumers):
            for i in range(sizes.kills):
                name = fleet.names[i % len(fleet.names)]
                mark = _log_size(operator)
                await rig.request_refresh(namespace, [name], f"kill-{i}")
                fetching = _fetch_of(f"{namespace}/{name}")
                landed += await _logged(operator, fetching, since=mark, within=30) is not None
                operator.kill()
                in_flight += len(_unfinished_fetches(operator, since=process_start))
                await asyncio.sleep(0.5)
                process_start = _log_size(operator)
                await asyncio.to_thread(operator.start)
            settled = await rig.wait_until(namespace, fleet.names, is_ready, within=90)
            await asyncio.sleep(lifetime)
        rig.emulator.clear_faults()
        outcome.faults = f"SIGKILL x{sizes.kills}, {landed} of them while a fetch was in flight"
        outcome.figures["fetches under way at the kills"] = in_flight
        outcome.check("every kill landed during a fetch", landed == sizes.kills)
        outcome.check("every object Ready after the kills", settled)
        await _finish(
            rig,
            fleet,
            outcome,
            [operator],
            lifetime=lifetime,
            duration=time.monotonic() - started + lifetime,
            # The credentials being fetched when the process died: the one each kill aimed at,
            # and any other object's that the restarted operator had under way by then.
            allowance=in_flight,
        )
    return outcome


def _log_size(operator: OperatorProcess) -> int:
    return operator.log_path.stat().st_size


async def _logged(
    operator: OperatorProcess,
    wanted: Callable[[dict[str, Any]], bool],
    *,
    since: int,
    within: float,
) -> dict[str, Any] | None:
    """The first JSON log entry written after byte ``since`` that is ``wanted``, as it appears."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with operator.log_path.open("rb") as log:
            log.seek(since)
            for line in log.read().decode(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line) if line.startswith("{") else None
                    if entry is not None and wanted(entry):
                        return dict(entry)
        await asyncio.sleep(0.02)
    return None


# -- two replicas, leader election -----------------------------------------------------------------


async def failover(rig: Rig, sizes: Sizes) -> Outcome:
    outcome = Outcome("failover", "Two replicas with leader election; the leader SIGKILLed")
    with _timed(outcome):
        namespace = await rig.namespace("rel-failover")
        lifetime = sizes.lifetime
        fleet = await _fleet(rig, namespace, count=sizes.objects, lifetime=lifetime)
        election = [
            "--leader-election",
            f"--leader-election-namespace={namespace}",
            "--leader-election-lease-name=reliability",
        ]
        replicas = {
            name: rig.operator(namespace, name=name, extra_args=election) for name in ("a", "b")
        }
        if not await _ready(rig, fleet, outcome):
            return outcome
        kills: dict[str, list[float]] = {name: [] for name in replicas}
        times: list[float] = []
        started = time.monotonic()
        async with running(fleet.all_consumers):
            for i in range(sizes.failovers):
                leader = await _leader(replicas)
                if leader is None:
                    outcome.check("a replica leads", False)
                    break
                standby = next(n for n in replicas if n != leader)
                mark = _log_size(replicas[standby])
                replicas[leader].kill()
                killed = time.time()
                kills[leader].append(killed)
                took = await _logged(replicas[standby], _leads, since=mark, within=60)
                times.append(epoch(took) - killed if took else math.inf)
                await rig.request_refresh(namespace, fleet.names, f"failover-{i}")
                await asyncio.to_thread(replicas[leader].start)
                await asyncio.sleep(5)
            settled = await rig.wait_until(namespace, fleet.names, is_ready, within=90)
            await asyncio.sleep(lifetime / 2)
        end = time.time()
        intervals = [
            interval
            for name, process in replicas.items()
            for interval in _intervals(name, process, kills[name], end)
        ]
        overlapping = ledger.overlaps(intervals)
        stray = [
            t
            for name, process in replicas.items()
            for t in ledger.outside(
                _fetch_times(process), [i for i in intervals if i.replica == name]
            )
        ]
        outcome.load = f"{len(fleet.names)} objects, {lifetime} s credentials, 2 replicas"
        outcome.faults = f"leader SIGKILLed x{len(times)}"
        outcome.figures["failover seconds (kill → the standby leads)"] = [
            round(t, 1) for t in times
        ]
        outcome.figures["leadership intervals"] = len(intervals)
        outcome.check("never two leaders at once", not overlapping, f"{len(overlapping)} overlaps")
        outcome.check("no replica fetched while not leading", not stray, f"{len(stray)} fetches")
        outcome.check("the standby took over after every kill", bool(times) and max(times) < 60)
        outcome.check("every object Ready after the failovers", settled)
        await _finish(
            rig,
            fleet,
            outcome,
            list(replicas.values()),
            lifetime=lifetime,
            duration=time.monotonic() - started + lifetime,
        )
    return outcome


async def _leader(replicas: dict[str, OperatorProcess]) -> str | None:
    """The replica whose latest "became leader" is the newest, once one has logged it."""
    for _ in range(240):
        latest = {
            name: max((epoch(e) for e in log_entries(p.log_path) if _leads(e)), default=None)
            for name, p in replicas.items()
        }
        candidates = {n: t for n, t in latest.items() if t is not None and replicas[n].alive()}
        if candidates:
            return max(candidates, key=lambda n: candidates[n])
        await asyncio.sleep(0.25)
    return None


def _leads(entry: dict[str, Any]) -> bool:
    return str(entry.get("message", "")).startswith("became leader")


def _intervals(
    name: str, process: OperatorProcess, kills: list[float], end: float
) -> list[ledger.Interval]:
    """Each "became leader" until the next kill of this replica (or the end of the run)."""
    starts = [epoch(e) for e in log_entries(process.log_path) if _leads(e)]
    found = []
    for start in starts:
        stop = min((k for k in kills if k >= start), default=end)
        found.append(ledger.Interval(name, start, stop))
    return found


def _fetches(entry: dict[str, Any]) -> bool:
    return str(entry.get("message", "")).startswith(FETCHING)


def _unfinished_fetches(operator: OperatorProcess, *, since: int) -> set[str]:
    """The objects whose fetch the operator logged from byte ``since`` on, and not its end (a
    credential written, or the fetch failing)."""
    pending: set[str] = set()
    with operator.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line) if line.startswith("{") else {}
            message, key = str(entry.get("message", "")), str(entry.get("object", ""))
            if message.startswith(FETCHING):
                pending.add(key)
            elif message.startswith(FETCH_ENDS):
                pending.discard(key)
    return pending


def _fetch_of(key: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a log entry is the start of a fetch for the object ``key`` ("namespace/name")."""
    return lambda entry: entry.get("object") == key and _fetches(entry)


def _fetch_times(process: OperatorProcess) -> list[float]:
    return [epoch(e) for e in log_entries(process.log_path) if _fetches(e)]


# -- the lifetime guard: a credential the cluster stops accepting before its computed expiry ------


async def revoked(rig: Rig, sizes: Sizes) -> Outcome:
    """Every held token revoked at once: the guard finds each at its next quarter mark and fetches
    a new one; consumers are refused only from the revocation until they use it."""
    outcome = Outcome("revoked", "Every held token revoked: the lifetime guard replaces them")
    with _timed(outcome):
        lifetime = sizes.guard_lifetime
        quarter = lifetime / 4
        staged = await _stage(
            rig, outcome, "rel-revoked", count=sizes.objects, lifetime=lifetime, verify=True
        )
        if staged is None:
            return outcome
        fleet, operator = staged
        emulator = rig.emulator
        issued_at = {
            name: emulator.issued_credentials(cluster_id=cluster)[0].issued_at
            for name, cluster in fleet.clusters.items()
        }
        started = time.monotonic()
        async with running(fleet.all_consumers):
            outcome.check(
                "every consumer authenticated before the revocation",
                await _authenticating(fleet, within=30),
            )
            mark = _log_size(operator)
            revoked_at = time.time()
            tokens = sum(emulator.revoke(cluster_id=c) for c in fleet.clusters.values())
            written = await _first_logged(
                operator, fleet, WROTE, since=mark, within=quarter + APISERVER_CACHE + 30
            )
            await asyncio.sleep(2)  # consumers read the Secret every 250 ms
            # Past the replacement's first guard mark: the guard accepts it, no more fetches.
            await asyncio.sleep(quarter + 3)
        rejected = _first_entries(operator, fleet, REJECTED, since=mark)
        ages = [revoked_at - issued_at[n] for n in fleet.names]
        outcome.load = (
            f"{len(fleet.names)} objects with spec.verify, {lifetime} s credentials, "
            "1 consumer each"
        )
        outcome.faults = (
            f"{tokens} tokens revoked at once, {min(ages):.1f} to {max(ages):.1f} s into their "
            f"{lifetime} s lifetime"
        )
        outcome.figures["tokens revoked"] = tokens
        # The guard looks at each quarter mark; a token revoked less than the apiserver's cache
        # before a mark may pass that one and be found at the next.
        outcome.check(
            f"revoked at least {APISERVER_CACHE:g} s (the apiserver's cache) before every "
            "object's next guard mark",
            all(quarter - age >= APISERVER_CACHE for age in ages),
            f"{min(quarter - age for age in ages):.1f} s before the earliest",
        )
        await _guard_outcome(
            rig,
            fleet,
            outcome,
            broke=dict.fromkeys(fleet.names, revoked_at),
            rejected=rejected,
            written=written,
            within=quarter + 5,
            what="the revocation",
            operator=operator,
            lifetime=lifetime,
            started=started,
            expected="revoked tokens, refused until the guard's next check replaced them",
        )
    return outcome


async def capped(rig: Rig, sizes: Sizes) -> Outcome:
    """DigitalOcean caps the lifetime below the one asked for: the credential stops working long
    before the expiry the operator computed. The guard finds it at its next quarter mark."""
    outcome = Outcome(
        "capped", "Lifetimes capped below the request: the lifetime guard replaces them"
    )
    with _timed(outcome):
        lifetime, cap = sizes.guard_lifetime, sizes.lifetime_cap
        quarter = lifetime / 4
        staged = await _stage(
            rig,
            outcome,
            "rel-capped",
            count=sizes.objects,
            lifetime=lifetime,
            verify=True,
            max_lifetime=cap,
        )
        if staged is None:
            return outcome
        fleet, operator = staged
        emulator = rig.emulator
        first = {
            name: emulator.issued_credentials(cluster_id=cluster)[0]
            for name, cluster in fleet.clusters.items()
        }
        # Every object holds a capped credential: lifting the cap now lets the replacement last
        # (a cap applies to the credentials issued under it). Lifting it at the first refusal
        # would race the fetch the guard makes at once.
        for cluster in fleet.clusters.values():
            emulator.update_cluster(cluster, max_lifetime=0)
        lifted = time.time()
        outcome.check(
            f"every first credential was capped at {cap} s",
            all(abs(c.expires_at - c.issued_at - cap) < 1 for c in first.values()),
        )
        started = time.monotonic()
        mark = _log_size(operator)
        async with running(fleet.all_consumers):
            written = await _first_logged(
                operator, fleet, WROTE, since=mark, within=quarter * 2 + 30
            )
            await asyncio.sleep(2)
            await asyncio.sleep(quarter + 3)  # past the replacement's first guard mark
        rejected = _first_entries(operator, fleet, REJECTED, since=mark)
        outcome.load = (
            f"{len(fleet.names)} objects with spec.verify, {lifetime} s credentials asked for, "
            "1 consumer each"
        )
        outcome.faults = (
            f"lifetimes capped at {cap} s ({lifetime} s asked for), lifted once every object "
            "held a capped credential"
        )
        expiry = {name: c.expires_at for name, c in first.items()}
        outcome.figures["seconds from the earliest first fetch to the cap lifted"] = round(
            lifted - min(c.issued_at for c in first.values()), 1
        )
        # The first quarter mark at least the apiserver's cache past the real expiry.
        guard_mark = quarter * math.ceil((cap + APISERVER_CACHE) / quarter)
        caught = {name: rejected[name] - first[name].issued_at for name in rejected}
        outcome.figures["seconds into each credential when the guard found it refused"] = [
            round(caught[n], 1) if n in caught else None for n in fleet.names
        ]
        outcome.check(
            "every object caught before its computed expiry",
            len(caught) == len(fleet.names) and max(caught.values()) < lifetime,
            f"latest {max(caught.values(), default=math.inf):.1f} s of {lifetime}",
        )
        outcome.check(
            f"caught at the {guard_mark:g} s guard mark, the first past the real expiry and the "
            "apiserver's cache",
            len(caught) == len(fleet.names) and max(caught.values()) <= guard_mark + 3,
        )
        await _guard_outcome(
            rig,
            fleet,
            outcome,
            broke=expiry,
            rejected=rejected,
            written=written,
            within=guard_mark - cap + 5,
            what="the real expiry",
            operator=operator,
            lifetime=lifetime,
            started=started,
            expected="from the capped expiry until the guard's next check replaced them",
        )
    return outcome


async def _guard_outcome(
    rig: Rig,
    fleet: Fleet,
    outcome: Outcome,
    *,
    broke: dict[str, float],
    rejected: dict[str, float],
    written: dict[str, float],
    within: float,
    what: str,
    operator: OperatorProcess,
    lifetime: float,
    started: float,
    expected: str,
) -> None:
    """The checks and figures of a credential the cluster stopped accepting at ``broke`` (per
    object), found by the guard (``rejected``) and replaced (``written``): the time to each, one
    credential more per object, refusals only meanwhile (``expected`` says which); then the
    checks every scenario ends with, for a run that began at ``started`` (monotonic)."""
    names = fleet.names
    recovered = {n: broke[n] + _consumer_recovery(fleet, n, broke[n]) for n in names}

    def after(times: dict[str, float]) -> list[float | None]:
        return [round(times[n] - broke[n], 1) if n in times else None for n in names]

    outcome.figures[f"seconds from {what} to the guard's rejection"] = after(rejected)
    outcome.figures[f"seconds from {what} to a working Secret"] = after(written)
    outcome.figures[f"seconds from {what} to consumers using the new credential"] = after(recovered)
    to_secret = [written[n] - broke[n] for n in names if n in written]
    if to_secret:
        outcome.figures[f"seconds from {what} to a working Secret (min / median / max)"] = [
            round(min(to_secret), 1),
            round(statistics.median(to_secret), 1),
            round(max(to_secret), 1),
        ]
    outcome.check(
        "the guard found every refused credential",
        set(rejected) == set(names),
        f"{len(rejected)} of {len(names)}",
    )
    outcome.check(
        f"every object had a working Secret within {within:g} s of {what}",
        len(to_secret) == len(names) and max(to_secret) <= within,
        f"slowest {max(to_secret, default=math.inf):.1f} s",
    )
    events = await _warnings(rig, fleet.namespace, "CredentialRejected")
    outcome.check(
        "every object showed a CredentialRejected warning",
        set(events) >= set(names),
        f"{len(set(events) & set(names))} of {len(names)}",
    )
    # The status in between: Ready=False CredentialRejected, then Ready again with the new one.
    ready = await rig.wait_until(fleet.namespace, names, is_ready, within=10)
    outcome.check("every object Ready again", ready)
    issued = {
        name: len(rig.emulator.issued_credentials(cluster_id=cluster))
        for name, cluster in fleet.clusters.items()
    }
    outcome.figures["credentials issued per object"] = issued
    outcome.check(
        "exactly one credential more per object: the replacement, and the guard accepted it",
        all(count == 2 for count in issued.values()),
    )
    windows = {n: (broke[n] - 1, recovered[n] + 0.5) for n in names}
    stray = sum(
        c.tally.refused_outside([windows[name]])
        for name, group in fleet.consumers.items()
        for c in group
    )
    outcome.check(f"consumers refused only between {what} and their recovery", stray == 0)
    outcome.figures["refusals per object"] = {
        name: ledger.total([c.tally for c in group], Attempt.REFUSED)
        for name, group in fleet.consumers.items()
    }
    await _finish(
        rig,
        fleet,
        outcome,
        [operator],
        lifetime=lifetime,
        duration=time.monotonic() - started + 10,
        replaced=len(names),
    )
    outcome.refusals_expected = f" (expected: {expected})"


async def _authenticating(fleet: Fleet, *, within: float) -> bool:
    """Wait until every consumer has been authenticated at least once."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(c.tally.counts[Attempt.AUTHENTICATED] for c in fleet.all_consumers):
            return True
        await asyncio.sleep(0.25)
    return False


def _first_entries(
    operator: OperatorProcess, fleet: Fleet, message: str, *, since: int
) -> dict[str, float]:
    """Per object: when the operator first logged ``message`` for it, from byte ``since`` on."""
    found: dict[str, float] = {}
    keys = {f"{fleet.namespace}/{name}": name for name in fleet.names}
    with operator.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    for line in lines:
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line) if line.startswith("{") else {}
            name = keys.get(str(entry.get("object", "")))
            if name and name not in found and str(entry.get("message", "")).startswith(message):
                found[name] = epoch(entry)
    return found


async def _first_logged(
    operator: OperatorProcess, fleet: Fleet, message: str, *, since: int, within: float
) -> dict[str, float]:
    """:func:`_first_entries`, once every object has one (or ``within`` seconds have passed)."""
    deadline = time.monotonic() + within
    while True:
        found = _first_entries(operator, fleet, message, since=since)
        if len(found) == len(fleet.names) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.25)


async def _warnings(rig: Rig, namespace: str, reason: str) -> set[str]:
    """The objects with a Warning event of ``reason``."""
    events = await rig.kube.core.list_namespaced_event(namespace)
    return {
        str(e.involved_object.name)
        for e in events.items
        if e.reason == reason and e.type == "Warning" and e.involved_object
    }


SCENARIOS: dict[str, Callable[[Rig, Sizes], Awaitable[Outcome]]] = {
    "soak": soak,
    "brownout": brownout,
    "outage": outage,
    "throttled": throttled,
    "apiserver-restart": apiserver_restart,
    "etcd-restart": etcd_restart,
    "operator-kill": operator_kill,
    "failover": failover,
    "revoked": revoked,
    "capped": capped,
}
CHAOS = tuple(name for name in SCENARIOS if name != "soak")
