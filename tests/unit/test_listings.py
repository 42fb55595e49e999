"""Cluster listings are shared per token: reused while young enough, one under way at a time."""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import Callable
from typing import cast

import pytest

from doks_access.digitalocean import Cluster, DigitalOceanClient, UnauthorizedError
from doks_access.listings import ClusterListings, Listing
from tests.unit.conftest import FakeDigitalOcean, clusters_page, error_response

pytestmark = pytest.mark.asyncio

START = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
FIVE_MINUTES = datetime.timedelta(minutes=5)
TOKEN = "dop_v1_first-token"
OTHER_TOKEN = "dop_v1_second-token"


def a_cluster(number: int) -> Cluster:
    cluster_id = f"00000000-0000-4000-8000-{number:012d}"
    return Cluster(id=cluster_id, name=f"cluster-{number}", region="nyc1", endpoint="")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


class FakeClient:
    """Lists ``clusters`` (or raises the next scripted error) once ``gate`` is open."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.errors: collections.deque[BaseException] = collections.deque()
        self.listed = 0

    async def list_clusters(self, *, token: str) -> tuple[Cluster, ...]:
        self.calls.append(token)
        await self.gate.wait()
        if self.errors:
            raise self.errors.popleft()
        self.listed += 1
        return (a_cluster(self.listed),)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def listings(client: FakeClient, clock: Clock) -> ClusterListings:
    return ClusterListings(cast(DigitalOceanClient, client), clock=clock)


async def waiting(listings: ClusterListings, *, token: str = TOKEN) -> asyncio.Task[Listing]:
    """A get() that has started and waits for the listing."""
    task = asyncio.create_task(listings.get(token=token, max_age=FIVE_MINUTES))
    for _ in range(3):  # let it start, and the listing it waits for (no time passes)
        await asyncio.sleep(0)
    return task


# --- reuse within the interval ------------------------------------------------------------------


async def test_a_listing_is_reused_while_younger_than_the_asked_age(
    listings: ClusterListings, client: FakeClient, clock: Clock
) -> None:
    first = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)
    clock.advance(minutes=4, seconds=59)

    again = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert again is first
    assert first == Listing(clusters=(a_cluster(1),), listed_at=START)
    assert client.calls == [TOKEN]


async def test_a_new_listing_is_made_once_the_kept_one_is_as_old_as_the_asked_age(
    listings: ClusterListings, client: FakeClient, clock: Clock
) -> None:
    await listings.get(token=TOKEN, max_age=FIVE_MINUTES)
    clock.advance(minutes=5)

    fresh = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert fresh == Listing(clusters=(a_cluster(2),), listed_at=START + FIVE_MINUTES)
    assert client.calls == [TOKEN, TOKEN]


async def test_each_asker_judges_the_age_by_its_own_interval(
    listings: ClusterListings, client: FakeClient, clock: Clock
) -> None:
    await listings.get(token=TOKEN, max_age=FIVE_MINUTES)
    clock.advance(minutes=2)

    patient = await listings.get(token=TOKEN, max_age=datetime.timedelta(minutes=10))
    hurried = await listings.get(token=TOKEN, max_age=datetime.timedelta(minutes=1))

    assert patient.listed_at == START
    assert hurried.listed_at == START + datetime.timedelta(minutes=2)
    assert len(client.calls) == 2


async def test_a_listing_is_dated_from_when_it_was_asked_for(
    listings: ClusterListings, client: FakeClient, clock: Clock
) -> None:
    client.gate.clear()
    task = await waiting(listings)
    clock.advance(seconds=30)  # DigitalOcean takes its time
    client.gate.set()

    assert (await task).listed_at == START


async def test_forgetting_a_token_makes_the_next_get_list_again(
    listings: ClusterListings, client: FakeClient
) -> None:
    await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    listings.forget(TOKEN)
    listings.forget(OTHER_TOKEN)  # nothing kept: nothing to do
    await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert client.calls == [TOKEN, TOKEN]


async def test_different_tokens_have_separate_listings(
    listings: ClusterListings, client: FakeClient
) -> None:
    first = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)
    other = await listings.get(token=OTHER_TOKEN, max_age=FIVE_MINUTES)

    assert client.calls == [TOKEN, OTHER_TOKEN]
    assert first.clusters != other.clusters
    assert await listings.get(token=OTHER_TOKEN, max_age=FIVE_MINUTES) is other


async def test_the_tokens_themselves_are_not_kept(listings: ClusterListings) -> None:
    await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert TOKEN not in repr(vars(listings))


# --- one listing under way at a time ------------------------------------------------------------


async def test_concurrent_askers_share_the_listing_under_way(
    listings: ClusterListings, client: FakeClient
) -> None:
    client.gate.clear()
    first, second = await waiting(listings), await waiting(listings)
    client.gate.set()

    assert await first is await second
    assert client.calls == [TOKEN]


async def test_concurrent_askers_with_different_tokens_do_not_share(
    listings: ClusterListings, client: FakeClient
) -> None:
    client.gate.clear()
    first, other = await waiting(listings), await waiting(listings, token=OTHER_TOKEN)
    client.gate.set()

    assert (await first).clusters != (await other).clusters
    assert client.calls == [TOKEN, OTHER_TOKEN]


async def test_a_failed_listing_raises_to_every_waiter_and_is_not_kept(
    listings: ClusterListings, client: FakeClient
) -> None:
    client.gate.clear()
    client.errors.append(UnauthorizedError("the token is refused"))
    first, second = await waiting(listings), await waiting(listings)
    client.gate.set()

    results = await asyncio.gather(first, second, return_exceptions=True)
    retried = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert [type(result) for result in results] == [UnauthorizedError, UnauthorizedError]
    assert retried.clusters == (a_cluster(1),)
    assert client.calls == [TOKEN, TOKEN]


async def test_a_failed_listing_leaves_the_older_one_for_patient_askers(
    listings: ClusterListings, client: FakeClient, clock: Clock
) -> None:
    older = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)
    clock.advance(minutes=5)
    client.errors.append(UnauthorizedError("the token is refused"))

    with pytest.raises(UnauthorizedError):
        await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert await listings.get(token=TOKEN, max_age=datetime.timedelta(hours=1)) is older


async def test_a_cancelled_waiter_does_not_cancel_the_listing_for_the_others(
    listings: ClusterListings, client: FakeClient
) -> None:
    client.gate.clear()
    leaving, staying = await waiting(listings), await waiting(listings)

    leaving.cancel()
    await asyncio.sleep(0)
    client.gate.set()

    assert (await staying).clusters == (a_cluster(1),)
    assert leaving.cancelled()
    assert client.calls == [TOKEN]


async def test_a_listing_whose_only_waiter_left_is_finished_and_kept(
    listings: ClusterListings, client: FakeClient
) -> None:
    client.gate.clear()
    leaving = await waiting(listings)
    leaving.cancel()
    await asyncio.sleep(0)
    client.gate.set()
    await asyncio.sleep(0)

    kept = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert kept.clusters == (a_cluster(1),)
    assert client.calls == [TOKEN]


async def test_a_listing_that_fails_after_its_only_waiter_left_warns_of_nothing(
    listings: ClusterListings, client: FakeClient
) -> None:
    client.gate.clear()
    client.errors.append(UnauthorizedError("the token is refused"))
    leaving = await waiting(listings)
    leaving.cancel()
    await asyncio.sleep(0)
    client.gate.set()
    await asyncio.sleep(0)

    fresh = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert fresh.clusters == (a_cluster(1),)  # the failure was not kept
    assert client.calls == [TOKEN, TOKEN]


# --- through the real client --------------------------------------------------------------------


async def test_lists_through_the_digitalocean_client(
    make_client: Callable[..., DigitalOceanClient], digitalocean: FakeDigitalOcean, clock: Clock
) -> None:
    digitalocean.script(clusters_page(range(0, 2), total=2, next_page=None))
    listings = ClusterListings(make_client(), clock=clock)

    first = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)
    again = await listings.get(token=TOKEN, max_age=FIVE_MINUTES)

    assert again is first
    assert [(c.name, c.state) for c in first.clusters] == [
        ("cluster-0", "running"),
        ("cluster-1", "running"),
    ]
    assert len(digitalocean.requests) == 1


async def test_an_error_of_the_digitalocean_client_reaches_the_asker(
    make_client: Callable[..., DigitalOceanClient], digitalocean: FakeDigitalOcean, clock: Clock
) -> None:
    digitalocean.script(error_response(401, "unauthorized"))
    listings = ClusterListings(make_client(), clock=clock)

    with pytest.raises(UnauthorizedError):
        await listings.get(token=TOKEN, max_age=FIVE_MINUTES)
