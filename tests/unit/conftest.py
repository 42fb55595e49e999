"""Fixtures for the unit tests of the kubeconfig validator and the DigitalOcean client.

Certificates are generated here with ``cryptography`` (no key material in the repository); the
DigitalOcean API is a scripted ``httpx.MockTransport`` handler; wall-clock time is derived from the
event loop's clock, so that under ``looptime`` the wall clock moves with virtual time too.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from doks_access.digitalocean import Cluster, DigitalOceanClient

# Wall-clock time at loop time zero: an arbitrary, fixed moment.
EPOCH = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
CLUSTER_ID = "bd5f5959-5e1e-4205-a714-a914373942af"
SERVER = f"https://{CLUSTER_ID}.k8s.ondigitalocean.com"
# Distinctive strings, so that a leak shows up in any text that is searched for them.
API_TOKEN = "dop_v1_SECRET-API-TOKEN-4c1e9f0a7d"
KUBECONFIG_TOKEN = "SECRET-KUBECONFIG-TOKEN-93b1d7e2"
BODY_TEXT = "SECRET-BODY-TEXT-5a8e"


def virtual_now() -> datetime.datetime:
    """The wall clock as the event loop sees it: ``EPOCH`` plus the loop's time."""
    return EPOCH + datetime.timedelta(seconds=asyncio.get_running_loop().time())


class CeilingRandom(random.Random):
    """Jitter that always draws the top of its range, so that retry times are exact in tests."""

    def uniform(self, a: float, b: float) -> float:
        return b


class CertificateAuthority:
    """A throwaway CA that signs the cluster CA and client certificates of sample kubeconfigs."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8saas Cluster CA")])
        self.certificate = self._sign(
            subject=self.name,
            public_key=self.key.public_key(),
            not_after=EPOCH + datetime.timedelta(days=3650),
            is_ca=True,
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_client_certificate(self, *, not_after: datetime.datetime) -> tuple[bytes, bytes]:
        """A client certificate and its key (both PEM) valid until ``not_after``."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self._sign(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")]),
            public_key=key.public_key(),
            not_after=not_after,
            is_ca=False,
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem

    def _sign(
        self,
        *,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        not_after: datetime.datetime,
        is_ca: bool,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(EPOCH - datetime.timedelta(days=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dump(document: Any) -> bytes:
    return yaml.safe_dump(document, sort_keys=False).encode("utf-8")


@pytest.fixture(scope="session")
def certificate_authority() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture
def kubeconfig_document(certificate_authority: CertificateAuthority) -> dict[str, Any]:
    """A fresh copy of the token kubeconfig DigitalOcean returns (the OpenAPI example's shape)."""
    return {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {
                    "certificate-authority-data": b64(certificate_authority.pem),
                    "server": SERVER,
                },
                "name": "do-nyc1-prod-cluster-01",
            }
        ],
        "contexts": [
            {
                "context": {
                    "cluster": "do-nyc1-prod-cluster-01",
                    "user": "do-nyc1-prod-cluster-01-admin",
                },
                "name": "do-nyc1-prod-cluster-01",
            }
        ],
        "current-context": "do-nyc1-prod-cluster-01",
        "kind": "Config",
        "preferences": {},
        "users": [{"name": "do-nyc1-prod-cluster-01-admin", "user": {"token": KUBECONFIG_TOKEN}}],
    }


@pytest.fixture
def kubeconfig_bytes(kubeconfig_document: dict[str, Any]) -> bytes:
    return dump(kubeconfig_document)


@pytest.fixture
def certificate_kubeconfig(
    certificate_authority: CertificateAuthority, kubeconfig_document: dict[str, Any]
) -> Callable[..., dict[str, Any]]:
    """Makes legacy kubeconfigs whose user holds a client certificate valid until ``not_after``."""

    def make(*, not_after: datetime.datetime) -> dict[str, Any]:
        certificate_pem, key_pem = certificate_authority.issue_client_certificate(
            not_after=not_after
        )
        kubeconfig_document["users"][0]["user"] = {
            "client-certificate-data": b64(certificate_pem),
            "client-key-data": b64(key_pem),
        }
        return kubeconfig_document

    return make


def quota_headers(
    *, remaining: int = 4900, limit: int = 5000, reset_in: float = 3600
) -> dict[str, str]:
    """The ``ratelimit-*`` headers DigitalOcean puts on every response, relative to now."""
    reset = virtual_now().timestamp() + reset_in
    return {
        "ratelimit-limit": str(limit),
        "ratelimit-remaining": str(remaining),
        "ratelimit-reset": str(int(reset)),
    }


def kubeconfig_response(body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=body,
        headers={"content-type": "application/yaml", **quota_headers(), **headers},
    )


def json_response(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode("utf-8"),
        headers={"content-type": "application/json; charset=utf-8", **quota_headers(), **headers},
    )


def error_response(status: int, error_id: str, **headers: str) -> httpx.Response:
    body = {"id": error_id, "message": BODY_TEXT, "request_id": "4d9d8375-3c56-4925-a3e7"}
    return json_response(status, body, **headers)


def cluster_json(number: int) -> dict[str, Any]:
    """A cluster as the API lists it (trimmed), numbered so that tests can tell them apart."""
    cluster_id = f"00000000-0000-4000-8000-{number:012d}"
    return {
        "id": cluster_id,
        "name": f"cluster-{number}",
        "region": "nyc1",
        "version": "1.31.1-do.0",
        "endpoint": f"https://{cluster_id}.k8s.ondigitalocean.com",
        "node_pools": [{"name": "pool", "count": 3}],
        "status": {"state": "running"},
    }


def cluster_record(number: int) -> Cluster:
    """The :class:`Cluster` the client reads from ``cluster_json(number)`` (no tags given)."""
    cluster = cluster_json(number)
    return Cluster(
        id=cluster["id"],
        name=cluster["name"],
        region="nyc1",
        endpoint=cluster["endpoint"],
        tags=None,
        state="running",
    )


def clusters_page(numbers: range, *, total: int, next_page: int | None) -> httpx.Response:
    pages: dict[str, str] = {}
    if next_page is not None:
        base = "https://api.digitalocean.com/v2/kubernetes/clusters"
        pages = {"next": f"{base}?page={next_page}", "last": f"{base}?page=3"}
    body = {
        "kubernetes_clusters": [cluster_json(n) for n in numbers],
        "links": {"pages": pages} if pages else {},
        "meta": {"total": total},
    }
    return json_response(200, body)


Reply = httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]


