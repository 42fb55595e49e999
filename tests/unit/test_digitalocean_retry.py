"""Failed calls are retried briefly with full-jitter backoff; a 429 waits as long as it is told."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

import httpx
import pytest

from doks_access.digitalocean import (
    DigitalOceanClient,
    DigitalOceanError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnauthorizedError,
)
from tests.unit.conftest import (
    API_TOKEN,
    CLUSTER_ID,
    EPOCH,
    CeilingRandom,
    FakeDigitalOcean,
    clusters_page,
    error_response,
    kubeconfig_response,
)

MakeClient = Callable[..., DigitalOceanClient]


class RecordingRandom(random.Random):
    """Records the ranges jitter is drawn from and answers their midpoint."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return (a + b) / 2


def server_error() -> ServerError:
    return ServerError("GET /x: HTTP 503")


def rate_limited(seconds: float) -> RateLimitedError:
    return RateLimitedError("GET /x: HTTP 429", retry_after=seconds)


# --- the policy, as a pure decision -------------------------------------------------------------


def test_the_backoff_ceiling_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=10)

    assert [policy.backoff_ceiling(retry=n) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert policy.backoff_ceiling(retry=10_000) == 10


def test_draws_each_backoff_uniformly_from_zero_to_the_ceiling() -> None:
    policy = RetryPolicy(attempts=5, base_delay=1, max_delay=10, max_total_delay=100)
    rng = RecordingRandom()

    delays = [
        policy.delay_before_retry(error=server_error(), failed_attempts=n, slept=0, rng=rng)
        for n in (1, 2, 3, 4)
    ]

    assert rng.ranges == [(0, 1), (0, 2), (0, 4), (0, 8)]
    assert delays == [0.5, 1, 2, 4]


def test_jitter_from_a_real_random_source_stays_within_the_ceiling() -> None:
    policy = RetryPolicy(attempts=3, base_delay=2, max_delay=10)
    rng = random.Random(42)  # noqa: S311 - jitter, not crypto

    delays = [
        policy.delay_before_retry(error=server_error(), failed_attempts=2, slept=0, rng=rng)
        for _ in range(200)
    ]

    assert all(delay is not None and 0 <= delay <= 4 for delay in delays)
    assert len(set(delays)) > 100  # really jittered


@pytest.mark.parametrize(
    "error",
    [
        UnauthorizedError("x", status=401),
        NotFoundError("x", status=404),
        InvalidResponseError("x"),
        DigitalOceanError("x"),
    ],
)
def test_gives_up_at_once_on_errors_that_are_not_retryable(error: DigitalOceanError) -> None:
    policy = RetryPolicy()

    assert (
        policy.delay_before_retry(error=error, failed_attempts=1, slept=0, rng=CeilingRandom())
        is None
    )


def test_gives_up_once_every_attempt_is_spent() -> None:
    policy = RetryPolicy(attempts=3)

    assert (
        policy.delay_before_retry(
            error=server_error(), failed_attempts=2, slept=0, rng=CeilingRandom()
        )
        == 2
    )
    assert (
        policy.delay_before_retry(
            error=server_error(), failed_attempts=3, slept=0, rng=CeilingRandom()
        )
        is None
    )


def test_gives_up_when_the_next_sleep_would_pass_the_total_bound() -> None:
    policy = RetryPolicy(attempts=10, base_delay=4, max_delay=4, max_total_delay=10)

    assert (
        policy.delay_before_retry(
            error=server_error(), failed_attempts=1, slept=6, rng=CeilingRandom()
        )
        == 4
    )
    assert (
        policy.delay_before_retry(
            error=server_error(), failed_attempts=1, slept=6.5, rng=CeilingRandom()
        )
        is None
    )


def test_waits_exactly_as_long_as_a_429_asks() -> None:
    policy = RetryPolicy(max_rate_limit_wait=30)

    delay = policy.delay_before_retry(
        error=rate_limited(17), failed_attempts=1, slept=0, rng=CeilingRandom()
    )

    assert delay == 17


def test_hands_a_429_with_a_long_wait_back_to_the_caller() -> None:
    policy = RetryPolicy(max_rate_limit_wait=30)

    delay = policy.delay_before_retry(
        error=rate_limited(31), failed_attempts=1, slept=0, rng=CeilingRandom()
    )

    assert delay is None


@pytest.mark.parametrize(
    "options",
    [{"attempts": 0}, {"base_delay": -1}, {"max_delay": -1}, {"max_total_delay": -0.1}],
)
def test_refuses_a_policy_that_makes_no_sense(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**options)  # type: ignore[arg-type]


# --- the client, in virtual time ----------------------------------------------------------------


async def fetch(client: DigitalOceanClient) -> object:
    return await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None
    )


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_retries_server_errors_then_succeeds(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(
        error_response(503, "service_unavailable"),
        error_response(500, "server_error"),
        kubeconfig_response(kubeconfig_bytes),
    )

    credential = await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None
    )

    # Jitter draws the ceiling (CeilingRandom): 1 s, then 2 s.
    assert digitalocean.request_times == [0, 1, 3]
    assert credential.issued_at == EPOCH + datetime.timedelta(seconds=3)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_retries_transport_errors_then_succeeds(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(httpx.ConnectError("refused"), kubeconfig_response(kubeconfig_bytes))

    await fetch(client)

    assert digitalocean.request_times == [0, 1]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_raises_the_last_error_once_attempts_are_exhausted(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(error_response(500, "server_error"))

    with pytest.raises(ServerError):
        await fetch(client)

    assert digitalocean.request_times == [0, 1, 3, 7]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_stops_retrying_within_the_total_bound(
    make_client: MakeClient, digitalocean: FakeDigitalOcean
) -> None:
    client = make_client(retry_policy=RetryPolicy(attempts=10, max_total_delay=5))
    digitalocean.script(httpx.ReadTimeout("slow"))

    with pytest.raises(TransportError):
        await fetch(client)

    # Slept 1 + 2; the next 4 would make 7 > 5.
    assert digitalocean.request_times == [0, 1, 3]


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize(
    ("status", "error_id", "error_class"),
    [
        (401, "unauthorized", UnauthorizedError),
        (403, "forbidden", UnauthorizedError),
        (404, "not_found", NotFoundError),
        (418, "teapot", InvalidResponseError),
    ],
)
async def test_raises_at_once_what_retrying_cannot_fix(
    client: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    status: int,
    error_id: str,
    error_class: type[DigitalOceanError],
) -> None:
    digitalocean.script(error_response(status, error_id))

    with pytest.raises(error_class):
        await fetch(client)

    assert digitalocean.request_times == [0]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_honours_a_429_then_succeeds(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(
        error_response(429, "too_many_requests", **{"retry-after": "7"}),
        kubeconfig_response(kubeconfig_bytes),
    )

    credential = await fetch(client)

    assert digitalocean.request_times == [0, 7]
    assert credential is not None


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_hands_a_long_429_to_the_caller_without_waiting(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(error_response(429, "too_many_requests", **{"retry-after": "120"}))

    with pytest.raises(RateLimitedError) as raised:
        await fetch(client)

    assert raised.value.retry_after == 120
    assert digitalocean.request_times == [0]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_retries_each_page_of_a_listing_on_its_own(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        clusters_page(range(0, 1), total=2, next_page=2),
        error_response(502, "bad_gateway"),
        clusters_page(range(1, 2), total=2, next_page=None),
    )

    clusters = await client.list_clusters(token=API_TOKEN)

    assert len(clusters) == 2
    assert [r.url.params["page"] for r in digitalocean.requests] == ["1", "2", "2"]
    assert digitalocean.request_times == [0, 0, 1]
