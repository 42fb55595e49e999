"""``spec.verify``: a SelfSubjectReview with the new credential names who it authenticates as."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from doks_access import verify
from doks_access.kubeconfig import Credential, parse_kubeconfig
from tests.unit.conftest import KUBECONFIG_TOKEN, SERVER, dump

ISSUED = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture
def credential(kubeconfig_bytes: bytes) -> Credential:
    return parse_kubeconfig(kubeconfig_bytes, issued_at=ISSUED, expiry_seconds=3600)


def _transport(reply: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(reply)


def _review(username: str) -> dict[str, Any]:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "status": {"userInfo": {"username": username, "groups": ["system:authenticated"]}},
    }


@pytest.mark.asyncio
async def test_posts_a_self_subject_review_with_the_new_token(credential: Credential) -> None:
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=_review("do-admin"))

    assert await verify.identity_of(credential, transport=_transport(reply)) == "do-admin"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == SERVER + verify.REVIEW_PATH
    assert request.headers["Authorization"] == f"Bearer {KUBECONFIG_TOKEN}"
    assert json.loads(request.content)["kind"] == "SelfSubjectReview"


@pytest.mark.asyncio
async def test_presents_the_client_certificate_of_a_legacy_credential(
    certificate_kubeconfig: Callable[..., dict[str, Any]],
) -> None:
    document = certificate_kubeconfig(not_after=ISSUED + datetime.timedelta(days=1))
    legacy = parse_kubeconfig(dump(document), issued_at=ISSUED, expiry_seconds=3600)
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=_review("legacy-admin"))

    assert await verify.identity_of(legacy, transport=_transport(reply)) == "legacy-admin"
    assert "Authorization" not in seen[0].headers


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda _: httpx.Response(401, json={"kind": "Status"}), "HTTP 401"),
        (lambda _: httpx.Response(201, content=b"not json"), "malformed"),
        (lambda _: httpx.Response(201, json={"status": {}}), "malformed"),
        (lambda _: httpx.Response(201, json=_review("")), "names no user"),
    ],
    ids=["refused", "not-json", "no-user-info", "empty-user"],
)
async def test_a_failed_review_is_a_verification_error_without_secrets(
    credential: Credential, reply: Callable[[httpx.Request], httpx.Response], message: str
) -> None:
    with pytest.raises(verify.VerificationError, match=message) as raised:
        await verify.identity_of(credential, transport=_transport(reply))
    assert KUBECONFIG_TOKEN not in str(raised.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
async def test_transport_failures_are_verification_errors(
    credential: Credential, error: httpx.HTTPError
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(verify.VerificationError, match=type(error).__name__):
        await verify.identity_of(credential, transport=_transport(reply))


@pytest.mark.asyncio
async def test_only_a_401_says_the_cluster_refuses_the_credential(credential: Credential) -> None:
    """The lifetime guard replaces a credential on a 401 only: a 403 or 5xx is not about it."""
    with pytest.raises(verify.CredentialRejectedError):
        await verify.identity_of(
            credential, transport=_transport(lambda _: httpx.Response(401, json={}))
        )
    for status in (403, 500, 503):
        with pytest.raises(verify.VerificationError) as raised:
            await verify.identity_of(
                credential, transport=_transport(lambda _, s=status: httpx.Response(s, json={}))
            )
        assert not isinstance(raised.value, verify.CredentialRejectedError)
