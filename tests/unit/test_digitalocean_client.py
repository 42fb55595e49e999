"""The DigitalOcean client sends the requests DigitalOcean documents and reads their answers."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from doks_access import __version__
from doks_access.digitalocean import (
    DigitalOceanClient,
    InvalidResponseError,
    Timeouts,
)
from doks_access.kubeconfig import AuthKind
from tests.unit.conftest import (
    API_TOKEN,
    CLUSTER_ID,
    EPOCH,
    KUBECONFIG_TOKEN,
    SERVER,
    FakeDigitalOcean,
    cluster_json,
    cluster_record,
    clusters_page,
    dump,
    json_response,
    kubeconfig_response,
    quota_headers,
)

MakeClient = Callable[..., DigitalOceanClient]


# --- the kubeconfig request ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("expiry_seconds", [None, 0])
async def test_sends_type_token_and_omits_zero_or_absent_expiry(
    client: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    kubeconfig_bytes: bytes,
    expiry_seconds: int | None,
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=expiry_seconds
    )

    (request,) = digitalocean.requests
    assert request.method == "GET"
    assert request.url.path == f"/v2/kubernetes/clusters/{CLUSTER_ID}/kubeconfig"
    assert list(request.url.params.multi_items()) == [("type", "token")]


@pytest.mark.asyncio
async def test_sends_the_asked_expiry_when_positive(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    await client.fetch_kubeconfig(token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=86400)

    (request,) = digitalocean.requests
    assert dict(request.url.params) == {"type": "token", "expiry_seconds": "86400"}


@pytest.mark.asyncio
async def test_sends_the_token_as_bearer_and_names_itself(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    await client.fetch_kubeconfig(
        token=f"{API_TOKEN}\n", cluster_id=CLUSTER_ID, expiry_seconds=None
    )

    (request,) = digitalocean.requests
    assert request.headers["authorization"] == f"Bearer {API_TOKEN}"
    assert request.headers["user-agent"] == f"doks-access-operator/{__version__}"
    assert request.headers["accept"] == "application/yaml"
    assert request.url.host == "api.digitalocean.com"
    assert request.url.scheme == "https"


@pytest.mark.asyncio
async def test_returns_the_validated_credential(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    credential = await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=3600
    )

    assert credential.raw == kubeconfig_bytes
    assert credential.server == SERVER
    assert credential.auth_kind is AuthKind.TOKEN
    assert credential.token == KUBECONFIG_TOKEN


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_dates_the_credential_from_when_the_request_was_sent(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    async def slow_answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return kubeconfig_response(kubeconfig_bytes)

    await asyncio.sleep(100)
    digitalocean.script(slow_answer)  # type: ignore[arg-type]

    credential = await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=3600
    )

    assert asyncio.get_running_loop().time() == 105
    sent_at = EPOCH + datetime.timedelta(seconds=100)
    assert credential.issued_at == sent_at
    assert credential.expires_at == sent_at + datetime.timedelta(seconds=3600)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "content_type", ["application/yaml", "application/x-yaml", "text/yaml; charset=utf-8"]
)
async def test_accepts_the_yaml_media_types(
    client: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    kubeconfig_bytes: bytes,
    content_type: str,
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes, **{"content-type": content_type}))

    credential = await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None
    )

    assert credential.raw == kubeconfig_bytes


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("application/json", "'application/json'"),
        ("text/html", "'text/html'"),
        ("", "a malformed one"),
        ("evil <script>", "a malformed one"),
    ],
)
async def test_refuses_a_kubeconfig_of_another_content_type(
    client: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    kubeconfig_bytes: bytes,
    content_type: str,
    shown: str,
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes, **{"content-type": content_type}))

    with pytest.raises(InvalidResponseError) as raised:
        await client.fetch_kubeconfig(token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None)

    assert str(raised.value).endswith(f"unexpected content type {shown}")
    assert len(digitalocean.requests) == 1  # not retried: it would mint another token


@pytest.mark.asyncio
async def test_refuses_an_invalid_kubeconfig_without_retrying(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_document: dict[str, Any]
) -> None:
    kubeconfig_document["users"][0]["user"]["exec"] = {"command": "doctl"}
    digitalocean.script(kubeconfig_response(dump(kubeconfig_document)))

    with pytest.raises(InvalidResponseError, match=r"users\[0\]\.user\.exec is not allowed"):
        await client.fetch_kubeconfig(token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None)

    assert len(digitalocean.requests) == 1


# --- arguments are checked before anything is sent ---------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "cluster_id",
    [
        "",
        "prod-cluster-01",
        "../../v2/account",
        f"{CLUSTER_ID}/../../account",
        f"{CLUSTER_ID}?x=1",
        CLUSTER_ID.replace("-", ""),
        f" {CLUSTER_ID}",
    ],
)
async def test_refuses_a_cluster_id_that_is_not_a_uuid(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, cluster_id: str
) -> None:
    with pytest.raises(ValueError, match="cluster_id is not a UUID"):
        await client.fetch_kubeconfig(token=API_TOKEN, cluster_id=cluster_id, expiry_seconds=None)
    with pytest.raises(ValueError, match="cluster_id is not a UUID"):
        await client.get_cluster(token=API_TOKEN, cluster_id=cluster_id)

    assert digitalocean.requests == []


@pytest.mark.asyncio
async def test_sends_an_upper_case_cluster_id_in_lower_case(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID.upper(), expiry_seconds=None
    )

    assert digitalocean.requests[0].url.path == f"/v2/kubernetes/clusters/{CLUSTER_ID}/kubeconfig"


@pytest.mark.asyncio
@pytest.mark.parametrize("token", ["", "   \n", "two words", "tab\tin", "nul\x00", "üñí"])
async def test_refuses_a_token_a_header_cannot_carry(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, token: str
) -> None:
    with pytest.raises(ValueError, match="API token is empty or has characters") as raised:
        await client.list_clusters(token=token)

    assert digitalocean.requests == []
    if token.strip():
        assert token.strip() not in str(raised.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("expiry_seconds", [-1, True])
async def test_refuses_a_negative_or_boolean_expiry(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, expiry_seconds: int
) -> None:
    with pytest.raises(ValueError, match="expiry_seconds must be a non-negative integer"):
        await client.fetch_kubeconfig(
            token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=expiry_seconds
        )

    assert digitalocean.requests == []


@pytest.mark.parametrize(
    "base_url",
    ["http://api.digitalocean.com", "ftp://api.digitalocean.com", "http://10.0.0.1:8080", "::"],
)
def test_refuses_a_base_url_that_would_send_the_token_in_the_clear(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        DigitalOceanClient(base_url=base_url)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8080", "http://localhost:9000/", "http://[::1]:8080"]
)
async def test_allows_plain_http_to_a_loopback_emulator(
    make_client: MakeClient, digitalocean: FakeDigitalOcean, base_url: str
) -> None:
    client = make_client(base_url=base_url)
    digitalocean.script(clusters_page(range(0), total=0, next_page=None))

    await client.list_clusters(token=API_TOKEN)

    assert digitalocean.requests[0].url.path == "/v2/kubernetes/clusters"
    assert str(digitalocean.requests[0].url).startswith(base_url.rstrip("/"))


def test_timeouts_become_httpx_timeouts() -> None:
    timeouts = Timeouts(connect=1, read=2, write=3, pool=4)

    assert timeouts.as_httpx() == httpx.Timeout(connect=1, read=2, write=3, pool=4)


@pytest.mark.asyncio
async def test_closing_the_client_closes_its_connection_pool(make_client: MakeClient) -> None:
    async with make_client() as client:
        pass

    with pytest.raises(RuntimeError, match="closed"):
        await client.list_clusters(token=API_TOKEN)


# --- clusters -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lists_clusters_across_every_page(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        clusters_page(range(0, 200), total=450, next_page=2),
        clusters_page(range(200, 400), total=450, next_page=3),
        clusters_page(range(400, 450), total=450, next_page=None),
    )

    clusters = await client.list_clusters(token=API_TOKEN)

    assert clusters == tuple(cluster_record(n) for n in range(450))
    assert [dict(request.url.params) for request in digitalocean.requests] == [
        {"page": "1", "per_page": "200"},
        {"page": "2", "per_page": "200"},
        {"page": "3", "per_page": "200"},
    ]
    assert all(r.headers["accept"] == "application/json" for r in digitalocean.requests)


@pytest.mark.asyncio
async def test_asks_for_the_next_page_itself_rather_than_following_the_link(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    elsewhere = json_response(
        200,
        {
            "kubernetes_clusters": [cluster_json(1)],
            "links": {"pages": {"next": "https://attacker.example/steal?page=2"}},
            "meta": {"total": 2},
        },
    )
    digitalocean.script(elsewhere, clusters_page(range(2, 3), total=2, next_page=None))

    await client.list_clusters(token=API_TOKEN)

    assert [request.url.host for request in digitalocean.requests] == [
        "api.digitalocean.com",
        "api.digitalocean.com",
    ]


@pytest.mark.asyncio
async def test_stops_listing_once_the_total_is_reached(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(clusters_page(range(0, 3), total=3, next_page=2))

    clusters = await client.list_clusters(token=API_TOKEN)

    assert len(clusters) == 3
    assert len(digitalocean.requests) == 1


@pytest.mark.asyncio
async def test_lists_a_cluster_seen_on_two_pages_once(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        clusters_page(range(0, 2), total=3, next_page=2),
        clusters_page(range(1, 3), total=3, next_page=None),
    )

    clusters = await client.list_clusters(token=API_TOKEN)

    assert clusters == (cluster_record(0), cluster_record(1), cluster_record(2))


@pytest.mark.asyncio
async def test_lists_no_clusters_when_there_are_none(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(json_response(200, {"kubernetes_clusters": [], "links": {}, "meta": {}}))

    assert await client.list_clusters(token=API_TOKEN) == ()


@pytest.mark.asyncio
@pytest.mark.parametrize("case", ["empty-page", "last-page-short"])
async def test_refuses_a_listing_that_ends_before_its_own_total(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, case: str
) -> None:
    # Read as complete, it would say clusters are gone, and a set would remove their credentials.
    if case == "empty-page":  # an empty page where the total says there are more
        empty = {"kubernetes_clusters": [], "links": {}, "meta": {"total": 9}}
        digitalocean.script(json_response(200, empty))
    else:  # the last page, by its links, with clusters missing
        digitalocean.script(
            clusters_page(range(0, 2), total=5, next_page=2),
            clusters_page(range(2, 3), total=5, next_page=None),
        )

    with pytest.raises(InvalidResponseError, match="the listing ended after"):
        await client.list_clusters(token=API_TOKEN)


@pytest.mark.asyncio
@pytest.mark.looptime  # 500 requests: the rate limiter spreads them over minutes
async def test_gives_up_on_a_listing_that_never_ends(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return clusters_page(range(page, page + 1), total=10**9, next_page=page + 1)

    digitalocean.script(endless)

    with pytest.raises(InvalidResponseError, match="more than 500 pages"):
        await client.list_clusters(token=API_TOKEN)

    assert len(digitalocean.requests) == 500


@pytest.mark.asyncio
async def test_gets_one_cluster(client: DigitalOceanClient, digitalocean: FakeDigitalOcean) -> None:
    body = cluster_json(7)
    digitalocean.script(json_response(200, {"kubernetes_cluster": body}))

    cluster = await client.get_cluster(token=API_TOKEN, cluster_id=body["id"])

    assert cluster == cluster_record(7)
    assert digitalocean.requests[0].url.path == f"/v2/kubernetes/clusters/{body['id']}"


@pytest.mark.asyncio
async def test_reads_a_provisioning_cluster_without_an_endpoint(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    body = cluster_json(7)
    del body["endpoint"]
    digitalocean.script(json_response(200, {"kubernetes_cluster": body}))

    cluster = await client.get_cluster(token=API_TOKEN, cluster_id=body["id"])

    assert cluster.endpoint == ""


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["env:prod", "team-a"], ("env:prod", "team-a")),
        ([], ()),
        (None, None),  # shown only to tokens with tag:read
    ],
)
async def test_reads_a_clusters_tags_and_none_when_the_answer_has_none(
    client: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    tags: list[str] | None,
    expected: tuple[str, ...] | None,
) -> None:
    body = cluster_json(7)
    if tags is not None:
        body["tags"] = tags
    digitalocean.script(json_response(200, {"kubernetes_cluster": body}))

    cluster = await client.get_cluster(token=API_TOKEN, cluster_id=body["id"])

    assert cluster.tags == expected


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "expected"),
    [({"state": "provisioning"}, "provisioning"), ({}, ""), (None, ""), ({"state": 3}, "")],
)
async def test_reads_a_clusters_state_and_empty_when_not_given(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, status: Any, expected: str
) -> None:
    body = {**cluster_json(7), "status": status}
    digitalocean.script(json_response(200, {"kubernetes_cluster": body}))

    cluster = await client.get_cluster(token=API_TOKEN, cluster_id=body["id"])

    assert cluster.state == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("tags", ["env:prod", {"env": "prod"}, ["ok", 3], [None]])
async def test_refuses_a_listing_whose_tags_are_not_a_list_of_strings(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, tags: Any
) -> None:
    body = {"kubernetes_clusters": [{**cluster_json(1), "tags": tags}], "links": {}, "meta": {}}
    digitalocean.script(json_response(200, body))

    with pytest.raises(InvalidResponseError, match="a cluster's tags are not a list of strings"):
        await client.list_clusters(token=API_TOKEN)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "a cluster is not a JSON object"),
        ({"kubernetes_cluster": []}, "a cluster is not a JSON object"),
        ({"kubernetes_cluster": {**cluster_json(7), "id": "x"}}, "a cluster's id is not a UUID"),
        ({"kubernetes_cluster": {**cluster_json(7), "name": None}}, "a cluster's name is missing"),
        ({"kubernetes_cluster": {**cluster_json(7), "region": 3}}, "a cluster's region is missing"),
        ({"kubernetes_cluster": cluster_json(8)}, "the answer is about another cluster"),
    ],
)
async def test_refuses_a_cluster_answer_of_the_wrong_shape(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, body: Any, reason: str
) -> None:
    digitalocean.script(json_response(200, body))

    with pytest.raises(InvalidResponseError, match=reason):
        await client.get_cluster(token=API_TOKEN, cluster_id=cluster_json(7)["id"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"links": {}}, "kubernetes_clusters is missing or not a list"),
        ({"kubernetes_clusters": {"id": "x"}}, "kubernetes_clusters is missing or not a list"),
        ({"kubernetes_clusters": ["x"]}, "a cluster is not a JSON object"),
        ([], "body is not a JSON object"),
    ],
)
async def test_refuses_a_listing_of_the_wrong_shape(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, body: Any, reason: str
) -> None:
    digitalocean.script(json_response(200, body))

    with pytest.raises(InvalidResponseError, match=reason):
        await client.list_clusters(token=API_TOKEN)


@pytest.mark.asyncio
async def test_refuses_a_response_larger_than_the_cap(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    from doks_access.digitalocean import MAX_RESPONSE_BYTES

    huge = b" " * (MAX_RESPONSE_BYTES + 1)
    digitalocean.script(
        httpx.Response(
            200, content=huge, headers={"content-type": "application/json", **quota_headers()}
        )
    )

    with pytest.raises(InvalidResponseError, match="response larger than 8388608 bytes"):
        await client.list_clusters(token=API_TOKEN)
