"""The emulator's own control surface, ``/_emulator/...``, for tests and people driving it by hand.

It lives next to the API on the same port but is not part of DigitalOcean's: requests need the
*admin* token (never an API token), are not rate limited and not counted. It changes faults at
run time, reads and resets the counters, adds, changes and removes clusters (so that a test can
change the account under a running operator), adds tokens, lists the credentials issued so
far (ids, identities and expiries; the secret tokens are only available in Python), revokes bearer
tokens, and turns realism quirks on and off.

    GET    /_emulator/health              no token needed
    GET    /_emulator/faults              POST a fault (or {"faults": [...]}); DELETE clears all
    DELETE /_emulator/faults/{id}
    GET    /_emulator/stats               DELETE resets the counters
    DELETE /_emulator/ratelimits          forget every counted request
    GET    /_emulator/clusters            POST a cluster (see config.cluster_from_dict), or
                                          {"clusters": [...]} to add many at once
    PATCH  /_emulator/clusters/{id}       any of {"name", "tags", "status", "region",
                                          "max_lifetime" (0: no cap), "sso", "sso_required",
                                          "sso_issuer_url", "sso_client_id", "sso_refusal"}
    DELETE /_emulator/clusters/{id}       gone from the API; its bearer tokens stop working
    POST   /_emulator/clusters/{id}/revoke   revoke its bearer tokens -> {"revoked": n}
    POST   /_emulator/tokens              {"token"?, "account"?, "scopes"?}
    GET    /_emulator/credentials         ?cluster_id=... to filter
    POST   /_emulator/credentials/revoke  {"token": "..."}: revoke one bearer token
    GET    /_emulator/quirks              {"quirks": [...active], "known": [...]}
    PUT    /_emulator/quirks              {"quirks": [...]}: exactly these from now on
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from doks_access_testkit.emulator import listing
from doks_access_testkit.emulator.clock import rfc3339_nanoseconds
from doks_access_testkit.emulator.config import (
    cluster_changes_from_dict,
    cluster_from_dict,
    parse_scopes,
)
from doks_access_testkit.emulator.core import Emulation
from doks_access_testkit.emulator.faults import Fault
from doks_access_testkit.emulator.quirks import QUIRKS, parse_quirks
from doks_access_testkit.emulator.state import (
    ALL_SCOPES,
    DEFAULT_ACCOUNT,
    ApiToken,
    Cluster,
    InvalidInputError,
    IssuedCredential,
)

PATH_PREFIX = "/_emulator"

Handler = Callable[[Emulation, web.Request], Awaitable[web.Response]]


def add_routes(app: web.Application, *, emulation_key: web.AppKey[Emulation]) -> None:
    def guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def guard(request: web.Request) -> web.Response:
            emulation = request.app[emulation_key]
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(
                token.strip().encode(), emulation.admin_token.encode()
            ):
                return _error(401, "unauthorized", "the admin token is required")
            try:
                return await handler(emulation, request)
            except ValueError as exc:
                return _error(400, "bad_request", str(exc))

        return guard

    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/faults", _list_faults),
        ("POST", "/faults", _add_faults),
        ("DELETE", "/faults", _clear_faults),
        ("DELETE", "/faults/{fault_id}", _remove_fault),
        ("GET", "/stats", _stats),
        ("DELETE", "/stats", _reset_stats),
        ("DELETE", "/ratelimits", _reset_rate_limits),
        ("GET", "/clusters", _list_clusters),
        ("POST", "/clusters", _add_clusters),
        ("PATCH", "/clusters/{cluster_id}", _update_cluster),
        ("DELETE", "/clusters/{cluster_id}", _remove_cluster),
        ("POST", "/clusters/{cluster_id}/revoke", _revoke_cluster),
        ("POST", "/tokens", _add_token),
        ("GET", "/credentials", _credentials),
        ("POST", "/credentials/revoke", _revoke_token),
        ("GET", "/quirks", _quirks),
        ("PUT", "/quirks", _set_quirks),
    ]
    app.router.add_get(f"{PATH_PREFIX}/health", _health)
    for method, path, handler in routes:
        app.router.add_route(method, PATH_PREFIX + path, guarded(handler))


def is_admin_path(path: str) -> bool:
    return path == PATH_PREFIX or path.startswith(PATH_PREFIX + "/")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _list_faults(emulation: Emulation, request: web.Request) -> web.Response:
    return web.json_response({"faults": [f.to_dict() for f in emulation.faults.faults()]})


async def _add_faults(emulation: Emulation, request: web.Request) -> web.Response:
    body = await _body(request)
    entries = body.get("faults", [body]) if isinstance(body, dict) else body
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("expected a fault object, a list of them, or {'faults': [...]}")
    faults = [Fault.from_dict(entry) for entry in entries]  # all valid before any is added
    added = [emulation.faults.add(fault) for fault in faults]
    return web.json_response({"faults": [f.to_dict() for f in added]}, status=201)


async def _clear_faults(emulation: Emulation, request: web.Request) -> web.Response:
    emulation.faults.clear()
    return web.Response(status=204)


async def _remove_fault(emulation: Emulation, request: web.Request) -> web.Response:
    if not emulation.faults.remove(request.match_info["fault_id"]):
        return _error(404, "not_found", "no such fault")
    return web.Response(status=204)


async def _stats(emulation: Emulation, request: web.Request) -> web.Response:
    return web.json_response(
        {"requests": emulation.stats.snapshot(), "total": emulation.stats.count()}
    )


async def _reset_stats(emulation: Emulation, request: web.Request) -> web.Response:
    emulation.stats.reset()
    return web.Response(status=204)


async def _reset_rate_limits(emulation: Emulation, request: web.Request) -> web.Response:
    emulation.limiter.reset()
    return web.Response(status=204)


async def _list_clusters(emulation: Emulation, request: web.Request) -> web.Response:
    return web.json_response(
        {"clusters": [describe_cluster(c) for c in emulation.state.clusters()]}
    )


async def _add_clusters(emulation: Emulation, request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidInputError("expected a cluster object or {'clusters': [...]}")
    if "clusters" not in body:
        cluster = emulation.state.add_cluster(
            cluster_from_dict(body, account=DEFAULT_ACCOUNT), now=emulation.clock()
        )
        return web.json_response({"cluster": describe_cluster(cluster)}, status=201)
    entries = body["clusters"]
    if set(body) != {"clusters"} or not isinstance(entries, list):
        raise InvalidInputError("expected {'clusters': [...]} and nothing else")
    # All parsed before any is added, and added all at once: a bad entry adds none.
    clusters = [
        cluster_from_dict(_object(e, "clusters[]"), account=DEFAULT_ACCOUNT) for e in entries
    ]
    added = emulation.state.add_clusters(clusters, now=emulation.clock())
    return web.json_response({"clusters": [describe_cluster(c) for c in added]}, status=201)


async def _update_cluster(emulation: Emulation, request: web.Request) -> web.Response:
    changes = cluster_changes_from_dict(_object(await _body(request), "the changes"))
    cluster = emulation.state.update_cluster(request.match_info["cluster_id"], **changes)
    if cluster is None:
        return _error(404, "not_found", "no such cluster")
    return web.json_response({"cluster": describe_cluster(cluster)})


async def _remove_cluster(emulation: Emulation, request: web.Request) -> web.Response:
    if not emulation.state.remove_cluster(request.match_info["cluster_id"]):
        return _error(404, "not_found", "no such cluster")
    return web.Response(status=204)


async def _revoke_cluster(emulation: Emulation, request: web.Request) -> web.Response:
    """Revoke every bearer token of the cluster (a certificate-mode cluster is a 400)."""
    if await request.read():
        _only_keys(_object(await _body(request), "the body"), set(), "an empty body")
    try:
        revoked = emulation.state.revoke(cluster_id=request.match_info["cluster_id"])
    except KeyError:
        return _error(404, "not_found", "no such cluster")
    return web.json_response({"revoked": revoked})


async def _revoke_token(emulation: Emulation, request: web.Request) -> web.Response:
    body = _object(await _body(request), "the body")
    _only_keys(body, {"token"}, '{"token": "..."}')
    if not isinstance(body.get("token"), str) or not body["token"]:
        raise InvalidInputError('expected {"token": "..."}, the bearer token to revoke')
    return web.json_response({"revoked": emulation.state.revoke(token=body["token"])})


async def _quirks(emulation: Emulation, request: web.Request) -> web.Response:
    return web.json_response({"quirks": sorted(emulation.quirks), "known": list(QUIRKS)})


async def _set_quirks(emulation: Emulation, request: web.Request) -> web.Response:
    body = _object(await _body(request), "the body")
    _only_keys(body, {"quirks"}, '{"quirks": [...]}')
    if not isinstance(body.get("quirks"), list):
        raise InvalidInputError('expected {"quirks": [...]}, the names of the quirks to turn on')
    emulation.quirks = parse_quirks(body["quirks"])
    return await _quirks(emulation, request)


async def _add_token(emulation: Emulation, request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict) or set(body) - {"token", "account", "scopes", "name"}:
        raise ValueError("expected {token?, account?, scopes?, name?}")
    token = emulation.state.add_token(
        ApiToken(
            token=body.get("token") or f"dop_v1_{secrets.token_hex(32)}",
            account=body.get("account", DEFAULT_ACCOUNT),
            scopes=parse_scopes(body["scopes"]) if "scopes" in body else ALL_SCOPES,
            name=body.get("name", ""),
        )
    )
    return web.json_response(
        {"token": token.token, "account": token.account, "scopes": sorted(token.scopes)},
        status=201,
    )


async def _credentials(emulation: Emulation, request: web.Request) -> web.Response:
    credentials = emulation.state.credentials(cluster_id=request.query.get("cluster_id"))
    now = emulation.clock()
    return web.json_response(
        {"credentials": [describe_credential(c, now=now) for c in credentials]}
    )


def describe_cluster(cluster: Cluster) -> dict[str, Any]:
    """The API's cluster object plus what only the emulator knows: account, mode, identity,
    the lifetime cap (``null``: none) and how a required SSO refuses tokens."""
    return {
        **listing.cluster_resource(cluster),
        "account": cluster.account,
        "mode": cluster.mode,
        "identity": {
            "username": cluster.identity.username,
            "groups": list(cluster.identity.groups),
        },
        "max_lifetime": cluster.max_lifetime,
        "sso_refusal": cluster.sso_refusal,
    }


def describe_credential(credential: IssuedCredential, *, now: float) -> dict[str, Any]:
    """An issued credential without its secret."""
    return {
        "id": credential.id,
        "cluster_id": credential.cluster_id,
        "kind": credential.kind,
        "username": credential.identity.username,
        "groups": list(credential.identity.groups),
        "issued_at": rfc3339_nanoseconds(credential.issued_at),
        "expires_at": rfc3339_nanoseconds(credential.expires_at),
        "expired": not credential.valid_at(now),
        "revoked": credential.revoked,
    }


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object, not {value!r}")
    return value


def _only_keys(body: dict[str, Any], allowed: set[str], expected: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInputError(f"unknown key(s) {', '.join(unknown)}; expected {expected}")


def _error(status: int, error_id: str, message: str) -> web.Response:
    return web.json_response({"id": error_id, "message": message}, status=status)
