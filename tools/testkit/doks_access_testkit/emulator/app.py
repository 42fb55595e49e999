"""The DigitalOcean API itself: the four DOKS endpoints the operator uses, as documented.

Every answer, errors included, carries ``ratelimit-limit``, ``ratelimit-remaining``,
``ratelimit-reset`` and an ``x-request-id``; errors are JSON ``{"id", "message", "request_id"}``
with the ids and messages of the OpenAPI examples (the realism quirks of :mod:`.quirks` can take
the request ids away). One middleware runs each request through the same steps as the real
service, and is where faults strike:

1. network faults (latency, then drop or hang);
2. authentication (401), then the token's rate-limit windows (429, not counted when refused);
3. injected status faults (they count against the rate limit, like real upstream errors);
4. the token's scopes (403), then the endpoint itself (404, 400, 422 for a token from a cluster
   that requires SSO, 200 with body faults).

Scopes also shape answers: a cluster's ``tags`` are shown only to a token with ``tag:read``.

The 422 of an SSO-required cluster (``sso_refusal="api"``) is a model: DigitalOcean does not
document what it answers there, so the status, id and message are this emulator's choice of a
plausible, DigitalOcean-shaped refusal, not an observation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from doks_access_testkit.emulator import admin, kubeconfigs, listing
from doks_access_testkit.emulator.core import Emulation
from doks_access_testkit.emulator.ratelimit import RateDecision
from doks_access_testkit.emulator.state import (
    KUBERNETES_ACCESS_CLUSTER,
    KUBERNETES_READ,
    TAG_READ,
    ApiToken,
    Cluster,
)

EMULATION = web.AppKey("emulation", Emulation)
_API_TOKEN = web.RequestKey("api_token", ApiToken)
_QUIRKS = web.RequestKey("quirks", frozenset)
_HANG_POLL_SECONDS = 0.05

SCOPES = {
    "list_clusters": KUBERNETES_READ,
    "get_cluster": KUBERNETES_READ,
    "kubeconfig": KUBERNETES_ACCESS_CLUSTER,
    "credentials": KUBERNETES_ACCESS_CLUSTER,
}
ERRORS = {
    400: ("bad_request", "error parsing request"),
    401: ("unauthorized", "Unable to authenticate you."),
    403: ("forbidden", "You do not have permission to perform this action."),
    404: ("not_found", "The resource you requested could not be found."),
    422: ("unprocessable_entity", "The request could not be processed."),
    429: ("too_many_requests", "API rate limit exceeded."),
    500: ("server_error", "Unexpected server-side error"),
    503: ("service_unavailable", "The service is temporarily unavailable. Please try again later."),
}

# Not documented by DigitalOcean (see the module docstring): a model of a clear refusal.
SSO_REQUIRED_MESSAGE = (
    "This cluster requires SSO authentication, so token credentials are not available for it;"
    " use an SSO kubeconfig (type=sso) instead."
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Ends a request with a DigitalOcean-style error answer."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or _error_text(status)[1])
        self.status = status
        self.message = message


def create_api_app(emulation: Emulation) -> web.Application:
    app = web.Application(middlewares=[_middleware])
    app[EMULATION] = emulation
    app.router.add_get("/v2/kubernetes/clusters", _list_clusters, name="list_clusters")
    app.router.add_get("/v2/kubernetes/clusters/{cluster_id}", _get_cluster, name="get_cluster")
    # No HEAD on these two: every answer mints a credential, and a HEAD must not.
    app.router.add_get(
        "/v2/kubernetes/clusters/{cluster_id}/kubeconfig",
        _get_kubeconfig,
        name="kubeconfig",
        allow_head=False,
    )
    app.router.add_get(
        "/v2/kubernetes/clusters/{cluster_id}/credentials",
        _get_credentials,
        name="credentials",
        allow_head=False,
    )
    admin.add_routes(app, emulation_key=EMULATION)
    return app


def error_response(
    status: int, *, request_id: str | None, message: str | None = None
) -> web.Response:
    """A DigitalOcean error body; ``request_id=None`` leaves the (optional) key out."""
    error_id, default_message = _error_text(status)
    body = {"id": error_id, "message": message or default_message}
    if request_id is not None:
        body["request_id"] = request_id
    return _json(body, status=status)


# -- the request pipeline --------------------------------------------------------------------------


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if admin.is_admin_path(request.path):
        return await handler(request)
    emulation = request.app[EMULATION]
    endpoint = request.match_info.route.name or "other"
    network = emulation.faults.take_network(endpoint)
    if network.delay > 0:
        await asyncio.sleep(network.delay)
    if network.action == "drop":
        emulation.stats.record(endpoint=endpoint, outcome="dropped")
        return _drop(request)
    if network.action == "hang":
        # Counted once, as hung, even if a change of faults later lets it answer.
        emulation.stats.record(endpoint=endpoint, outcome="hung")
        if not await _hang(emulation, seconds=network.hang_seconds):
            return _drop(request)
        return await _answer(request, handler, emulation, endpoint)
    response = await _answer(request, handler, emulation, endpoint)
    token = request.get(_API_TOKEN)
    account = token.account if isinstance(token, ApiToken) else None
    emulation.stats.record(endpoint=endpoint, outcome=str(response.status), account=account)
    return response


async def _answer(
    request: web.Request, handler: Handler, emulation: Emulation, endpoint: str
) -> web.StreamResponse:
    request_id = str(uuid.uuid4())
    quirks = emulation.quirks  # one snapshot for the whole request
    shown_id = None if "no_request_id_in_errors" in quirks else request_id
    header_id = None if "no_x_request_id" in quirks else request_id
    now = emulation.clock()
    token = emulation.state.authenticate(_bearer(request))
    if token is None:
        rate = emulation.limiter.peek(f"anonymous:{request.remote}", now=now)
        return _finish(error_response(401, request_id=shown_id), rate, header_id)
    request[_API_TOKEN] = token  # every answer from here on counts for the token's account
    rate = emulation.limiter.hit(token.token, now=now)
    if not rate.allowed:
        return _finish(error_response(429, request_id=shown_id), rate, header_id)
    injected = emulation.faults.take_status(endpoint)
    if injected is not None:
        if injected.error_status == 429:
            rate = dataclasses.replace(rate, remaining=0, retry_after=injected.retry_after)
        refusal = error_response(
            injected.error_status, request_id=shown_id, message=injected.message
        )
        return _finish(refusal, rate, header_id)
    required = SCOPES.get(endpoint)
    if required is not None and required not in token.scopes:
        return _finish(error_response(403, request_id=shown_id), rate, header_id)
    request[_QUIRKS] = quirks
    response: web.StreamResponse
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, request_id=shown_id, message=exc.message)
    except web.HTTPException as exc:  # no such route (404) or method (405)
        response = error_response(exc.status, request_id=shown_id)
    return _finish(response, rate, header_id)


def _finish(
    response: web.StreamResponse, rate: RateDecision, request_id: str | None
) -> web.StreamResponse:
    response.headers.update(rate.headers())
    if request_id is not None:
        response.headers["x-request-id"] = request_id
    return response


def _bearer(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def _drop(request: web.Request) -> web.Response:
    """Close the connection without a byte of answer; the returned response is never sent."""
    request.protocol.force_close()
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


async def _hang(emulation: Emulation, *, seconds: float) -> bool:
    """Wait; True once the faults were changed (released), False at the deadline or shutdown."""
    loop = asyncio.get_running_loop()
    generation = emulation.faults.generation
    deadline = loop.time() + seconds
    while loop.time() < deadline and not emulation.stopping:
        if emulation.faults.generation != generation:
            return True
        await asyncio.sleep(_HANG_POLL_SECONDS)
    return False


# -- the endpoints ---------------------------------------------------------------------------------


async def _list_clusters(request: web.Request) -> web.Response:
    emulation, token = request.app[EMULATION], _token(request)
    try:
        page, per_page = listing.parse_page(request.query)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    clusters = emulation.state.clusters(account=token.account)
    url = str(request.url.with_query(None))
    items, links = listing.paginate(clusters, page=page, per_page=per_page, url=url)
    answer = {
        "kubernetes_clusters": [
            listing.cluster_resource(c, show_tags=TAG_READ in token.scopes) for c in items
        ],
        "links": links,
        "meta": {"total": len(clusters)},
    }
    if not links and "no_links_on_single_page" in request[_QUIRKS]:
        del answer["links"]
    faults = emulation.faults.take_body("list_clusters")
    if not faults:
        return _json(answer)
    # A hostile listing: the test's own body, or JSON cut in the middle.
    body = kubeconfigs.break_bytes(json.dumps(answer).encode(), faults, yaml_body=False)
    return _body_response(body, kubeconfigs.content_type(faults, default="application/json"))


async def _get_cluster(request: web.Request) -> web.Response:
    show_tags = TAG_READ in _token(request).scopes
    return _json(
        {"kubernetes_cluster": listing.cluster_resource(_cluster(request), show_tags=show_tags)}
    )


async def _get_kubeconfig(request: web.Request) -> web.Response:
    emulation, cluster = request.app[EMULATION], _cluster(request)
    lifetime = _lifetime(request)
    try:
        kind = kubeconfigs.parse_credential_type(request.query.get("type"), cluster=cluster)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    if kind == "token" and cluster.refuses_tokens_at_api:
        raise ApiError(422, SSO_REQUIRED_MESSAGE)
    faults = emulation.faults.take_body("kubeconfig")
    backend = emulation.backend
    server, ca_pem = backend.server_for(cluster), backend.ca_pem
    if kind == "sso":
        user = kubeconfigs.exec_user(cluster)
    else:
        issued = emulation.issue(cluster, lifetime=lifetime)
        server, ca_pem = issued.server, issued.ca_pem
        if issued.certificate is not None:
            user = kubeconfigs.certificate_user(issued.certificate)
        else:
            user = kubeconfigs.token_user(issued.credential.token or "")
    document = kubeconfigs.kubeconfig_document(
        cluster=cluster, server=server, ca_pem=ca_pem, user=user
    )
    document = kubeconfigs.break_kubeconfig(document, faults, cluster=cluster)
    body = kubeconfigs.break_bytes(kubeconfigs.render_yaml(document), faults, yaml_body=True)
    return _body_response(body, kubeconfigs.content_type(faults, default="application/yaml"))


async def _get_credentials(request: web.Request) -> web.Response:
    emulation, cluster = request.app[EMULATION], _cluster(request)
    lifetime = _lifetime(request)
    if cluster.refuses_tokens_at_api:
        raise ApiError(422, SSO_REQUIRED_MESSAGE)
    faults = emulation.faults.take_body("credentials")
    issued = emulation.issue(cluster, lifetime=lifetime)
    document = kubeconfigs.credentials_document(
        server=issued.server,
        ca_pem=issued.ca_pem,
        credential=issued.credential,
        certificate=issued.certificate,
    )
    document = kubeconfigs.break_credentials(document, faults)
    body = kubeconfigs.break_bytes(json.dumps(document).encode(), faults, yaml_body=False)
    default = "application/json; charset=utf-8"
    return _body_response(body, kubeconfigs.content_type(faults, default=default))


def _lifetime(request: web.Request) -> int:
    """The ``expiry_seconds`` asked for (400 if malformed; 500 for an explicit 0 with the
    ``zero_expiry_500`` quirk)."""
    raw = request.query.get("expiry_seconds")
    try:
        lifetime = kubeconfigs.parse_expiry_seconds(raw)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    if "zero_expiry_500" in request[_QUIRKS] and kubeconfigs.is_explicit_zero(raw):
        raise ApiError(500)
    return lifetime


def _body_response(body: bytes, content_type: str) -> web.Response:
    # A header, not aiohttp's content_type argument: that one refuses parameters and odd values,
    # and a hostile answer's content type is the test's to choose.
    return web.Response(body=body, headers={"Content-Type": content_type})


def _token(request: web.Request) -> ApiToken:
    return request[_API_TOKEN]


def _cluster(request: web.Request) -> Cluster:
    cluster_id = request.match_info["cluster_id"]
    cluster = request.app[EMULATION].state.cluster(cluster_id, account=_token(request).account)
    if cluster is None:
        raise ApiError(404)
    return cluster


def _json(body: Any, *, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _error_text(status: int) -> tuple[str, str]:
    if status in ERRORS:
        return ERRORS[status]
    phrase = http.HTTPStatus(status).phrase
    return phrase.lower().replace(" ", "_").replace("-", "_"), phrase
