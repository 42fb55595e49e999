"""Serve a request through a ClusterDOAccount (``spec.accountRef``): the account, the policy, the
token.

The account and the namespace's labels are read on every fetch, never cached. Between fetches,
:func:`refusal` decides again for an object that holds a credential when its account changed (the
operator watches accounts) or the operator restarted: a permission taken away shows at once, and
its renewals stop. The policy itself is :mod:`doks_access.accounts`
(pure); a refusal is an :class:`~doks_access.accounts.AccountError`, raised before any DigitalOcean
call. The token is read from the operator's account namespace, never from the tenant's, and no
message names or quotes it: a tenant learns that the account's token cannot be read, not where
it lives.
"""

from __future__ import annotations

from doks_access import accounts, digitalocean, kube
from doks_access.spec import AccessSpec, InvalidSpecError

__all__ = ["account_token", "granted_by_tags", "refusal", "set_token"]

# How a ClusterDOAccount installation without the accounts' RBAC shows (the chart's
# accounts.enabled=false): a condition that names the fix, not a 403 retried every few seconds.
_NOT_PERMITTED = (
    "the operator may not read ClusterDOAccounts and namespaces; install it with accounts "
    "enabled (chart value accounts.enabled=true)"
)


async def account_token(
    api: kube.Kube, *, access: AccessSpec, namespace: str, account_namespace: str
) -> tuple[str, accounts.Decision]:
    """The token of ``access``'s account, and the account's decision (which may still wait for
    the cluster's tags), or :class:`~doks_access.accounts.AccountError`."""
    name = access.account or ""
    account, decision = await _decided(api, access=access, namespace=namespace)
    if decision.refusal is not None:
        raise accounts.AccountError(decision.refusal, decision.message)
    return await _token(api, account, name=name, account_namespace=account_namespace), decision


async def refusal(
    api: kube.Kube, *, access: AccessSpec, namespace: str
) -> accounts.AccountError | None:
    """Why ``access``'s account no longer serves it, decided without the token and without any
    DigitalOcean call; None if it still does. A grant by tags needs the cluster's tags from a
    listing, so it stands until the next fetch decides it."""
    try:
        _, decision = await _decided(api, access=access, namespace=namespace)
    except accounts.AccountError as exc:
        return exc
    if decision.refusal is None:
        return None
    return accounts.AccountError(decision.refusal, decision.message)


async def _decided(
    api: kube.Kube, *, access: AccessSpec, namespace: str
) -> tuple[accounts.Account, accounts.Decision]:
    name = access.account or ""
    account = await _account(api, name)
    request = accounts.Request(
        namespace=namespace,
        namespace_labels=await _labels(api, namespace),
        cluster_id=access.cluster_id,
        cluster_name=access.cluster_name,
        expiry_seconds=access.expiry_seconds,
        verify=access.verify,
    )
    return account, accounts.decide(account, request, account_name=name)


async def set_token(
    api: kube.Kube, *, account_name: str, namespace: str, account_namespace: str
) -> str:
    """The token a DOClusterAccessSet lists with, once its account admits the set's namespace.
    Each child names the account too, so every cluster is decided again per child."""
    account = await _account(api, account_name)
    if not accounts.admitting(account, namespace, await _labels(api, namespace)):
        raise accounts.namespace_refused(account_name, namespace)
    return await _token(api, account, name=account_name, account_namespace=account_namespace)


async def _account(api: kube.Kube, name: str) -> accounts.Account:
    try:
        body = await api.read_account(name)
    except kube.KubeError as exc:
        if exc.status == 403:
            raise _not_permitted() from None
        raise
    if body is None:
        raise accounts.AccountError(
            accounts.Refusal.ACCOUNT_NOT_FOUND, f"ClusterDOAccount {name} does not exist"
        )
    try:
        return accounts.parse_account(body)
    except InvalidSpecError as exc:
        raise accounts.AccountError(
            accounts.Refusal.INVALID_ACCOUNT, f"ClusterDOAccount {name}: {exc}"
        ) from None


async def _labels(api: kube.Kube, namespace: str) -> dict[str, str]:
    try:
        return await api.namespace_labels(namespace)
    except kube.KubeError as exc:
        if exc.status == 403:
            raise _not_permitted() from None
        raise


def _not_permitted() -> accounts.AccountError:
    return accounts.AccountError(accounts.Refusal.ACCOUNT_NOT_FOUND, _NOT_PERMITTED)


async def _token(
    api: kube.Kube, account: accounts.Account, *, name: str, account_namespace: str
) -> str:
    ref = account.token_secret
    try:
        return await api.read_token(namespace=account_namespace, name=ref.name, key=ref.key)
    except kube.TokenSecretError as exc:
        raise accounts.AccountError(
            accounts.Refusal.ACCOUNT_NOT_FOUND,
            f"the token of ClusterDOAccount {name} cannot be read ({exc.reason})",
        ) from None


async def granted_by_tags(
    client: digitalocean.DigitalOceanClient,
    decision: accounts.Decision,
    *,
    token: str,
    cluster_id: str,
) -> None:
    """Settle a decision that waits for the cluster's tags: one listing (the only DigitalOcean
    call a policy check makes); :class:`~doks_access.accounts.AccountError` if not granted."""
    listed = await client.list_clusters(token=token)
    cluster = next((c for c in listed if c.id.lower() == cluster_id.lower()), None)
    if cluster is None:
        raise accounts.AccountError(
            accounts.Refusal.CLUSTER_NOT_ALLOWED,
            f"cluster {cluster_id} is not among the account's clusters",
        )
    final = decision.for_cluster(cluster)
    if final.refusal is not None:
        raise accounts.AccountError(final.refusal, final.message)
