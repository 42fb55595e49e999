"""Every failure becomes one of the client's errors, decided once, and none leaks a secret."""

from __future__ import annotations

import datetime
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from doks_access.digitalocean import (
    DigitalOceanClient,
    DigitalOceanError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRefusedError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnauthorizedError,
)
from doks_access.digitalocean._errors import explanation, retry_after_seconds
from tests.unit.conftest import (
    API_TOKEN,
    BODY_TEXT,
    CLUSTER_ID,
    KUBECONFIG_TOKEN,
    FakeDigitalOcean,
    error_response,
    json_response,
    kubeconfig_response,
    quota_headers,
)

MakeClient = Callable[..., DigitalOceanClient]
KUBECONFIG_PATH = f"/v2/kubernetes/clusters/{CLUSTER_ID}/kubeconfig"
REQUEST_ID = "4d9d8375-3c56-4925-a3e7"


@pytest.fixture
def single_shot(make_client: MakeClient) -> DigitalOceanClient:
    """A client that does not retry, so each failure surfaces as it was mapped."""
    return make_client(retry_policy=RetryPolicy(attempts=1))


async def fetch(client: DigitalOceanClient) -> Any:
    return await client.fetch_kubeconfig(
        token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None
    )


# --- statuses -----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error_id", "error_class"),
    [
        (401, "unauthorized", UnauthorizedError),
        (403, "forbidden", UnauthorizedError),
        (404, "not_found", NotFoundError),
        (500, "server_error", ServerError),
        (502, "bad_gateway", ServerError),
        (503, "service_unavailable", ServerError),
        (400, "bad_request", RequestRefusedError),
        (422, "unprocessable_entity", RequestRefusedError),
        (418, "teapot", InvalidResponseError),
        (302, "found", InvalidResponseError),
    ],
)
async def test_maps_each_status_to_its_error(
    single_shot: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    status: int,
    error_id: str,
    error_class: type[DigitalOceanError],
) -> None:
    digitalocean.script(error_response(status, error_id))

    with pytest.raises(DigitalOceanError) as raised:
        await fetch(single_shot)

    assert type(raised.value) is error_class
    assert raised.value.status == status
    assert raised.value.error_id == error_id
    assert raised.value.request_id == REQUEST_ID
    assert str(raised.value).startswith(
        f"GET {KUBECONFIG_PATH}: HTTP {status} {error_id} (request {REQUEST_ID})"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 422])
async def test_a_refused_request_quotes_digitaloceans_reason(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean, status: int
) -> None:
    """A 400 or 422 is the one answer whose message tells a person what to change."""
    message = "expiry_seconds must be at most 604800"
    body = {"id": "unprocessable_entity", "message": message, "request_id": REQUEST_ID}
    digitalocean.script(json_response(status, body))

    with pytest.raises(RequestRefusedError) as raised:
        await fetch(single_shot)

    assert raised.value.explanation == message
    assert str(raised.value).endswith(f"(request {REQUEST_ID}): {message}")
    assert len(digitalocean.requests) == 1, "asking again unchanged gets the same answer"


@pytest.mark.asyncio
async def test_a_refused_request_without_a_readable_reason_says_so(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(httpx.Response(422, content=b"<html>nope</html>"))

    with pytest.raises(RequestRefusedError) as raised:
        await fetch(single_shot)

    assert raised.value.explanation is None
    assert str(raised.value).endswith("HTTP 422: DigitalOcean gave no usable reason")


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("expiry_seconds is too large", "expiry_seconds is too large"),
        ("  two\n lines\t here ", "two lines here"),
        ("x" * 300, None),  # an opaque run, as a random token has: not shown at all
        (f"not {'3f9a' * 16} here", None),
        ("word " * 60, ("word " * 60).strip()[:199] + "…"),
        (f"token {API_TOKEN} is bad", None),
        (f"token {API_TOKEN[-10:]} is bad", None),
        ("bell\x07", None),
        ("", None),
        (42, None),
    ],
)
def test_explanation_shows_only_short_printable_text_that_is_no_credential(
    said: object, shown: str | None
) -> None:
    assert explanation(said, token=API_TOKEN) == shown