class FakeDigitalOcean:
    """A scripted DigitalOcean: each request gets the next scripted reply and is recorded.

    A reply is a response, an exception to raise (as a transport would), or a function of the
    request. When the script runs out, the last reply is repeated.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.request_times: list[float] = []  # event-loop times at which requests arrived
        self._script: collections.deque[Reply] = collections.deque()
        self._last: Reply = AssertionError("no reply was scripted")

    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    def script_from(self, replies: Iterable[Reply]) -> None:
        self._script.extend(replies)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.request_times.append(asyncio.get_running_loop().time())
        if self._script:
            self._last = self._script.popleft()
        reply = self._last
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, httpx.Response):
            # A fresh copy each time: a response object belongs to one exchange.
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
        return reply(request)


@pytest.fixture
def digitalocean() -> FakeDigitalOcean:
    return FakeDigitalOcean()


@pytest_asyncio.fixture
async def make_client(
    digitalocean: FakeDigitalOcean,
) -> AsyncIterator[Callable[..., DigitalOceanClient]]:
    """Builds clients against the scripted DigitalOcean, with exact jitter; closes them after."""
    clients: list[DigitalOceanClient] = []

    def make(**options: Any) -> DigitalOceanClient:
        options.setdefault("transport", httpx.MockTransport(digitalocean.handle))
        options.setdefault("wall_clock", virtual_now)
        options.setdefault("rng", CeilingRandom())
        client = DigitalOceanClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest_asyncio.fixture
async def client(make_client: Callable[..., DigitalOceanClient]) -> DigitalOceanClient:
    return make_client()
