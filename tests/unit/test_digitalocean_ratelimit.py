"""Requests per token stay inside DigitalOcean's sliding windows and slow down near the limit."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import httpx
import pytest

from doks_access.digitalocean import (
    DigitalOceanClient,
    RateLimitedError,
    RateLimiter,
    RateLimits,
    RetryPolicy,
    ServerQuota,
    TokenBudget,
)
from doks_access.digitalocean._ratelimit import token_key
from tests.unit.conftest import (
    API_TOKEN,
    CLUSTER_ID,
    EPOCH,
    FakeDigitalOcean,
    cluster_json,
    error_response,
    json_response,
    kubeconfig_response,
    quota_headers,
)

MakeClient = Callable[..., DigitalOceanClient]
OTHER_TOKEN = "dop_v1_another-team-token"


def budget(**limits: float) -> TokenBudget:
    return TokenBudget(limits=RateLimits(**limits))  # type: ignore[arg-type]


# --- the limits ---------------------------------------------------------------------------------


def test_keeps_a_ten_percent_margin_below_the_published_limits() -> None:
    limits = RateLimits()

    assert (limits.minute_budget, limits.hour_budget) == (225, 4500)


def test_the_margin_is_configurable() -> None:
    limits = RateLimits(safety_margin=0)

    assert (limits.minute_budget, limits.hour_budget) == (250, 5000)


@pytest.mark.parametrize(
    "options",
    [{"per_minute": 0}, {"per_hour": 0}, {"safety_margin": 1}, {"slowdown_below": -0.1}],
)
def test_refuses_limits_that_allow_nothing(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RateLimits(**options)  # type: ignore[arg-type]


# --- the bookkeeping, with plain numbers for times -----------------------------------------------


def test_sends_at_once_while_both_windows_have_room() -> None:
    token_budget = budget()
    for _ in range(224):
        token_budget.record(0)

    assert token_budget.delay(0) == 0


def test_a_full_minute_window_waits_for_its_oldest_request_to_leave() -> None:
    token_budget = budget()
    for second in range(225):
        token_budget.record(second / 10)  # 225 requests over 22.4 s

    assert token_budget.delay(30) == 30  # the first, sent at 0, leaves at 60
    assert token_budget.delay(59.5) == 0.5
    assert token_budget.delay(60) == 0
    assert token_budget.delay(60.05) == 0  # and then room for the one sent at 0.1 too


def test_a_request_counts_from_its_answer_once_answered() -> None:
    # DigitalOcean counted each of them when it arrived, at most 2 s after it was sent: the slots
    # free up 60 s after the answers, not after the sending.
    token_budget = budget()
    for _ in range(225):
        token_budget.record(0)
    for _ in range(225):
        token_budget.settle(0, 2)

    assert token_budget.delay(60) == 2
    assert token_budget.delay(62) == 0


def test_a_request_still_unanswered_a_minute_later_counts_again_from_its_answer() -> None:
    token_budget = budget(per_minute=1, safety_margin=0)
    token_budget.record(0)
    assert token_budget.delay(61) == 0  # out of the window by its sending time

    token_budget.settle(0, 61)

    assert token_budget.delay(61) == 60


def test_a_full_hour_window_waits_for_its_oldest_request_to_leave() -> None:
    token_budget = budget()
    for minute in range(20):
        for _ in range(225):
            token_budget.record(minute * 60)

    assert token_budget.delay(1200) == 3600 - 1200
    assert token_budget.delay(3600) == 0


def test_spreads_the_remaining_quota_until_the_reset_when_it_runs_low() -> None:
    token_budget = budget()
    token_budget.record(10)

    token_budget.observe(10, ServerQuota(limit=5000, remaining=100, reset_in=50))

    assert token_budget.delay(10) == 0.5  # 100 requests left for 50 s
    assert token_budget.delay(10.25) == 0.25
    assert token_budget.delay(60) == 0  # the reset has come


def test_does_not_slow_down_while_the_quota_is_above_the_threshold() -> None:
    token_budget = budget()
    token_budget.record(0)

    token_budget.observe(0, ServerQuota(limit=5000, remaining=250, reset_in=50))

    assert token_budget.delay(0) == 0


def test_uses_the_configured_hourly_limit_when_the_header_has_none() -> None:
    token_budget = budget(per_hour=1000)
    token_budget.record(0)

    token_budget.observe(0, ServerQuota(limit=None, remaining=40, reset_in=20))

    assert token_budget.delay(0) == 0.5  # 40 < 5 % of 1000


def test_stops_spreading_once_the_server_reports_plenty_again() -> None:
    token_budget = budget()
    token_budget.record(0)
    token_budget.observe(0, ServerQuota(limit=5000, remaining=10, reset_in=100))

    token_budget.observe(1, ServerQuota(limit=5000, remaining=4000, reset_in=100))

    assert token_budget.delay(1) == 0


def test_waits_for_the_reset_when_nothing_remains() -> None:
    token_budget = budget()
    token_budget.record(0)

    token_budget.observe(0, ServerQuota(limit=5000, remaining=0, reset_in=30))

    assert token_budget.delay(0) == 30
    assert token_budget.delay(30) == 0


def test_nothing_remaining_with_a_distant_reset_waits_a_minute_not_for_the_reset() -> None:
    # A 0 on a successful answer may be the per-minute burst limit; the reset is the hour's.
    token_budget = budget()
    token_budget.record(0)

    token_budget.observe(0, ServerQuota(limit=5000, remaining=0, reset_in=1800))

    assert token_budget.delay(0) == 60
    assert token_budget.delay(60) == 0


def test_holds_everything_back_for_a_pause() -> None:
    token_budget = budget()

    token_budget.pause(5, 10)
    token_budget.pause(6, 1)  # a shorter pause does not cut the longer one short

    assert token_budget.delay(5) == 10
    assert token_budget.delay(15) == 0


def test_is_idle_once_its_requests_left_the_hour_window() -> None:
    token_budget = budget()
    token_budget.record(0)

    assert not token_budget.is_idle(3599)
    assert token_budget.is_idle(3600)


@pytest.mark.parametrize(
    ("headers", "quota"),
    [
        (
            {"ratelimit-limit": "5000", "ratelimit-remaining": "4816", "ratelimit-reset": "1030"},
            ServerQuota(limit=5000, remaining=4816, reset_in=30),
        ),
        (
            {"ratelimit-remaining": "7", "ratelimit-reset": "1000"},
            ServerQuota(limit=None, remaining=7, reset_in=0),
        ),
        (
            {"ratelimit-remaining": "7", "ratelimit-reset": "900"},
            ServerQuota(limit=None, remaining=7, reset_in=0),
        ),
        (
            {"ratelimit-remaining": "7", "ratelimit-reset": "99999999"},
            ServerQuota(limit=None, remaining=7, reset_in=3600),
        ),
        ({"ratelimit-remaining": "7"}, None),
        ({"ratelimit-reset": "1030"}, None),
        ({"ratelimit-remaining": "many", "ratelimit-reset": "1030"}, None),
        ({"ratelimit-remaining": "-1", "ratelimit-reset": "1030"}, None),
        ({}, None),
    ],
)
def test_reads_the_quota_from_the_ratelimit_headers(
    headers: dict[str, str], quota: ServerQuota | None
) -> None:
    assert ServerQuota.from_headers(headers, now_epoch=1000) == quota


def test_keys_budgets_by_a_hash_of_the_token() -> None:
    assert token_key(API_TOKEN) == hashlib.sha256(API_TOKEN.encode()).hexdigest()


# --- the waiting, in virtual time ---------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_226th_request_in_a_minute_waits_until_the_first_leaves_the_window() -> None:
    limiter = RateLimiter(limits=RateLimits())
    loop = asyncio.get_running_loop()
    for _ in range(225):
        assert await limiter.acquire(token=API_TOKEN) == 0

    counted_at = await limiter.acquire(token=API_TOKEN)

    assert counted_at == 60
    assert loop.time() == 60


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_4501st_request_in_an_hour_waits_for_the_hour_window() -> None:
    limiter = RateLimiter(limits=RateLimits())
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(4501):
        await limiter.acquire(token=API_TOKEN)
        times.append(loop.time())

    # 225 per minute for 20 minutes fill the hour's 4,500; the next waits for the first to expire.
    assert times[::225] == [minute * 60 for minute in range(20)] + [3600]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_waiting_requests_go_in_the_order_they_came() -> None:
    limiter = RateLimiter(limits=RateLimits(per_minute=2, safety_margin=0))
    finished: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()

    async def request(number: int) -> None:
        await limiter.acquire(token=API_TOKEN)
        finished.append((number, loop.time()))

    await asyncio.gather(*(request(number) for number in range(6)))

    assert finished == [(0, 0), (1, 0), (2, 60), (3, 60), (4, 120), (5, 120)]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_each_token_has_its_own_budget() -> None:
    limiter = RateLimiter(limits=RateLimits())
    for _ in range(225):
        await limiter.acquire(token=API_TOKEN)

    assert await limiter.acquire(token=OTHER_TOKEN) == 0


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_cancelled_wait_does_not_count_as_a_request() -> None:
    limiter = RateLimiter(limits=RateLimits(per_minute=1, safety_margin=0))
    await limiter.acquire(token=API_TOKEN)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limiter.acquire(token=API_TOKEN), timeout=10)

    assert await limiter.acquire(token=API_TOKEN) == 60  # not 120: the cancelled one never counted


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_limiter_keeps_hashes_of_tokens_never_the_tokens() -> None:
    limiter = RateLimiter(limits=RateLimits())

    await limiter.acquire(token=API_TOKEN)
    limiter.observe(token=API_TOKEN, quota=ServerQuota(limit=5000, remaining=9, reset_in=9))

    state = repr(vars(limiter))
    assert token_key(API_TOKEN) in state
    assert API_TOKEN not in state


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_forgets_the_budgets_of_tokens_idle_for_an_hour() -> None:
    limiter = RateLimiter(limits=RateLimits())
    await limiter.acquire(token=API_TOKEN)
    await asyncio.sleep(3600)

    await limiter.acquire(token=OTHER_TOKEN)

    assert token_key(API_TOKEN) not in repr(vars(limiter))
    assert token_key(OTHER_TOKEN) in repr(vars(limiter))


# --- the client and the limiter -----------------------------------------------------------------


def cluster_reply(**headers: str) -> httpx.Response:
    return json_response(200, {"kubernetes_cluster": cluster_json(1)}, **headers)


async def get_clusters(client: DigitalOceanClient, *, count: int, token: str = API_TOKEN) -> None:
    for _ in range(count):
        await client.get_cluster(token=token, cluster_id=cluster_json(1)["id"])


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_client_sends_no_more_than_the_minute_budget(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(cluster_reply())

    await get_clusters(client, count=226)

    assert digitalocean.request_times == [0] * 225 + [60]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_client_slows_down_as_the_remaining_quota_nears_zero(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    # 25 requests left (under 5 % of 5,000), 50 s until the reset: one request every 2 s.
    digitalocean.script(lambda request: cluster_reply(**quota_headers(remaining=25, reset_in=50)))

    await get_clusters(client, count=4)

    assert digitalocean.request_times == [0, 2, 4, 6]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_client_waits_for_the_reset_when_no_quota_remains(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        cluster_reply(**quota_headers(remaining=0, reset_in=30)),
        lambda request: cluster_reply(**quota_headers()),
    )

    await get_clusters(client, count=3)

    assert digitalocean.request_times == [0, 30, 30]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_429_holds_back_every_request_with_that_token(
    make_client: MakeClient, digitalocean: FakeDigitalOcean
) -> None:
    client = make_client(retry_policy=RetryPolicy(attempts=1))
    digitalocean.script(
        error_response(429, "too_many_requests", **{"retry-after": "10"}),
        lambda request: cluster_reply(),
    )
    with pytest.raises(RateLimitedError):
        await get_clusters(client, count=1)

    await get_clusters(client, count=1, token=OTHER_TOKEN)
    await get_clusters(client, count=1)

    assert digitalocean.request_times == [0, 0, 10]
    assert [r.headers["authorization"] for r in digitalocean.requests] == [
        f"Bearer {API_TOKEN}",
        f"Bearer {OTHER_TOKEN}",
        f"Bearer {API_TOKEN}",
    ]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_request_counts_against_the_minute_until_it_is_answered(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)  # DigitalOcean takes 2 s to answer each request of the burst
        return cluster_reply()

    digitalocean.script(slow)

    await asyncio.gather(*(get_clusters(client, count=1) for _ in range(226)))

    assert digitalocean.request_times == [0] * 225 + [62]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_success_with_no_quota_left_holds_back_a_minute_at_most(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        cluster_reply(**quota_headers(remaining=0, reset_in=3600)),
        lambda request: cluster_reply(**quota_headers()),
    )

    await get_clusters(client, count=2)

    assert digitalocean.request_times == [0, 60]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_burst_limit_429_holds_back_for_its_retry_after_not_for_the_hour(
    make_client: MakeClient, digitalocean: FakeDigitalOcean
) -> None:
    # DigitalOcean's burst-limit 429 reports no quota left and an hourly reset half an hour away.
    client = make_client(retry_policy=RetryPolicy(attempts=1))
    throttled = {"retry-after": "3", **quota_headers(remaining=0, reset_in=1800)}
    digitalocean.script(
        error_response(429, "too_many_requests", **throttled), lambda request: cluster_reply()
    )
    with pytest.raises(RateLimitedError):
        await get_clusters(client, count=1)

    await get_clusters(client, count=1)

    assert digitalocean.request_times == [0, 3]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_requests_wait_for_the_limiter_before_their_issue_time_is_taken(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(cluster_reply(**quota_headers(remaining=0, reset_in=30)))
    await get_clusters(client, count=1)
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    credential = await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=60
    )

    assert (credential.issued_at - EPOCH).total_seconds() == 30