@pytest.mark.asyncio
async def test_says_an_unexpected_status_is_unexpected(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(error_response(418, "teapot"))

    with pytest.raises(InvalidResponseError, match=r"HTTP 418 teapot .*: unexpected status$"):
        await fetch(single_shot)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_reads_the_wait_of_a_429_from_retry_after(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        error_response(
            429, "too_many_requests", **{"retry-after": "7", **quota_headers(reset_in=50)}
        )
    )

    with pytest.raises(RateLimitedError) as raised:
        await fetch(single_shot)

    assert raised.value.retry_after == 7
    assert raised.value.status == 429
    assert str(raised.value).endswith("; retry after 7s")


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_reads_the_wait_of_a_429_from_ratelimit_reset_without_retry_after(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(error_response(429, "too_many_requests", **quota_headers(reset_in=42)))

    with pytest.raises(RateLimitedError) as raised:
        await fetch(single_shot)

    assert raised.value.retry_after == 42


@pytest.mark.asyncio
async def test_takes_the_request_id_from_the_header_when_the_body_has_none(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        httpx.Response(500, content=b"<html>oops</html>", headers={"x-request-id": "abc-123"})
    )

    with pytest.raises(ServerError) as raised:
        await fetch(single_shot)

    assert raised.value.error_id is None
    assert raised.value.request_id == "abc-123"
    assert str(raised.value) == f"GET {KUBECONFIG_PATH}: HTTP 500 (request abc-123)"


@pytest.mark.asyncio
async def test_leaves_out_error_ids_that_are_not_plain_identifiers(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(json_response(404, {"id": f"not found {BODY_TEXT}", "request_id": ["x"]}))

    with pytest.raises(NotFoundError) as raised:
        await fetch(single_shot)

    assert raised.value.error_id is None
    assert raised.value.request_id is None
    assert str(raised.value) == f"GET {KUBECONFIG_PATH}: HTTP 404"


NOW = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "Tue, 01 Jan 2030 12:00:30 GMT"}, 30),
        ({"retry-after": "7", "ratelimit-reset": str(int(NOW.timestamp()) + 90)}, 7),
        ({"ratelimit-reset": str(int(NOW.timestamp()) + 90)}, 90),
        ({"retry-after": "soon", "ratelimit-reset": str(int(NOW.timestamp()) + 90)}, 90),
        ({"ratelimit-reset": str(int(NOW.timestamp()) - 10)}, 0),
        ({"retry-after": "-5"}, 0),
        ({"retry-after": "nan"}, 60),
        ({"retry-after": "86400"}, 3600),
        ({}, 60),
    ],
)
def test_derives_the_wait_of_a_429_from_the_headers(
    headers: dict[str, str], seconds: float
) -> None:
    assert retry_after_seconds(headers=headers, now=NOW) == seconds


def test_decides_which_errors_the_client_retries_in_one_place() -> None:
    retryable = {
        error_class: error_class.retryable
        for error_class in (
            DigitalOceanError,
            UnauthorizedError,
            NotFoundError,
            RateLimitedError,
            ServerError,
            TransportError,
            InvalidResponseError,
        )
    }

    assert retryable == {
        DigitalOceanError: False,
        UnauthorizedError: False,
        NotFoundError: False,
        RateLimitedError: True,
        ServerError: True,
        TransportError: True,
        InvalidResponseError: False,
    }


# --- httpx exceptions ---------------------------------------------------------------------------

HTTPX_TRANSPORT_ERRORS = [
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.PoolTimeout,
    httpx.TimeoutException,
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.CloseError,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,
    httpx.ProtocolError,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.TransportError,
]
HTTPX_OTHER_REQUEST_ERRORS = [httpx.DecodingError, httpx.TooManyRedirects, httpx.RequestError]


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    subclass: type
    for subclass in cls.__subclasses__():
        found |= {subclass, *_subclasses(subclass)}
    return found


