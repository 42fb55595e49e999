"""The operator's clients, built in one place: one Kubernetes API client per process.

The handlers, the command line (leader election uses the same client) and the tests all get their
clients from :meth:`Dependencies.create`, so there is one ``kubernetes.aio`` client, one
DigitalOcean client with one rate limiter per token, and one set of metrics per process.
"""

from __future__ import annotations

import dataclasses
import random
import ssl
from typing import Self

from kubernetes.aio import client

from doks_access import config, digitalocean, dispatch, kube, verify
from doks_access.issuance import Verifier
from doks_access.metrics import Metrics

__all__ = ["Dependencies", "Verifier"]


@dataclasses.dataclass(frozen=True)
class Dependencies:
    """What a reconciliation calls out to; close with :meth:`aclose`."""

    source: kube.Source
    api: client.ApiClient
    kube: kube.Kube
    digitalocean: digitalocean.DigitalOceanClient
    metrics: Metrics
    rng: random.Random
    verifier: Verifier = verify.identity_of
    account_namespace: str = "default"  # where ClusterDOAccounts' token Secrets are

    @classmethod
    async def create(
        cls, settings: config.OperatorConfig, *, collected: Metrics | None = None
    ) -> Self:
        """Clients for ``settings``; :class:`kube.StartupError` when there are no Kubernetes
        credentials to be found or loaded."""
        collected = collected if collected is not None else Metrics()
        source = kube.find_source(explicit=settings.kubeconfig)
        api = await kube.api_client(source)
        try:
            do = _digitalocean_client(settings, collected)
        except BaseException:
            await api.close()  # type: ignore[no-untyped-call]
            raise
        return cls(
            source=source,
            api=api,
            kube=kube.Kube(api, on_write=collected.kubernetes_write),
            digitalocean=do,
            metrics=collected,
            rng=random.Random(),  # noqa: S311 - backoff jitter, not cryptography
            account_namespace=settings.account_namespace,
        )

    async def aclose(self) -> None:
        await self.digitalocean.aclose()
        await self.api.close()  # type: ignore[no-untyped-call]


def _digitalocean_client(
    settings: config.OperatorConfig, collected: Metrics
) -> digitalocean.DigitalOceanClient:
    trust: ssl.SSLContext | bool = True
    try:
        if settings.digitalocean_ca_file is not None:
            trust = ssl.create_default_context(cafile=str(settings.digitalocean_ca_file))
        return digitalocean.DigitalOceanClient(
            base_url=settings.digitalocean_api_url,
            verify=trust,
            rate_limits=settings.rate_limits,
            observer=collected,
            # Waiting for DigitalOcean's permission gives the worker slot to someone else.
            waiting=dispatch.parked,
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise kube.StartupError(f"the DigitalOcean API settings are unusable: {exc}") from None
