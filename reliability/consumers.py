"""Workloads that use the credential: they re-read the Secret and call the API server with it.

A consumer does what a pod with the Secret mounted does: every ``period`` it takes the Secret's
current content (or, with ``lag``, the content as it was ``lag`` seconds ago, as a kubelet that
syncs volumes late would show it) and makes an authenticated call, ``POST selfsubjectreviews``,
against the cluster the credential names. The local control plane really enforces each
credential's expiry (a webhook for bearer tokens, X.509 validity for client certificates), so a
refusal is a real consumer-visible failure, not a reading of the operator's bookkeeping.

Credentials are identified by a fingerprint (a truncated SHA-256); nothing here prints them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import hashlib
import json
import ssl
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes.aio.client.exceptions import ApiException

from bench.kubeapi import BenchKube
from reliability.ledger import Attempt, ConsumerTally

REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@dataclasses.dataclass(frozen=True)
class Credential:
    """What a consumer needs to call the cluster: where, whom to trust, who it is."""

    server: str
    ca_pem: bytes
    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    @property
    def fingerprint(self) -> str:
        material = (self.token or "").encode() + (self.cert_pem or b"")
        return hashlib.sha256(material).hexdigest()[:12]


def credential_from_secret(data: Mapping[str, Any] | None, *, key: str) -> Credential | None:
    """The credential in a Secret's ``data``, in any of the operator's formats; ``None`` if there
    is none (a consumer that finds nothing usable counts that, it does not crash)."""
    if not data:
        return None
    try:
        if "config" in data and "server" in data:  # Argo CD's cluster Secret
            config = json.loads(base64.b64decode(data["config"]))
            tls = config["tlsClientConfig"]
            return Credential(
                server=base64.b64decode(data["server"]).decode().rstrip("/"),
                ca_pem=base64.b64decode(tls["caData"]),
                token=config.get("bearerToken"),
                cert_pem=base64.b64decode(tls["certData"]) if "certData" in tls else None,
                key_pem=base64.b64decode(tls["keyData"]) if "keyData" in tls else None,
            )
        if key not in data:
            return None
        return _from_kubeconfig(yaml.safe_load(base64.b64decode(data[key])))
    except (KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def _from_kubeconfig(document: Any) -> Credential:
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    return Credential(
        server=cluster["server"],
        ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
        token=user.get("token"),
        cert_pem=base64.b64decode(user["client-certificate-data"])
        if "client-certificate-data" in user
        else None,
        key_pem=base64.b64decode(user["client-key-data"]) if "client-key-data" in user else None,
    )


class _Clients:
    """The HTTP client of the credential in use (a client certificate is bound to the TLS
    connection, so a new credential needs a new client)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._current: tuple[str, httpx.AsyncClient] | None = None

    async def client(self, credential: Credential) -> httpx.AsyncClient:
        if self._current is not None and self._current[0] == credential.fingerprint:
            return self._current[1]
        await self.close()
        made = self._make(credential)
        self._current = (credential.fingerprint, made)
        return made

    def _make(self, credential: Credential) -> httpx.AsyncClient:
        context = ssl.create_default_context(cadata=credential.ca_pem.decode())
        headers = {}
        if credential.token:
            headers["Authorization"] = f"Bearer {credential.token}"
        if credential.cert_pem and credential.key_pem:
            # ssl loads a key pair only from files; they live in a private directory, briefly.
            cert, key = self._directory / "client.crt", self._directory / "client.key"
            cert.write_bytes(credential.cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(credential.key_pem)
            context.load_cert_chain(cert, key)
            key.unlink()
        return httpx.AsyncClient(
            base_url=credential.server, verify=context, headers=headers, timeout=5
        )

    async def close(self) -> None:
        if self._current is not None:
            await self._current[1].aclose()
            self._current = None


class Consumer:
    """Reads ``secret`` in ``namespace`` every ``period`` seconds and authenticates with it."""

    def __init__(
        self,
        *,
        kube: BenchKube,
        namespace: str,
        secret: str,
        key: str = "kubeconfig",
        period: float = 0.25,
        lag: float = 0.0,
        name: str | None = None,
    ) -> None:
        self._kube, self.namespace, self.secret, self._key = kube, namespace, secret, key
        self._period, self._lag = period, lag
        self.lagged = bool(lag)
        self.tally = ConsumerTally(
            name or f"{namespace}/{secret}" + (f" (lag {lag:g}s)" * bool(lag))
        )
        self._history: collections.deque[tuple[float, Credential]] = collections.deque()

    async def run(self, stop: asyncio.Event) -> None:
        with tempfile.TemporaryDirectory(prefix="doks-access-consumer-") as directory:
            clients = _Clients(Path(directory))
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    credential = self._visible(await self._read())
                    await self._attempt(clients, credential)
                    with contextlib.suppress(TimeoutError):
                        remaining = self._period - (time.monotonic() - started)
                        await asyncio.wait_for(stop.wait(), timeout=max(0.0, remaining))
            finally:
                await clients.close()

    async def current(self) -> str | None:
        """The fingerprint of the credential in the Secret now (one read, no call made)."""
        credential = await self._read()
        return credential.fingerprint if credential else None

    async def _read(self) -> Credential | None:
        try:
            secret = await self._kube.core.read_namespaced_secret(self.secret, self.namespace)
        except (TimeoutError, ApiException, OSError):
            return None
        return credential_from_secret(secret.data, key=self._key)

    def _visible(self, current: Credential | None) -> Credential | None:
        """The content this consumer sees now: the latest, or with a lag the latest that is at
        least ``lag`` old (the first content read stands in until then, as a pod starts with
        what was there when its volume was mounted)."""
        if not self._lag:
            return current
        now = time.monotonic()
        if current is not None and (not self._history or self._history[-1][1] != current):
            self._history.append((now, current))
        while len(self._history) > 1 and self._history[1][0] <= now - self._lag:
            self._history.popleft()
        return self._history[0][1] if self._history else None

    async def _attempt(self, clients: _Clients, credential: Credential | None) -> None:
        now = time.time()
        if credential is None:
            self.tally.record(Attempt.NO_CREDENTIAL, at=now, credential=None)
            return
        try:
            response = await (await clients.client(credential)).post(REVIEW_PATH, json=REVIEW)
        except (httpx.HTTPError, ssl.SSLError, OSError):
            # kube-apiserver checks client certificates after the handshake (an expired one gets a
            # 401), so a transport error means the server did not answer. Scenarios that do not
            # restart it require none of these, so a failure cannot hide here.
            outcome = Attempt.UNREACHABLE
        else:
            outcome = _outcome(response.status_code)
        self.tally.record(outcome, at=now, credential=credential.fingerprint)


def _outcome(status: int) -> Attempt:
    if status == 201:
        return Attempt.AUTHENTICATED
    if status in (401, 403):  # 403: authenticated as someone not allowed to ask who they are
        return Attempt.REFUSED
    return Attempt.UNREACHABLE
