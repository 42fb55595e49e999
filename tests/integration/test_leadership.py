"""Leader election against a real apiserver: one replica works at a time, and a loser stops at once.

Timings are short (a 3 s lease, renewed every 0.5 s, given up after 2 s without renewal) so that
takeovers and losses happen within seconds. Waits are on events, each bounded by ``wait_for``;
the only waits that are meant to time out are those proving that something does *not* happen.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from kubernetes.aio import client
from kubernetes.aio import config as kconfig
from kubernetes.aio.client.exceptions import ApiException

from doks_access import leadership
from tests.conftest import Cluster

LEASE = "doks-access-operator"
LEASE_DURATION = 3.0
RENEW_DEADLINE = 2.0
RETRY_PERIOD = 0.5
TIMING: dict[str, Any] = {
    "lease_duration": LEASE_DURATION,
    "renew_deadline": RENEW_DEADLINE,
    "retry_period": RETRY_PERIOD,
}
# A standby polls every retry period, with client-go's jitter of up to 1.2 periods more.
STANDBY_POLL = RETRY_PERIOD * (1 + leadership.JITTER_FACTOR)
# Room for the apiserver's answers and the event loop, on a busy machine.
SLACK = 1.0
WAIT = 15.0  # bound on waits that should succeed well before it


class Floor:
    """Where all replicas' work happens: who is working now, and every moment two were."""

    def __init__(self) -> None:
        self.working: set[str] = set()
        self.overlaps: list[set[str]] = []
        self.busy = asyncio.Event()  # someone has started working

    def enter(self, name: str) -> None:
        if self.working:
            self.overlaps.append({*self.working, name})
        self.working.add(name)
        self.busy.set()

    def leave(self, name: str) -> None:
        self.working.discard(name)


class Work:
    """A stand-in for reconciling: works until told to finish, and notes how it stopped."""

    def __init__(self, name: str, floor: Floor | None = None) -> None:
        self.name = name
        self.floor = floor or Floor()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.finish = asyncio.Event()
        self.failure: Exception | None = None  # raised instead of returning, when set
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.cancelled = False

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        self.floor.enter(self.name)
        self.started_at = loop.time()
        self.started.set()
        try:
            await self.finish.wait()
            if self.failure is not None:
                raise self.failure
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.floor.leave(self.name)
            self.stopped_at = loop.time()
            self.stopped.set()


class Events:
    """An ``on_event`` callback that keeps what it was told, when, and lets tests await it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.first_at: dict[str, float] = {}
        self._signals: collections.defaultdict[str, asyncio.Event] = collections.defaultdict(
            asyncio.Event
        )

    def __call__(self, event: str) -> None:
        self.seen.append(event)
        self.first_at.setdefault(event, asyncio.get_running_loop().time())
        self._signals[event].set()

    async def wait_for(self, event: str) -> None:
        await asyncio.wait_for(self._signals[event].wait(), WAIT)


@pytest_asyncio.fixture
async def aio_api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    api: client.ApiClient = await kconfig.new_client_from_config(
        config_file=str(cluster.kubeconfig_path)
    )
    try:
        yield api
    finally:
        await api.close()


Contend = Callable[..., asyncio.Task[leadership.LeadershipOutcome]]


@pytest_asyncio.fixture
async def contend(aio_api: client.ApiClient, namespace: str) -> AsyncIterator[Contend]:
    """Start a contender for the test's Lease; any still running at the end are cancelled."""
    tasks: list[asyncio.Task[leadership.LeadershipOutcome]] = []

    def start(
        identity: str, work: Work, events: Events, *, api: client.ApiClient | None = None
    ) -> asyncio.Task[leadership.LeadershipOutcome]:
        task = asyncio.create_task(
            leadership.run_while_leading(
                api=api or aio_api,
                namespace=namespace,
                lease_name=LEASE,
                identity=identity,
                work=work,
                on_event=events,
                **TIMING,
            )
        )
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


async def read_lease(api: client.ApiClient, namespace: str) -> client.V1Lease:
    lease: client.V1Lease = await client.CoordinationV1Api(api).read_namespaced_lease(
        LEASE, namespace
    )
    return lease


def holder_of(lease: client.V1Lease) -> str | None:
    return lease.spec.holder_identity if lease.spec else None


async def take_over(api: client.ApiClient, namespace: str, *, holder: str, seconds: int) -> None:
    """Write ``holder`` into the Lease as another elector would, retrying lost races."""
    leases = client.CoordinationV1Api(api)
    for _ in range(20):
        lease = await read_lease(api, namespace)
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=123456)
        assert lease.spec is not None
        lease.spec.holder_identity = holder
        lease.spec.lease_duration_seconds = seconds
        lease.spec.acquire_time = now
        lease.spec.renew_time = now
        try:
            await leases.replace_namespaced_lease(LEASE, namespace, lease)
        except ApiException as exc:
            if exc.status != 409:  # the leader renewed in between: read again
                raise
        else:
            return
    raise AssertionError("could not take the Lease over: every write lost the race")