def test_the_lists_below_cover_every_error_httpx_raises_for_a_request() -> None:
    assert {httpx.RequestError, *_subclasses(httpx.RequestError)} == {
        *HTTPX_TRANSPORT_ERRORS,
        *HTTPX_OTHER_REQUEST_ERRORS,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("httpx_error", HTTPX_TRANSPORT_ERRORS)
async def test_maps_every_transport_failure_to_a_transport_error(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean, httpx_error: type[Exception]
) -> None:
    original = httpx_error("boom")
    digitalocean.script(original)

    with pytest.raises(TransportError) as raised:
        await fetch(single_shot)

    assert raised.value.__cause__ is original
    assert raised.value.status is None
    assert httpx_error.__name__ in str(raised.value)
    assert str(raised.value).startswith(f"GET {KUBECONFIG_PATH}: ")


@pytest.mark.asyncio
async def test_says_a_timeout_timed_out(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(httpx.ReadTimeout("boom"))

    with pytest.raises(TransportError, match=r"timed out \(ReadTimeout\)$"):
        await fetch(single_shot)


@pytest.mark.asyncio
@pytest.mark.parametrize("httpx_error", HTTPX_OTHER_REQUEST_ERRORS)
async def test_maps_other_request_failures_to_an_invalid_response(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean, httpx_error: type[Exception]
) -> None:
    original = httpx_error("boom")
    digitalocean.script(original)

    with pytest.raises(
        InvalidResponseError, match=f"unreadable response \\({httpx_error.__name__}"
    ):
        await fetch(single_shot)


class _BrokenStream(httpx.AsyncByteStream):
    """A body that breaks off after its first bytes, as a dropped connection does."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"apiVersion: v1\n"
        raise httpx.ReadError("connection reset")


class _RawStream(httpx.AsyncByteStream):
    """A body handed over as is, so that httpx decodes it only when the client reads it."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._content


@pytest.mark.asyncio
async def test_maps_a_failure_while_reading_the_body(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        lambda request: httpx.Response(
            200, stream=_BrokenStream(), headers={"content-type": "application/yaml"}
        )
    )

    with pytest.raises(TransportError, match=r"\(ReadError\)"):
        await fetch(single_shot)


@pytest.mark.asyncio
async def test_maps_a_body_that_fails_to_decompress(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        lambda request: httpx.Response(
            200,
            stream=_RawStream(b"not gzip at all"),
            headers={"content-type": "application/yaml", "content-encoding": "gzip"},
        )
    )

    with pytest.raises(InvalidResponseError, match=r"\(DecodingError\)") as raised:
        await fetch(single_shot)

    assert isinstance(raised.value.__cause__, httpx.DecodingError)


# --- bodies that do not decode ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"kubernetes_clusters": [', "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not UTF-8 (at byte offset 0)"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not valid JSON"),
        (b"", "body is not valid JSON"),
    ],
)
async def test_maps_a_json_body_that_does_not_decode(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean, body: bytes, reason: str
) -> None:
    digitalocean.script(
        httpx.Response(200, content=body, headers={"content-type": "application/json"})
    )

    with pytest.raises(InvalidResponseError) as raised:
        await single_shot.list_clusters(token=API_TOKEN)

    assert str(raised.value) == f"GET /v2/kubernetes/clusters: {reason}"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"clusters: [", "not valid YAML"),
        (b"\xc3\x28", "not UTF-8"),
        (b"[" * 100_000, "not valid YAML"),  # deeper than libyaml allows
        (b"[" * 100, "nested too deeply"),
    ],
)
async def test_maps_a_kubeconfig_body_that_does_not_decode(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean, body: bytes, reason: str
) -> None:
    digitalocean.script(kubeconfig_response(body))

    with pytest.raises(InvalidResponseError, match=f"invalid kubeconfig: {reason}"):
        await fetch(single_shot)


# --- nothing leaks ------------------------------------------------------------------------------

SECRETS = (API_TOKEN, KUBECONFIG_TOKEN, BODY_TEXT)


def _kubeconfig_with_token_on_a_broken_line(kubeconfig_bytes: bytes) -> bytes:
    return kubeconfig_bytes.replace(
        f"token: {KUBECONFIG_TOKEN}".encode(), f"token: {KUBECONFIG_TOKEN}: {BODY_TEXT}".encode()
    )


FAILURES: list[Any] = [
    pytest.param(lambda kc: error_response(401, "unauthorized"), id="401"),
    pytest.param(lambda kc: error_response(403, "forbidden"), id="403"),
    pytest.param(lambda kc: error_response(404, "not_found"), id="404"),
    pytest.param(lambda kc: error_response(429, "too_many_requests"), id="429"),
    pytest.param(lambda kc: error_response(500, "server_error"), id="500"),
    pytest.param(lambda kc: error_response(418, "teapot"), id="418"),
    pytest.param(
        lambda kc: json_response(400, {"id": "bad_request", "message": f"bad {API_TOKEN}"}),
        id="400-echoing-the-token",
    ),
    pytest.param(
        lambda kc: json_response(422, {"id": "x", "message": f"bad {API_TOKEN[7:20]} here"}),
        id="422-echoing-part-of-the-token",
    ),
    pytest.param(lambda kc: httpx.Response(502, content=BODY_TEXT.encode()), id="502-text"),
    pytest.param(lambda kc: httpx.ConnectError("boom"), id="connect-error"),
    pytest.param(lambda kc: httpx.ReadTimeout("boom"), id="read-timeout"),
    pytest.param(lambda kc: kubeconfig_response(b"\xff" + kc), id="not-utf8"),
    pytest.param(
        lambda kc: kubeconfig_response(_kubeconfig_with_token_on_a_broken_line(kc)), id="bad-yaml"
    ),
    pytest.param(
        lambda kc: kubeconfig_response(kc.replace(b"token:", b"exec: {}\n    token:")), id="exec"
    ),
    pytest.param(
        lambda kc: kubeconfig_response(kc, **{"content-type": "application/json"}), id="json-type"
    ),
    pytest.param(
        lambda kc: kubeconfig_response(kc, **{"content-type": KUBECONFIG_TOKEN}), id="odd-type"
    ),
]


