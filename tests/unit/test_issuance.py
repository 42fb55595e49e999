"""One fetch, and why it failed in the operator's words: refusals, SSO, rejected credentials."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from doks_access import accounts, failures, issuance, kube, lookup, verify
from doks_access import digitalocean as digitalocean_module
from doks_access.digitalocean import DigitalOceanClient, RetryPolicy
from doks_access.failures import FailureReason
from doks_access.kubeconfig import Credential
from tests.unit.conftest import (
    API_TOKEN,
    CLUSTER_ID,
    FakeDigitalOcean,
    cluster_json,
    json_response,
    kubeconfig_response,
)

MakeClient = Callable[..., DigitalOceanClient]
KUBECONFIG = f"/v2/kubernetes/clusters/{CLUSTER_ID}/kubeconfig"
CLUSTER = f"/v2/kubernetes/clusters/{CLUSTER_ID}"
REFUSAL = {"id": "unprocessable_entity", "message": "token credentials are disabled"}


@pytest.fixture
def client(make_client: MakeClient) -> DigitalOceanClient:
    return make_client(retry_policy=RetryPolicy(attempts=1))


def cluster_answer(*, sso: dict[str, Any] | None) -> httpx.Response:
    cluster = {**cluster_json(1), "id": CLUSTER_ID}
    if sso is not None:
        cluster["sso"] = sso
    return json_response(200, {"kubernetes_cluster": cluster})


async def fetch(
    client: DigitalOceanClient, verifier: issuance.Verifier | None = None
) -> tuple[Credential, str | None]:
    return await issuance.fetch_credential(
        client, token=API_TOKEN, cluster_id=CLUSTER_ID, expiry_seconds=600, verifier=verifier
    )


def paths(digitalocean: FakeDigitalOcean) -> list[str]:
    return [request.url.path for request in digitalocean.requests]


async def refusing_verifier(credential: Credential) -> str:
    raise verify.CredentialRejectedError("the cluster answered 401")


async def accepting_verifier(credential: Credential) -> str:
    return "kube-admin"


@pytest.mark.asyncio
async def test_a_fetch_that_works_costs_one_call_and_proves_the_identity(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes))

    credential, identity = await fetch(client, accepting_verifier)

    assert identity == "kube-admin"
    assert credential.expires_at - credential.issued_at == datetime.timedelta(seconds=600)
    assert paths(digitalocean) == [KUBECONFIG]


@pytest.mark.asyncio
async def test_a_refusal_from_a_cluster_that_requires_sso_says_so(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(
        json_response(422, REFUSAL), cluster_answer(sso={"enabled": True, "required": True})
    )

    with pytest.raises(issuance.SSORequiredError) as raised:
        await fetch(client)

    assert paths(digitalocean) == [KUBECONFIG, CLUSTER]
    assert issuance.failure_of(raised.value).reason is FailureReason.SSO_REQUIRED
    assert "sso.required" in str(raised.value)


@pytest.mark.asyncio
async def test_a_token_the_sso_cluster_refuses_is_reported_as_sso_required(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(
        kubeconfig_response(kubeconfig_bytes),
        cluster_answer(sso={"enabled": True, "required": True}),
    )

    with pytest.raises(issuance.SSORequiredError):
        await fetch(client, refusing_verifier)

    assert paths(digitalocean) == [KUBECONFIG, CLUSTER]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "sso", [None, {"enabled": False, "required": False}, {"enabled": True, "required": False}]
)
async def test_a_refusal_from_any_other_cluster_keeps_digitaloceans_reason(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, sso: dict[str, Any] | None
) -> None:
    digitalocean.script(json_response(422, REFUSAL), cluster_answer(sso=sso))

    with pytest.raises(digitalocean_module.RequestRefusedError) as raised:
        await fetch(client)

    failure = issuance.failure_of(raised.value)
    assert failure.reason is FailureReason.REQUEST_REFUSED
    assert failure.detail.endswith(": token credentials are disabled")


@pytest.mark.asyncio
async def test_when_the_cluster_cannot_be_looked_at_the_refusal_stands(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean
) -> None:
    digitalocean.script(json_response(400, REFUSAL), json_response(503, {"id": "x"}))

    with pytest.raises(digitalocean_module.RequestRefusedError):
        await fetch(client)

    assert paths(digitalocean) == [KUBECONFIG, CLUSTER]


@pytest.mark.asyncio
async def test_a_new_credential_the_cluster_refuses_is_credential_rejected(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, kubeconfig_bytes: bytes
) -> None:
    digitalocean.script(kubeconfig_response(kubeconfig_bytes), cluster_answer(sso=None))

    with pytest.raises(verify.CredentialRejectedError) as raised:
        await fetch(client, refusing_verifier)

    assert issuance.failure_of(raised.value).reason is FailureReason.CREDENTIAL_REJECTED


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 404, 500])
async def test_other_failures_do_not_look_at_the_cluster(
    client: DigitalOceanClient, digitalocean: FakeDigitalOcean, status: int
) -> None:
    digitalocean.script(json_response(status, {"id": "x"}))

    with pytest.raises(digitalocean_module.DigitalOceanError):
        await fetch(client)

    assert paths(digitalocean) == [KUBECONFIG]


def test_a_listed_cluster_that_requires_sso_is_refused_before_any_fetch() -> None:
    plain = digitalocean_module.Cluster(id=CLUSTER_ID, name="a", region="nyc1", endpoint="")
    required = digitalocean_module.Cluster(
        id=CLUSTER_ID, name="a", region="nyc1", endpoint="", sso_required=True
    )

    assert issuance.sso_refusal(plain) is None
    assert isinstance(issuance.sso_refusal(required), issuance.SSORequiredError)


RETRY_AFTER = digitalocean_module.RateLimitedError("429", retry_after=7)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (kube.TokenSecretError("no token", reason="NotFound"), FailureReason.TOKEN_SECRET_MISSING),
        (lookup.ClusterNameError("none", ambiguous=False), FailureReason.CLUSTER_NOT_FOUND),
        (lookup.ClusterNameError("two", ambiguous=True), FailureReason.AMBIGUOUS_CLUSTER_NAME),
        (issuance.SSORequiredError(CLUSTER_ID), FailureReason.SSO_REQUIRED),
        (
            digitalocean_module.RequestRefusedError("422", explanation=None),
            FailureReason.REQUEST_REFUSED,
        ),
        (digitalocean_module.UnauthorizedError("401"), FailureReason.UNAUTHORIZED),
        (digitalocean_module.NotFoundError("404"), FailureReason.CLUSTER_NOT_FOUND),
        (RETRY_AFTER, FailureReason.RATE_LIMITED),
        (digitalocean_module.ServerError("503"), FailureReason.SERVER),
        (digitalocean_module.TransportError("reset"), FailureReason.TRANSPORT),
        (digitalocean_module.InvalidResponseError("bad"), FailureReason.INVALID_RESPONSE),
        (verify.CredentialRejectedError("401"), FailureReason.CREDENTIAL_REJECTED),
        (verify.VerificationError("timeout"), FailureReason.INVALID_RESPONSE),
        *(
            (accounts.AccountError(refusal, "no"), FailureReason(refusal.value))
            for refusal in accounts.Refusal
        ),
    ],
)
def test_every_fetch_error_has_one_reason(error: Exception, reason: FailureReason) -> None:
    failure = issuance.failure_of(error)

    assert failure.reason is reason
    assert failure.detail == str(error)
    expected_wait = datetime.timedelta(seconds=7) if reason is FailureReason.RATE_LIMITED else None
    assert failure.retry_after == expected_wait
    assert isinstance(error, issuance.FETCH_ERRORS)


def test_every_reason_but_none_is_reachable() -> None:
    """A reason nothing maps to would be dead; the table above names each one."""
    assert set(FailureReason) == {
        FailureReason.TOKEN_SECRET_MISSING,
        FailureReason.CLUSTER_NOT_FOUND,
        FailureReason.AMBIGUOUS_CLUSTER_NAME,
        FailureReason.SSO_REQUIRED,
        FailureReason.REQUEST_REFUSED,
        FailureReason.UNAUTHORIZED,
        FailureReason.RATE_LIMITED,
        FailureReason.SERVER,
        FailureReason.TRANSPORT,
        FailureReason.INVALID_RESPONSE,
        FailureReason.CREDENTIAL_REJECTED,
        *(FailureReason(refusal.value) for refusal in accounts.Refusal),
    }
    assert failures.FailureReason.SSO_REQUIRED.refused