async def create_lease(api: client.ApiClient, namespace: str, *, holder: str) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=123456)
    await client.CoordinationV1Api(api).create_namespaced_lease(
        namespace,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name=LEASE),
            spec=client.V1LeaseSpec(
                holder_identity=holder,
                lease_duration_seconds=int(LEASE_DURATION),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        ),
    )


# --- One contender -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_lone_contender_acquires_the_lease_and_runs_the_work(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    work, events = Work("a"), Events()
    running = contend("replica-a", work, events)
    await asyncio.wait_for(work.started.wait(), WAIT)

    lease = await read_lease(aio_api, namespace)
    assert lease.spec is not None
    assert lease.spec.holder_identity == "replica-a"
    assert lease.spec.lease_duration_seconds == int(LEASE_DURATION)
    assert lease.spec.lease_transitions == 0
    assert lease.spec.acquire_time is not None
    assert lease.spec.renew_time is not None
    assert events.seen == [leadership.LeadershipEvent.ACQUIRED]
    assert not running.done()


@pytest.mark.asyncio
async def test_finished_work_releases_the_lease_and_returns_not_lost(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    work, events = Work("a"), Events()
    running = contend("replica-a", work, events)
    await asyncio.wait_for(work.started.wait(), WAIT)

    work.finish.set()
    outcome = await asyncio.wait_for(running, WAIT)

    assert outcome == leadership.LeadershipOutcome(lost=False, reason="the work finished")
    lease = await read_lease(aio_api, namespace)
    assert lease.spec is not None
    assert lease.spec.holder_identity == ""
    assert lease.spec.lease_duration_seconds == leadership.RELEASED_LEASE_SECONDS
    assert events.seen == [leadership.LeadershipEvent.ACQUIRED, leadership.LeadershipEvent.RELEASED]


@pytest.mark.asyncio
async def test_failed_work_releases_the_lease_and_its_error_propagates(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    work, events = Work("a"), Events()
    work.failure = RuntimeError("the operator crashed")
    running = contend("replica-a", work, events)
    await asyncio.wait_for(work.started.wait(), WAIT)

    work.finish.set()
    with pytest.raises(RuntimeError, match="the operator crashed"):
        await asyncio.wait_for(running, WAIT)

    assert holder_of(await read_lease(aio_api, namespace)) == ""
    assert events.seen[-1] == leadership.LeadershipEvent.RELEASED


@pytest.mark.asyncio
async def test_cancelling_the_leader_cancels_the_work_and_releases_the_lease(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    work, events = Work("a"), Events()
    running = contend("replica-a", work, events)
    await asyncio.wait_for(work.started.wait(), WAIT)

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, WAIT)

    assert work.cancelled
    assert holder_of(await read_lease(aio_api, namespace)) == ""
    assert events.seen == [leadership.LeadershipEvent.ACQUIRED, leadership.LeadershipEvent.RELEASED]


@pytest.mark.asyncio
async def test_timings_that_would_let_two_replicas_lead_at_once_are_refused(
    aio_api: client.ApiClient, namespace: str
) -> None:
    work = Work("a")
    for lease_duration, renew_deadline, retry_period in [(2, 2, 0.5), (3, 2, 2), (3, 2, 0)]:
        with pytest.raises(ValueError, match="must"):
            await leadership.run_while_leading(
                api=aio_api,
                namespace=namespace,
                lease_name=LEASE,
                identity="replica-a",
                work=work,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
            )
    assert not work.started.is_set()


@pytest.mark.asyncio
async def test_a_time_on_a_whole_second_is_still_written_as_micro_time(
    aio_api: client.ApiClient, namespace: str
) -> None:
    whole_second = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    leases = client.CoordinationV1Api(aio_api)

    with pytest.raises(ApiException) as rejected:  # what the nudge is for
        await leases.create_namespaced_lease(namespace, lease_renewed_at("plain", whole_second))
    await leases.create_namespaced_lease(
        namespace, lease_renewed_at("nudged", leadership._micro_time(whole_second))
    )

    assert rejected.value.status == 400
    lease = await leases.read_namespaced_lease("nudged", namespace)
    assert lease.spec is not None
    assert lease.spec.renew_time == whole_second.replace(microsecond=1)


def lease_renewed_at(name: str, when: datetime.datetime) -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1LeaseSpec(renew_time=when)
    )


# --- Several contenders ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_of_two_contenders_one_works_and_the_other_takes_over_when_it_releases(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    floor = Floor()
    works = {name: Work(name, floor) for name in ("replica-a", "replica-b")}
    events = {name: Events() for name in works}
    for name in works:
        contend(name, works[name], events[name])

    await asyncio.wait_for(floor.busy.wait(), WAIT)
    first, second = sorted(works, key=lambda name: not works[name].started.is_set())
    await events[second].wait_for(leadership.LeadershipEvent.STANDING_BY)
    assert not works[second].started.is_set()
    assert holder_of(await read_lease(aio_api, namespace)) == first

    works[first].finish.set()
    await asyncio.wait_for(works[second].started.wait(), WAIT)

    released_at = events[first].first_at[leadership.LeadershipEvent.RELEASED]
    assert works[second].started_at - released_at < STANDBY_POLL + SLACK < LEASE_DURATION
    assert works[second].started_at >= works[first].stopped_at
    assert floor.overlaps == []
    lease = await read_lease(aio_api, namespace)
    assert lease.spec is not None
    assert lease.spec.holder_identity == second
    assert lease.spec.lease_transitions == 1


@pytest.mark.asyncio
async def test_a_standby_never_works_while_the_lease_is_held_and_valid(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    floor = Floor()
    leader, standby = Work("replica-a", floor), Work("replica-b", floor)
    leader_events, standby_events = Events(), Events()
    contend("replica-a", leader, leader_events)
    await asyncio.wait_for(leader.started.wait(), WAIT)
    contend("replica-b", standby, standby_events)
    await standby_events.wait_for(leadership.LeadershipEvent.STANDING_BY)
    before = await read_lease(aio_api, namespace)

    # Proving a negative: the standby's work must not start for several lease durations, which
    # the leader outlives only by renewing.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(standby.started.wait(), 2 * LEASE_DURATION)

    assert standby_events.seen == [leadership.LeadershipEvent.STANDING_BY]
    assert floor.overlaps == []
    assert not leader.cancelled
    after = await read_lease(aio_api, namespace)
    assert before.spec is not None
    assert after.spec is not None
    assert after.spec.holder_identity == "replica-a"
    assert after.spec.acquire_time == before.spec.acquire_time
    assert after.spec.renew_time is not None
    assert before.spec.renew_time is not None
    assert after.spec.renew_time > before.spec.renew_time
    assert after.spec.lease_transitions == 0


@pytest.mark.asyncio
async def test_a_standby_takes_an_abandoned_lease_once_its_duration_passes_on_its_own_clock(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    await create_lease(aio_api, namespace, holder="crashed-replica")  # never renewed
    work, events = Work("replica-b"), Events()
    began = asyncio.get_running_loop().time()
    contend("replica-b", work, events)

    await events.wait_for(leadership.LeadershipEvent.STANDING_BY)
    await asyncio.wait_for(work.started.wait(), WAIT)

    # Expiry counts from when the standby first saw the record, not from its renewTime.
    waited = work.started_at - began
    assert LEASE_DURATION <= waited < LEASE_DURATION + STANDBY_POLL + SLACK
    lease = await read_lease(aio_api, namespace)
    assert lease.spec is not None
    assert lease.spec.holder_identity == "replica-b"
    assert lease.spec.lease_transitions == 1


# --- Losing the lease --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_leader_whose_lease_is_taken_cancels_its_work_at_once_and_reports_it_lost(
    aio_api: client.ApiClient, namespace: str, contend: Contend
) -> None:
    work, events = Work("replica-a"), Events()
    running = contend("replica-a", work, events)
    await asyncio.wait_for(work.started.wait(), WAIT)

    await take_over(aio_api, namespace, holder="intruder", seconds=3600)
    taken_at = asyncio.get_running_loop().time()
    outcome = await asyncio.wait_for(running, RENEW_DEADLINE + RETRY_PERIOD + SLACK)

    assert outcome.lost
    assert "intruder" in outcome.reason
    assert work.cancelled
    assert work.stopped_at - taken_at <= RENEW_DEADLINE + RETRY_PERIOD
    assert events.seen == [leadership.LeadershipEvent.ACQUIRED, leadership.LeadershipEvent.LOST]
    lease = await read_lease(aio_api, namespace)
    assert lease.spec is not None
    assert lease.spec.holder_identity == "intruder"  # neither renewed over nor released
    assert lease.spec.lease_duration_seconds == 3600


@pytest.mark.asyncio
async def test_a_leader_that_cannot_reach_the_apiserver_gives_up_by_the_renew_deadline(
    cluster: Cluster, namespace: str, contend: Contend
) -> None:
    # The leader's own client, so that cutting it off leaves the test's client working.
    api: client.ApiClient = await kconfig.new_client_from_config(
        config_file=str(cluster.kubeconfig_path)
    )
    blackhole = Blackhole()
    try:
        work, events = Work("replica-a"), Events()
        running = contend("replica-a", work, events, api=api)
        await asyncio.wait_for(work.started.wait(), WAIT)

        api.configuration.host = await blackhole.start()
        cut_at = asyncio.get_running_loop().time()
        outcome = await asyncio.wait_for(running, RETRY_PERIOD + RENEW_DEADLINE + SLACK)
    finally:
        await blackhole.stop()
        await api.close()

    assert outcome.lost
    assert "not renewed within" in outcome.reason
    assert work.cancelled
    assert RENEW_DEADLINE <= work.stopped_at - cut_at <= RETRY_PERIOD + RENEW_DEADLINE + SLACK
    assert events.seen == [leadership.LeadershipEvent.ACQUIRED, leadership.LeadershipEvent.LOST]


class Blackhole:
    """An apiserver gone silent: accepts connections, then never says a word."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()
            await writer.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await reader.read()  # until the client hangs up
        writer.close()
        self._writers.discard(writer)
