"""A cluster credential's two shapes: a kubeconfig (YAML) and the ``/credentials`` JSON.

Both are built like DigitalOcean builds them: cluster and context ``do-<region>-<name>``, user
``do-<region>-<name>-admin``, keys sorted as the real API emits them, ``preferences: {}``, and
``expires_at`` with nanoseconds. The query parameters are judged here too (``expiry_seconds``
absent or 0 means seven days; ``type`` defaults by the cluster's SSO setting), and so are the
body faults that turn a good answer into one the operator must refuse.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml

from doks_access_testkit.emulator.clock import rfc3339_nanoseconds
from doks_access_testkit.emulator.faults import Fault
from doks_access_testkit.emulator.state import Cluster, IssuedCredential
from doks_access_testkit.pki import KeyPair

DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600
# No maximum is documented; this one only keeps dates inside what datetime and X.509 can express.
MAX_EXPIRY_SECONDS = 100 * 365 * 24 * 3600
OVERSIZED_BYTES = 1024 * 1024 + 1
_INTEGER = re.compile(r"-?[0-9]+")
_BROKEN_YAML = b"apiVersion: v1\nkind: Config\nclusters: [\n  {name: broken, cluster: {server: \n"

CredentialType = Literal["token", "sso"]


def context_name(cluster: Cluster) -> str:
    return f"do-{cluster.region}-{cluster.name}"


def user_name(cluster: Cluster) -> str:
    return f"{context_name(cluster)}-admin"


def parse_expiry_seconds(raw: str | None) -> int:
    """The lifetime asked for: absent, empty or 0 mean seven days; anything else must be >= 0."""
    if raw is None or raw == "":
        return DEFAULT_EXPIRY_SECONDS
    if not _INTEGER.fullmatch(raw):
        raise ValueError("expiry_seconds must be an integer")
    seconds = int(raw)
    if seconds < 0:
        raise ValueError("expiry_seconds must not be negative")
    if seconds > MAX_EXPIRY_SECONDS:
        raise ValueError("expiry_seconds is too large")
    return seconds or DEFAULT_EXPIRY_SECONDS


def is_explicit_zero(raw: str | None) -> bool:
    """``expiry_seconds`` given, and 0 (the value the ``zero_expiry_500`` quirk refuses)."""
    return raw is not None and bool(_INTEGER.fullmatch(raw)) and int(raw) == 0


def parse_credential_type(raw: str | None, *, cluster: Cluster) -> CredentialType:
    """``token`` or ``sso``; when absent, ``sso`` for SSO-enabled clusters, else ``token``."""
    if raw is None or raw == "":
        return "sso" if cluster.sso else "token"
    if raw == "token":
        return "token"
    if raw == "sso":
        return "sso"
    raise ValueError("type must be one of: token, sso")


def token_user(token: str) -> dict[str, Any]:
    return {"token": token}


def certificate_user(pair: KeyPair) -> dict[str, Any]:
    return {"client-certificate-data": _b64(pair.cert_pem), "client-key-data": _b64(pair.key_pem)}


def exec_user(cluster: Cluster) -> dict[str, Any]:
    """What ``doctl kubernetes cluster kubeconfig save`` writes: a command that fetches tokens.

    On an SSO-enabled cluster the command also names the cluster's OIDC issuer and client
    (``--issuer-url=``, ``--client-id=``), the two things the SSO login flow needs; a client
    that inspects an exec kubeconfig can see which identity provider it would be sent to.
    """
    sso = (
        [f"--issuer-url={cluster.sso_issuer_url}", f"--client-id={cluster.sso_client_id}"]
        if cluster.sso
        else []
    )
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "args": [
                "kubernetes",
                "cluster",
                "kubeconfig",
                "exec-credential",
                "--version=v1beta1",
                "--context=default",
                *sso,
                cluster.id,
            ],
            "command": "doctl",
            "env": None,
            "interactiveMode": "IfAvailable",
            "provideClusterInfo": False,
        }
    }


def auth_provider_user() -> dict[str, Any]:
    return {
        "auth-provider": {
            "name": "oidc",
            "config": {"idp-issuer-url": "https://sso.example.com", "client-id": "doks"},
        }
    }


def kubeconfig_document(
    *, cluster: Cluster, server: str, ca_pem: bytes, user: dict[str, Any]
) -> dict[str, Any]:
    name = context_name(cluster)
    return {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server},
                "name": name,
            }
        ],
        "contexts": [{"context": {"cluster": name, "user": user_name(cluster)}, "name": name}],
        "current-context": name,
        "kind": "Config",
        "preferences": {},
        "users": [{"name": user_name(cluster), "user": user}],
    }


def credentials_document(
    *, server: str, ca_pem: bytes, credential: IssuedCredential, certificate: KeyPair | None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "server": server,
        "certificate_authority_data": _b64(ca_pem),
        # Deprecated: only clusters without token authentication return a client certificate.
        "client_certificate_data": _b64(certificate.cert_pem) if certificate else None,
        "client_key_data": _b64(certificate.key_pem) if certificate else None,
        "expires_at": rfc3339_nanoseconds(credential.expires_at),
    }
    if credential.token is not None:
        document["token"] = credential.token
    return document


def render_yaml(document: dict[str, Any]) -> bytes:
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False).encode()


def break_kubeconfig(
    document: dict[str, Any], faults: Iterable[Fault], *, cluster: Cluster
) -> dict[str, Any]:
    """Apply the document-level body faults to a kubeconfig."""
    for fault in faults:
        if fault.kind == "exec_kubeconfig":
            document["users"][0]["user"] = exec_user(cluster)
        elif fault.kind == "auth_provider_kubeconfig":
            document["users"][0]["user"] = auth_provider_user()
        elif fault.kind == "wrong_server":
            server = document["clusters"][0]["cluster"]["server"]
            document["clusters"][0]["cluster"]["server"] = fault.server or _plain_http(server)
        elif fault.kind == "oversized_body":
            document["x-emulator-padding"] = "x" * OVERSIZED_BYTES
    return document


def break_credentials(document: dict[str, Any], faults: Iterable[Fault]) -> dict[str, Any]:
    """Apply the document-level body faults to a ``/credentials`` answer."""
    for fault in faults:
        if fault.kind == "wrong_server":
            document["server"] = fault.server or _plain_http(document["server"])
        elif fault.kind == "oversized_body":
            document["x_emulator_padding"] = "x" * OVERSIZED_BYTES
    return document


def break_bytes(body: bytes, faults: Iterable[Fault], *, yaml_body: bool) -> bytes:
    """Apply ``malformed_body`` (YAML that no parser accepts, or JSON cut in the middle) and
    ``body`` (the test's own bytes instead of the answer)."""
    faults = tuple(faults)
    replaced = next((fault for fault in faults if fault.kind == "body"), None)
    if replaced is not None:
        return replaced.body_bytes
    if any(fault.kind == "malformed_body" for fault in faults):
        return _BROKEN_YAML if yaml_body else body[: len(body) // 2]
    return body


def content_type(faults: Iterable[Fault], *, default: str) -> str:
    """The ``Content-Type`` of an answer: a ``body`` fault's own, or the endpoint's."""
    chosen = (fault.content_type for fault in faults if fault.kind == "body")
    return next((found for found in chosen if found is not None), default)


def _plain_http(server: str) -> str:
    parts = urlsplit(server)
    return urlunsplit(("http", parts.netloc, parts.path, parts.query, parts.fragment))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
