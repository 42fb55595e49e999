"""``spec.verify``: prove that a new credential authenticates before it replaces the old one.

One ``SelfSubjectReview`` (``POST /apis/authentication.k8s.io/v1/selfsubjectreviews``) on the
target cluster with the new credential; every authenticated user may make it, so no RBAC on the
target cluster is needed. The answer's username becomes ``status.identity``. Any failure is a
:class:`VerificationError`, and the old Secret stays (DESIGN 4.6).

The same review, made with the credential a Secret already holds, is the lifetime guard: a 401
(:class:`CredentialRejectedError`) means the cluster no longer accepts it -- a lifetime capped
below what was asked, a revoked token -- while any other failure (the cluster unreachable, a
5xx) says nothing about the credential.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from doks_access import __version__
from doks_access.kubeconfig import AuthKind, Credential

REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
_REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
_TIMEOUT = httpx.Timeout(10.0)


class VerificationError(Exception):
    """The credential did not prove itself; the message never contains credential material."""


class CredentialRejectedError(VerificationError):
    """The cluster answered 401: it does not accept the credential (any more)."""


async def identity_of(
    credential: Credential, *, transport: httpx.AsyncBaseTransport | None = None
) -> str:
    """The username the target cluster sees for ``credential``."""
    headers = {"User-Agent": f"doks-access-operator/{__version__}"}
    if credential.auth_kind is AuthKind.TOKEN:
        headers["Authorization"] = f"Bearer {credential.token}"
    try:
        with _ssl_context(credential) as context:
            async with httpx.AsyncClient(
                base_url=credential.server,
                verify=context,
                timeout=_TIMEOUT,
                headers=headers,
                transport=transport,
                follow_redirects=False,
            ) as http:
                response = await http.post(REVIEW_PATH, json=_REVIEW)
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        raise VerificationError(f"verifying the credential failed: {type(exc).__name__}") from None
    return _username(response)


def _username(response: httpx.Response) -> str:
    if response.status_code == 401:
        raise CredentialRejectedError(
            "the cluster does not accept the credential: its SelfSubjectReview was answered "
            "with HTTP 401"
        )
    if response.status_code not in (200, 201):
        raise VerificationError(
            f"the cluster answered the credential's SelfSubjectReview with HTTP "
            f"{response.status_code}"
        )
    try:
        username = response.json()["status"]["userInfo"]["username"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise VerificationError("the cluster's SelfSubjectReview answer is malformed") from None
    if not isinstance(username, str) or not username:
        raise VerificationError("the cluster's SelfSubjectReview answer names no user")
    return username


@contextlib.contextmanager
def _ssl_context(credential: Credential) -> Iterator[ssl.SSLContext]:
    context = ssl.create_default_context(cadata=credential.ca_pem.decode("ascii"))
    if credential.auth_kind is AuthKind.CLIENT_CERTIFICATE:
        # The ssl module loads client keys only from files: a private temporary directory, removed
        # as soon as the context holds the key.
        with tempfile.TemporaryDirectory(prefix="doks-access-") as scratch:
            cert, key = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
            for path, content in (
                (cert, credential.client_certificate_pem),
                (key, credential.client_key_pem),
            ):
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as file:
                    file.write(content or b"")
            context.load_cert_chain(cert, key)
    yield context
