"""Minting cluster credentials that a real kube-apiserver accepts, and stops accepting at expiry.

A :class:`KubernetesBackend` says where credentials must work: the local apiserver's URL, the CA
that signs its serving certificate, and the client CA it trusts. In ``token`` mode each call mints
a fresh random bearer token that only the emulator's TokenReview webhook can vouch for, so its
expiry is enforced by the apiserver asking the webhook; in ``certificate`` mode each call mints a
client certificate whose NotAfter is the expiry, enforced by the apiserver's TLS checks. Without
a real apiserver (:meth:`KubernetesBackend.standalone`) the kubeconfigs point at the cluster's
documented endpoint and carry throw-away but well-formed CA material.

DigitalOcean no longer issues certificate kubeconfigs for new clusters; ``certificate`` mode stays
as robustness coverage for clients that may still meet one. A cluster's ``max_lifetime`` caps the
expiry in both modes, so a certificate's NotAfter is the capped time: a client that reads NotAfter
sees the true expiry, one that trusts the lifetime it asked for does not.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import secrets
import uuid

from doks_access_testkit.emulator.clock import to_datetime
from doks_access_testkit.emulator.state import Cluster, CredentialKind, IssuedCredential
from doks_access_testkit.pki import CertificateAuthority, KeyPair


@dataclasses.dataclass(frozen=True)
class KubernetesBackend:
    """Where issued credentials are used. ``server=None`` means each cluster's own endpoint."""

    server: str | None
    ca_pem: bytes
    client_ca: CertificateAuthority

    @classmethod
    def standalone(cls, *, now: datetime.datetime) -> KubernetesBackend:
        """No apiserver: documented endpoints, and CAs made up for the occasion."""
        serving_ca = CertificateAuthority.create(name="doks-emulator-cluster-ca", now=now)
        client_ca = CertificateAuthority.create(name="doks-emulator-client-ca", now=now)
        return cls(server=None, ca_pem=serving_ca.cert_pem, client_ca=client_ca)

    def server_for(self, cluster: Cluster) -> str:
        return self.server if self.server is not None else cluster.endpoint


@dataclasses.dataclass(frozen=True)
class Issued:
    """A freshly minted credential and what its kubeconfig or JSON needs besides."""

    credential: IssuedCredential
    server: str
    ca_pem: bytes
    certificate: KeyPair | None = None


def issue(*, cluster: Cluster, backend: KubernetesBackend, now: float, lifetime: int) -> Issued:
    """A new credential for ``cluster`` valid from ``now`` for ``lifetime`` seconds, or for the
    cluster's ``max_lifetime`` if that is shorter."""
    server = backend.server_for(cluster)
    expires_at = now + cluster.capped_lifetime(lifetime)
    if cluster.mode == "token":
        credential = _credential(cluster, kind="token", now=now, expires_at=expires_at)
        credential = dataclasses.replace(credential, token=secrets.token_hex(32))
        return Issued(credential=credential, server=server, ca_pem=backend.ca_pem)
    # X.509 times have whole seconds; the reported expiry is the certificate's real NotAfter.
    expires_at = float(math.floor(expires_at))
    pair = backend.client_ca.issue_client(
        user=cluster.identity.username,
        groups=cluster.identity.groups,
        not_after=to_datetime(expires_at),
        now=to_datetime(now),
    )
    credential = _credential(cluster, kind="certificate", now=now, expires_at=expires_at)
    credential = dataclasses.replace(credential, client_key_pem=pair.key_pem)
    return Issued(credential=credential, server=server, ca_pem=backend.ca_pem, certificate=pair)


def _credential(
    cluster: Cluster, *, kind: CredentialKind, now: float, expires_at: float
) -> IssuedCredential:
    return IssuedCredential(
        id=str(uuid.uuid4()),
        cluster_id=cluster.id,
        kind=kind,
        identity=cluster.identity,
        issued_at=now,
        expires_at=expires_at,
    )