def _all_text_of(error: BaseException) -> str:
    """Everything a log line with ``exc_info`` would show, plus each exception's repr."""
    texts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen)]
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(texts)


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize("failure", FAILURES)
async def test_failures_never_show_the_token_or_the_body(
    make_client: MakeClient,
    digitalocean: FakeDigitalOcean,
    kubeconfig_bytes: bytes,
    failure: Callable[[bytes], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(retry_policy=RetryPolicy(attempts=3, max_rate_limit_wait=3600))
    digitalocean.script(failure(kubeconfig_bytes))

    with pytest.raises(DigitalOceanError) as raised:
        await fetch(client)

    text = _all_text_of(raised.value) + caplog.text
    for secret in SECRETS:
        assert secret not in text
    assert caplog.records, "the client logs its requests at DEBUG"


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_logs_requests_without_the_token(
    client: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    kubeconfig_bytes: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    await client.fetch_kubeconfig(token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=600)

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("doks_access")]
    assert ours == [f"GET {KUBECONFIG_PATH}?type=token&expiry_seconds=600 -> 200 in 0.000s"]
    for secret in (API_TOKEN, KUBECONFIG_TOKEN, "Bearer"):
        assert secret not in caplog.text


# An API token of DigitalOcean's legacy shape (64 hex digits, no `dop_v1_` prefix; such tokens
# still work) and a credential-looking string the client cannot know: both are plain identifier
# characters, so only their shape, or knowing the token, keeps them out of a message.
LEGACY_TOKEN = "7f3a9c1e5b2d8f4a6c0e9b3d7a1f5c2e8b4d0a6f3c9e1b7d5a2f8c4e0b6d9a3f"
TOKEN_LOOKING = "c0ffee5eed1234567890abcdef1234567890abcdef12345678"

ECHOES: list[Any] = [
    pytest.param(lambda: json_response(401, {"id": LEGACY_TOKEN}), id="401-id-is-the-token"),
    pytest.param(
        lambda: json_response(401, {"id": "unauthorized", "request_id": LEGACY_TOKEN}),
        id="401-request-id-is-the-token",
    ),
    pytest.param(
        lambda: json_response(401, {"id": LEGACY_TOKEN[:40]}), id="401-id-is-half-the-token"
    ),
    pytest.param(
        lambda: json_response(403, {"id": f"bad:{LEGACY_TOKEN[8:30]}"}),
        id="403-id-quotes-the-token",
    ),
    pytest.param(
        lambda: httpx.Response(500, content=b"oops", headers={"x-request-id": LEGACY_TOKEN}),
        id="500-request-id-header-is-the-token",
    ),
    pytest.param(
        lambda: json_response(500, {"id": TOKEN_LOOKING, "request_id": TOKEN_LOOKING}),
        id="500-token-looking-ids",
    ),
    pytest.param(
        lambda: kubeconfig_response(b"a: b", **{"content-type": f"application/{LEGACY_TOKEN}"}),
        id="content-type-is-the-token",
    ),
    pytest.param(
        lambda: kubeconfig_response(b"a: b", **{"content-type": f"text/{TOKEN_LOOKING}"}),
        id="token-looking-content-type",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("reply", ECHOES)
async def test_an_answer_that_echoes_the_token_or_looks_like_a_credential_is_not_quoted(
    single_shot: DigitalOceanClient,
    digitalocean: FakeDigitalOcean,
    reply: Callable[[], httpx.Response],
) -> None:
    digitalocean.script(reply())

    with pytest.raises(DigitalOceanError) as raised:
        await single_shot.fetch_kubeconfig(
            token=LEGACY_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None
        )

    text = _all_text_of(raised.value)
    for secret in (LEGACY_TOKEN, TOKEN_LOOKING):
        slices = {secret[i : i + 12] for i in range(len(secret) - 11)}
        assert not [s for s in slices if s in text], f"{type(raised.value).__name__} quotes it"
    assert str(raised.value).startswith(f"GET {KUBECONFIG_PATH}: ")


@pytest.mark.asyncio
async def test_plain_error_and_request_ids_are_still_quoted(
    single_shot: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    request_id = "a4c0e0a6-0c4a-4f1b-9c55-0b1c9a0e2f3d"
    digitalocean.script(json_response(418, {"id": "teapot", "request_id": request_id}))

    with pytest.raises(InvalidResponseError) as raised:
        await single_shot.fetch_kubeconfig(
            token=LEGACY_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=None
        )

    assert str(raised.value) == (
        f"GET {KUBECONFIG_PATH}: HTTP 418 teapot (request {request_id}): unexpected status"
    )
