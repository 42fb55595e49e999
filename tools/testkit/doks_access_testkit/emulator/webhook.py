"""The TokenReview webhook: how a real kube-apiserver learns whether an emulator token is valid.

The apiserver is started with ``--authentication-token-webhook-config-file`` pointing here (see
:class:`doks_access_testkit.controlplane.TokenWebhook`) and a cache TTL of zero, so every request
that carries a bearer token is checked against the emulator's record of issued credentials: a
token it minted and that has not expired authenticates as the cluster's configured identity;
anything else, including one second past ``expires_at`` (capped by the cluster's
``max_lifetime``), a revoked token, or any token of a cluster that requires SSO with
``sso_refusal="cluster"``, does not. That is what lets the tests
prove continuity against real enforcement rather than the operator's own bookkeeping.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from doks_access_testkit.emulator.core import Emulation
from doks_access_testkit.emulator.state import AccountState, InvalidInputError

WEBHOOK_PATH = "/authenticate"
_EMULATION = web.AppKey("emulation", Emulation)
_DEFAULT_API_VERSION = "authentication.k8s.io/v1"


def create_webhook_app(emulation: Emulation) -> web.Application:
    app = web.Application()
    app[_EMULATION] = emulation
    app.router.add_post(WEBHOOK_PATH, _review)
    return app


def review(body: Any, *, state: AccountState, now: float) -> dict[str, Any]:
    """Answer one TokenReview request (a parsed JSON object); raises ValueError if malformed."""
    if not isinstance(body, dict) or body.get("kind") != "TokenReview":
        raise ValueError("expected a TokenReview object")
    spec = body.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("token"), str):
        raise InvalidInputError("expected spec.token")
    credential = state.review(spec["token"], now=now)
    status: dict[str, Any] = {"authenticated": False}
    if credential is not None:
        status = {
            "authenticated": True,
            "user": {
                "username": credential.identity.username,
                "uid": credential.id,
                "groups": list(credential.identity.groups),
            },
        }
        # The apiserver asks for its audiences; granting them all is what a DO token means.
        if isinstance(spec.get("audiences"), list):
            status["audiences"] = spec["audiences"]
    return {
        "apiVersion": body.get("apiVersion", _DEFAULT_API_VERSION),
        "kind": "TokenReview",
        "status": status,
    }


async def _review(request: web.Request) -> web.Response:
    emulation = request.app[_EMULATION]
    try:
        answer = review(
            json.loads(await request.read()), state=emulation.state, now=emulation.clock()
        )
    except ValueError as exc:
        emulation.stats.record(endpoint="token_review", outcome="400")
        return web.json_response({"error": str(exc)}, status=400)
    outcome = "authenticated" if answer["status"]["authenticated"] else "rejected"
    emulation.stats.record(endpoint="token_review", outcome=outcome)
    return web.json_response(answer)
