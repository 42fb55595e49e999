"""Fetch one credential and, when DigitalOcean or the cluster refuses it, say why in one reason.

Shared by the reconciler and ``doks-access fetch``, so that both report a case the same way: the
fetch itself (``GET …/kubeconfig``), the proof that the new credential works (``spec.verify``,
``--verify``), and the one place where everything a fetch can raise becomes a
:class:`~doks_access.failures.Failure` (:func:`failure_of`).

A cluster that requires SSO accepts no token credential. DigitalOcean may refuse to issue one
(a 400 or 422) or issue one the cluster then refuses (a 401 on the SelfSubjectReview); neither
answer names SSO for sure. So after either refusal, and only then, the cluster is looked at once
(``GET /v2/kubernetes/clusters/{id}``, no credential minted): if its ``sso.required`` is true the
failure is :class:`SSORequiredError`, a reason a person can act on. A fetch that succeeds costs
no extra call.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable

from doks_access import accounts, digitalocean, failures, kube, lookup, verify
from doks_access.kubeconfig import Credential

__all__ = ["FETCH_ERRORS", "SSORequiredError", "failure_of", "fetch_credential", "sso_refusal"]

logger = logging.getLogger(__name__)

Verifier = Callable[[Credential], Awaitable[str]]


class SSORequiredError(Exception):
    """The cluster requires SSO (``sso.required``): no token credential will work on it."""

    def __init__(self, cluster_id: str) -> None:
        super().__init__(
            f"cluster {cluster_id} has sso.required set; turn it off in DigitalOcean, or give "
            "consumers another way in"
        )
        self.cluster_id = cluster_id


# What a fetch can fail with, short of a bug; failure_of maps each to a reason.
FETCH_ERRORS = (
    kube.TokenSecretError,
    lookup.ClusterNameError,
    digitalocean.DigitalOceanError,
    verify.VerificationError,
    SSORequiredError,
    accounts.AccountError,
)


async def fetch_credential(
    client: digitalocean.DigitalOceanClient,
    *,
    token: str,
    cluster_id: str,
    expiry_seconds: int | None,
    verifier: Verifier | None,
) -> tuple[Credential, str | None]:
    """A new credential for ``cluster_id`` and, with a ``verifier``, the identity it proves."""
    try:
        credential = await client.fetch_kubeconfig(
            token=token, cluster_id=cluster_id, expiry_seconds=expiry_seconds
        )
        identity = await verifier(credential) if verifier is not None else None
    except (digitalocean.RequestRefusedError, verify.CredentialRejectedError) as exc:
        if await _requires_sso(client, token=token, cluster_id=cluster_id):
            raise SSORequiredError(cluster_id) from exc
        raise
    return credential, identity


def sso_refusal(cluster: digitalocean.Cluster) -> SSORequiredError | None:
    """The refusal to expect from a listed cluster, before any credential is asked for."""
    return SSORequiredError(cluster.id) if cluster.sso_required else None


async def _requires_sso(
    client: digitalocean.DigitalOceanClient, *, token: str, cluster_id: str
) -> bool:
    try:
        cluster = await client.get_cluster(token=token, cluster_id=cluster_id)
    except digitalocean.DigitalOceanError as exc:
        # The refusal stands as it is; not knowing why is no worse than before the look.
        logger.info("could not look at the cluster after a refusal: %s", exc)
        return False
    return cluster.sso_required


def failure_of(exc: Exception) -> failures.Failure:
    """The reason a fetch failed, from what it raised: the one place errors become reasons."""
    reason = failures.FailureReason.INVALID_RESPONSE
    retry_after = None
    if isinstance(exc, accounts.AccountError):
        reason = failures.FailureReason(exc.refusal.value)
    elif isinstance(exc, kube.TokenSecretError):
        reason = failures.FailureReason.TOKEN_SECRET_MISSING
    elif isinstance(exc, lookup.ClusterNameError):
        reason = (
            failures.FailureReason.AMBIGUOUS_CLUSTER_NAME
            if exc.ambiguous
            else failures.FailureReason.CLUSTER_NOT_FOUND
        )
    elif isinstance(exc, SSORequiredError):
        reason = failures.FailureReason.SSO_REQUIRED
    elif isinstance(exc, digitalocean.RequestRefusedError):
        reason = failures.FailureReason.REQUEST_REFUSED
    elif isinstance(exc, digitalocean.UnauthorizedError):
        reason = failures.FailureReason.UNAUTHORIZED
    elif isinstance(exc, digitalocean.NotFoundError):
        reason = failures.FailureReason.CLUSTER_NOT_FOUND
    elif isinstance(exc, digitalocean.RateLimitedError):
        reason = failures.FailureReason.RATE_LIMITED
        retry_after = datetime.timedelta(seconds=exc.retry_after)
    elif isinstance(exc, digitalocean.ServerError):
        reason = failures.FailureReason.SERVER
    elif isinstance(exc, digitalocean.TransportError):
        reason = failures.FailureReason.TRANSPORT
    elif isinstance(exc, verify.CredentialRejectedError):
        reason = failures.FailureReason.CREDENTIAL_REJECTED
    # InvalidResponseError and any other failed verification keep the default: an answer that
    # cannot be used, the old Secret kept (DESIGN 4.6).
    return failures.Failure(reason=reason, detail=str(exc), retry_after=retry_after)
