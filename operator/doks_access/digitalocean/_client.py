"""The asynchronous DigitalOcean API client: the operator's only way to DigitalOcean.

Everything that can go wrong between us and DigitalOcean is dealt with here, once: the HTTP
exchange (one pooled ``httpx.AsyncClient`` per client, never blocking the event loop), the mapping
of every failure to :mod:`._errors`, short retries (:mod:`._retry`), the per-token rate limit
(:mod:`._ratelimit`), and the validation of what comes back (:mod:`doks_access.kubeconfig`). The
rest of the operator sees typed results or one error hierarchy.

The API token is an argument of every call rather than of the client, because each
``DOClusterAccess`` names its own token Secret; the client is built once at start-up and shared.
The token goes into the ``Authorization`` header and nowhere else: not into logs, messages,
or the rate limiter's keys (those are hashes).

The one seam for tests is ``transport``: ``httpx.MockTransport(handler)`` replaces the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import logging
import random
import re
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, Self, TypeVar

import httpx

from doks_access import __version__, kubeconfig
from doks_access.digitalocean._clusters import (
    Cluster,
    ClusterPage,
    MalformedClusterError,
    is_cluster_id,
    parse_cluster,
    parse_cluster_page,
)
from doks_access.digitalocean._errors import (
    InvalidResponseError,
    RateLimitedError,
    TransportError,
    error_for_status,
    quotable,
)
from doks_access.digitalocean._ratelimit import (
    RateLimiter,
    RateLimits,
    ServerQuota,
    Waiting,
    token_key,
)
from doks_access.digitalocean._retry import RetryPolicy, call_with_retries
from doks_access.tokens import is_usable_token

__all__ = [
    "CLUSTERS_PER_PAGE",
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_BYTES",
    "USER_AGENT",
    "DigitalOceanClient",
    "ResponseObserver",
    "Timeouts",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.digitalocean.com"
USER_AGENT = f"doks-access-operator/{__version__}"
CLUSTERS_PATH = "/v2/kubernetes/clusters"
CLUSTERS_PER_PAGE = 200  # the API's maximum: the fewest requests to list everything
# 100,000 clusters; a listing that goes on longer is a server that keeps saying "next".
MAX_CLUSTER_PAGES = 500
# Far above any real answer (a full page of clusters is well under 1 MiB); a bigger body is a
# fault, and reading it whole would only cost memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class _Expected:
    """The media type we ask for, and the ones we accept as meaning it."""

    accept: str
    media_types: frozenset[str]


_JSON = _Expected(accept="application/json", media_types=frozenset({"application/json"}))
_YAML = _Expected(
    accept="application/yaml",
    media_types=frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}),
)
_MEDIA_TYPE = re.compile(r"[a-z0-9.+-]{1,64}/[a-z0-9.+-]{1,64}")


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of one HTTP request (see ``httpx.Timeout``)."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 10.0
    pool: float = 10.0  # waiting for a free connection in the pool

    def as_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRY_POLICY = RetryPolicy()
DEFAULT_RATE_LIMITS = RateLimits()


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class _Reply:
    """A successful (2xx) answer, read whole, and when its request was sent."""

    what: str  # "GET /v2/...", for messages
    body: bytes
    sent_at: datetime.datetime


class DigitalOceanClient:
    """DigitalOcean's Kubernetes API, as the operator needs it. Use as an async context manager."""

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_limits: RateLimits = DEFAULT_RATE_LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        observer: ResponseObserver | None = None,
        wall_clock: Callable[[], datetime.datetime] = _utc_now,
        rng: random.Random | None = None,
        waiting: Waiting | None = None,
    ) -> None:
        """``wall_clock`` (aware datetimes) dates credentials; ``rng`` draws the retry jitter.

        ``verify`` is an SSL context trusting a private CA (an API proxy, the emulator); it has no
        effect when a ``transport`` is given, which brings its own. ``waiting`` is entered around
        every wait for the rate limit or between retries (the operator's ``dispatch.parked``).
        """
        self._http = httpx.AsyncClient(
            base_url=_checked_base_url(base_url),
            timeout=timeouts.as_httpx(),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            verify=verify,
            follow_redirects=False,  # a redirect could carry the token to another host
        )
        self._retry_policy = retry_policy
        self._waiting = waiting
        self._limiter = RateLimiter(
            limits=rate_limits, **({} if waiting is None else {"waiting": waiting})
        )
        self._wall_clock = wall_clock
        self._observer = observer
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def fetch_kubeconfig(
        self, *, token: str, cluster_id: str, expiry_seconds: int | None
    ) -> kubeconfig.Credential:
        """Mint a credential for the cluster: one kubeconfig, validated, dated from its request.

        ``expiry_seconds`` ``None`` or 0 asks for DigitalOcean's default lifetime (7 days).
        """
        token = _checked_token(token)
        path = f"{_cluster_path(cluster_id)}/kubeconfig"
        params = _kubeconfig_params(expiry_seconds)

        async def attempt() -> kubeconfig.Credential:
            reply = await self._request(token=token, path=path, params=params, expected=_YAML)
            try:
                return kubeconfig.parse_kubeconfig(
                    reply.body, issued_at=reply.sent_at, expiry_seconds=expiry_seconds
                )
            except kubeconfig.InvalidKubeconfigError as exc:
                raise InvalidResponseError(f"{reply.what}: {exc}") from exc

        return await self._with_retries(attempt, what=f"GET {path}")

    async def get_cluster(self, *, token: str, cluster_id: str) -> Cluster:
        """The cluster with this ID."""
        token = _checked_token(token)
        path = _cluster_path(cluster_id)
        body = await self._get_json(token=token, path=path, params={})
        cluster = _parsed(parse_cluster, body.get("kubernetes_cluster"), what=f"GET {path}")
        if cluster.id.lower() != cluster_id.lower():
            raise InvalidResponseError(f"GET {path}: the answer is about another cluster")
        return cluster

    async def list_clusters(self, *, token: str) -> tuple[Cluster, ...]:
        """Every cluster the token can see, across all pages, each once."""
        token = _checked_token(token)
        found: dict[str, Cluster] = {}
        for page_number in range(1, MAX_CLUSTER_PAGES + 1):
            page = await self._cluster_page(token=token, page_number=page_number)
            for cluster in page.clusters:
                # A cluster created or deleted mid-listing shifts the pages; keep the first copy.
                found.setdefault(cluster.id, cluster)
            if _is_last_page(page, seen=len(found)):
                if page.total is not None and len(found) < page.total:
                    # Fewer clusters than the listing itself counts: a listing cut short must not
                    # read as clusters gone (a set would remove their credentials).
                    raise InvalidResponseError(
                        f"GET {CLUSTERS_PATH}: the listing ended after {len(found)} of "
                        f"{page.total} clusters"
                    )
                return tuple(found.values())
        raise InvalidResponseError(f"GET {CLUSTERS_PATH}: more than {MAX_CLUSTER_PAGES} pages")

    async def _cluster_page(self, *, token: str, page_number: int) -> ClusterPage:
        # We ask for the next page by number rather than following `links.pages.next`: the token
        # must never go to a URL that a response chose.
        params = {"page": str(page_number), "per_page": str(CLUSTERS_PER_PAGE)}
        body = await self._get_json(token=token, path=CLUSTERS_PATH, params=params)
        return _parsed(parse_cluster_page, body, what=f"GET {CLUSTERS_PATH}")

    async def _get_json(
        self, *, token: str, path: str, params: Mapping[str, str]
    ) -> Mapping[str, Any]:
        async def attempt() -> Mapping[str, Any]:
            reply = await self._request(token=token, path=path, params=params, expected=_JSON)
            return _json_object(reply)

        return await self._with_retries(attempt, what=f"GET {path}")

    async def _with_retries(self, operation: Callable[[], Awaitable[T]], *, what: str) -> T:
        return await call_with_retries(
            operation, policy=self._retry_policy, rng=self._rng, what=what, waiting=self._waiting
        )

    async def _request(
        self, *, token: str, path: str, params: Mapping[str, str], expected: _Expected
    ) -> _Reply:
        """One attempt: wait for the rate limit, send, read, and raise for anything but 2xx."""
        what = f"GET {path}"
        slot = await self._limiter.acquire(token=token)
        loop = asyncio.get_running_loop()
        sent_at = self._wall_clock()  # before sending: expiry counts from here (DESIGN 4.1)
        started = loop.time()
        try:
            response, body = await self._send(
                what=what,
                path=path,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": expected.accept},
            )
        except (TransportError, InvalidResponseError):
            if self._observer is not None:
                self._observer.response(
                    endpoint=_endpoint(path),
                    code="none",  # no answer, or one that could not be read
                    seconds=loop.time() - started,
                    token_key=token_key(token)[:12],
                    remaining=None,
                )
            raise
        finally:
            self._limiter.settle(token=token, sent=slot)
        received_at = self._wall_clock()
        quota = ServerQuota.from_headers(response.headers, now_epoch=received_at.timestamp())
        if self._observer is not None:
            self._observer.response(
                endpoint=_endpoint(path),
                code=str(response.status_code),
                seconds=loop.time() - started,
                token_key=token_key(token)[:12],
                remaining=quota.remaining if quota is not None else None,
            )
        logger.debug(
            "%s -> %d in %.3fs",
            _loggable(what, params),
            response.status_code,
            loop.time() - started,
        )
        # A 429's own wait (below) says how long to hold back; its quota headers would block for
        # the hour on a burst-limit 429, whose "remaining: 0" is about the minute.
        if quota is not None and response.status_code != 429:
            self._limiter.observe(token=token, quota=quota)
        if not response.is_success:
            error = error_for_status(
                what=what,
                status=response.status_code,
                headers=response.headers,
                body=body,
                now=received_at,
                token=token,
            )
            if isinstance(error, RateLimitedError):
                self._limiter.pause(token=token, seconds=error.retry_after)
            raise error
        _require_media_type(response.headers, expected=expected, what=what, token=token)
        return _Reply(what=what, body=body, sent_at=sent_at)

    async def _send(
        self, *, what: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[httpx.Response, bytes]:
        """The boundary: every httpx exception becomes one of ours here, and only here."""
        try:
            async with self._http.stream("GET", path, params=params, headers=headers) as response:
                body = await _read_capped(response, what=what)
        except httpx.TransportError as exc:
            logger.debug("%s failed: %s", _loggable(what, params), type(exc).__name__)
            raise TransportError(f"{what}: {_describe_transport_error(exc)}") from exc
        except httpx.HTTPError as exc:  # DecodingError, TooManyRedirects, and any newcomer
            logger.debug("%s failed: %s", _loggable(what, params), type(exc).__name__)
            raise InvalidResponseError(
                f"{what}: unreadable response ({type(exc).__name__})"
            ) from exc
        return response, body


async def _read_capped(response: httpx.Response, *, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise InvalidResponseError(f"{what}: response larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe_transport_error(error: httpx.TransportError) -> str:
    # The class says what happened; httpx's message may quote proxy URLs or socket details.
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    return f"transport error ({type(error).__name__})"


def _endpoint(path: str) -> str:
    """The endpoint's name for metrics: a fixed set, never the cluster ID in the path."""
    if path == CLUSTERS_PATH:
        return "list_clusters"
    return "kubeconfig" if path.endswith("/kubeconfig") else "get_cluster"


class ResponseObserver(Protocol):
    """Told about every request's outcome (for metrics); must not block."""

    def response(
        self, *, endpoint: str, code: str, seconds: float, token_key: str, remaining: int | None
    ) -> None: ...


def _kubeconfig_params(expiry_seconds: int | None) -> dict[str, str]:
    if expiry_seconds is not None and (isinstance(expiry_seconds, bool) or expiry_seconds < 0):
        raise ValueError("expiry_seconds must be a non-negative integer or None")
    # `type=token` always: an SSO cluster would otherwise answer with an `exec` kubeconfig that
    # needs doctl, which workloads cannot run.
    params = {"type": "token"}
    # 0 is never sent: it means the default anyway, and a client that sent it got 500s.
    if expiry_seconds:
        params["expiry_seconds"] = str(expiry_seconds)
    return params


def _cluster_path(cluster_id: str) -> str:
    # The ID goes into the URL path: anything but a UUID could walk to another endpoint.
    if not is_cluster_id(cluster_id):
        raise ValueError("cluster_id is not a UUID")
    return f"{CLUSTERS_PATH}/{cluster_id.lower()}"


def _checked_token(token: str) -> str:
    # Tokens pasted into Secrets often end with a newline; the header cannot carry it.
    token = token.strip()
    if not is_usable_token(token):
        raise ValueError("the API token is empty or has characters an HTTP header cannot carry")
    return token


def _checked_base_url(base_url: str) -> httpx.URL:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError("base_url is not a valid URL") from exc
    # Plain http would send the token in the clear; it is only allowed for a local emulator.
    if url.scheme == "https" or (url.scheme == "http" and _is_loopback(url.host)):
        return url
    raise ValueError("base_url must be https:// (http:// only on a loopback address)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_last_page(page: ClusterPage, *, seen: int) -> bool:
    if not page.has_next or not page.clusters:
        return True
    return page.total is not None and seen >= page.total


def _require_media_type(
    headers: httpx.Headers, *, expected: _Expected, what: str, token: str
) -> None:
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in expected.media_types:
        return
    if not _MEDIA_TYPE.fullmatch(media_type):
        shown = "a malformed one"
    elif not quotable(media_type, token=token.lower()):  # compared as the header was: lower case
        shown = "one that looks like a credential"
    else:
        shown = repr(media_type)
    raise InvalidResponseError(f"{what}: unexpected content type {shown}")


def _json_object(reply: _Reply) -> Mapping[str, Any]:
    try:
        text = reply.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # `from None`: the decode error's repr carries the whole body.
        raise InvalidResponseError(
            f"{reply.what}: body is not UTF-8 (at byte offset {exc.start})"
        ) from None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidResponseError(f"{reply.what}: body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidResponseError(f"{reply.what}: body is not a JSON object")
    return value


def _parsed(parser: Callable[[Any], T], value: Any, *, what: str) -> T:
    try:
        return parser(value)
    except MalformedClusterError as exc:
        raise InvalidResponseError(f"{what}: {exc}") from exc


def _loggable(what: str, params: Mapping[str, str]) -> str:
    # Only our own parameters are ever here (type, expiry_seconds, page): none of them is secret.
    return f"{what}?{urllib.parse.urlencode(params)}" if params else what
