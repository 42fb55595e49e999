"""Parse and validate the kubeconfig DigitalOcean returns, before anything is written (DESIGN 4.2).

The operator copies this kubeconfig into a Secret that other programs load and act on. A kubeconfig
is executable configuration: ``exec`` and ``auth-provider`` make the consumer run a command or a
plugin, file paths make it read its own disk. So what we pass on must have the narrow shape
DigitalOcean documents -- one cluster, one user, one context, a CA to pin, a bearer token (or the
legacy client certificate) -- and nothing that changes how a consumer behaves. A compromised or
misconfigured upstream must not be able to make consumers run commands.

The module is pure: no I/O and no clock. The caller passes the bytes and the moment the request was
*sent*; the result is a :class:`Credential` that knows when it expires.

What is refused, and why:

- More than 1 MiB, checked before parsing: a kubeconfig is a few KiB; a huge body is a fault or an
  attack on the parser, and Secrets cap out at 1 MiB anyway.
- Anything but plain YAML data: ``yaml.safe_load`` semantics (no Python tags), plus no anchors or
  aliases and no duplicate keys. YAML libraries disagree on those (PyYAML keeps the last duplicate;
  Go's yaml refuses the document), and a disagreement between this check and a consumer's parser
  could hide a stanza from us that the consumer would honour.
- ``exec`` and ``auth-provider``: they run code on the consumer's side.
- File paths (``certificate-authority``, ``client-certificate``, ``client-key``, ``tokenFile``): the
  Secret must be the whole credential; a path points into whatever disk the consumer runs on.
- ``insecure-skip-tls-verify: true``: the CA in the kubeconfig is what makes the token safe to send.
- ``proxy-url``: DigitalOcean never sets it, and it would route consumers' traffic through a host
  the upstream chose.
- ``username``/``password``: basic auth is not something DigitalOcean issues, and it would be a
  second, non-expiring credential riding along.
- A token together with a client certificate: one credential has one expiry; two would be
  ambiguous (and DigitalOcean never sends both).

Error messages name the field that failed (``users[0].user.exec``) and never a value: the values
are tokens, keys and certificates.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import enum
import urllib.parse
from collections.abc import Hashable, Mapping
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_KUBECONFIG_BYTES",
    "AuthKind",
    "Credential",
    "InvalidKubeconfigError",
    "parse_kubeconfig",
]

MAX_KUBECONFIG_BYTES = 1024 * 1024
# DigitalOcean's lifetime when `expiry_seconds` is absent or 0 (DESIGN 4.1).
DEFAULT_LIFETIME = datetime.timedelta(days=7)

_FORBIDDEN_CLUSTER_FIELDS = ("certificate-authority", "proxy-url")
_FORBIDDEN_USER_FIELDS = (
    "exec",
    "auth-provider",
    "tokenFile",
    "client-certificate",
    "client-key",
    "username",
    "password",
)
_PEM_CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
# A kubeconfig nests about six levels deep; anything near Python's recursion limit is an attack.
_MAX_NESTING = 64


class InvalidKubeconfigError(ValueError):
    """The kubeconfig is not one we are willing to hand to consumers; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid kubeconfig: {reason}")
        self.reason = reason


class AuthKind(enum.Enum):
    """How the kubeconfig's user authenticates to the cluster."""

    TOKEN = "token"  # noqa: S105 - the name of a kind, not a secret
    CLIENT_CERTIFICATE = "client-certificate"


@dataclasses.dataclass(frozen=True)
class Credential:
    """A validated kubeconfig and what the operator needs to know about it.

    Secret material (the raw document, the token, the client key) is excluded from ``repr`` so that
    logging a credential, or an object holding one, never prints it.
    """

    raw: bytes = dataclasses.field(repr=False)  # the kubeconfig exactly as DigitalOcean returned it
    server: str
    ca_pem: bytes = dataclasses.field(repr=False)
    auth_kind: AuthKind
    token: str | None = dataclasses.field(repr=False)
    client_certificate_pem: bytes | None = dataclasses.field(repr=False)
    client_key_pem: bytes | None = dataclasses.field(repr=False)
    cluster_name: str
    context_name: str
    user_name: str
    issued_at: datetime.datetime
    expires_at: datetime.datetime

    @property
    def lifetime(self) -> datetime.timedelta:
        return self.expires_at - self.issued_at


@dataclasses.dataclass(frozen=True)
class _ClientCertificate:
    certificate_pem: bytes
    key_pem: bytes
    not_after: datetime.datetime


def parse_kubeconfig(
    raw: bytes,
    *,
    issued_at: datetime.datetime,
    expiry_seconds: int | None,
) -> Credential:
    """Validate ``raw`` and return its credential, or raise :class:`InvalidKubeconfigError`.

    ``issued_at`` is when the request was sent (an aware datetime); ``expiry_seconds`` is what was
    asked for (``None`` or 0: DigitalOcean's default of 7 days).
    """
    if issued_at.tzinfo is None:
        raise ValueError("issued_at must be timezone-aware")
    if expiry_seconds is not None and expiry_seconds < 0:
        raise ValueError("expiry_seconds must not be negative")
    document = _load_document(raw)
    cluster_name, cluster = _single_entry(document, section="clusters", body_key="cluster")
    user_name, user = _single_entry(document, section="users", body_key="user")
    context_name, context = _single_entry(document, section="contexts", body_key="context")
    _check_context(context, cluster_name=cluster_name, user_name=user_name)
    _check_current_context(document, context_name=context_name)
    server, ca_pem = _check_cluster(cluster)
    token, client_certificate = _check_user(user)
    expires_at = issued_at + _requested_lifetime(expiry_seconds)
    certificate_pem = key_pem = None
    if client_certificate is not None:
        if client_certificate.not_after <= issued_at:
            raise InvalidKubeconfigError("the client certificate has already expired")
        expires_at = min(expires_at, client_certificate.not_after)
        certificate_pem, key_pem = client_certificate.certificate_pem, client_certificate.key_pem
    return Credential(
        raw=raw,
        server=server,
        ca_pem=ca_pem,
        auth_kind=AuthKind.TOKEN if token is not None else AuthKind.CLIENT_CERTIFICATE,
        token=token,
        client_certificate_pem=certificate_pem,
        client_key_pem=key_pem,
        cluster_name=cluster_name,
        context_name=context_name,
        user_name=user_name,
        issued_at=issued_at,
        expires_at=expires_at,
    )


def _requested_lifetime(expiry_seconds: int | None) -> datetime.timedelta:
    if not expiry_seconds:
        return DEFAULT_LIFETIME
    return datetime.timedelta(seconds=expiry_seconds)


class _RefusedYAMLError(yaml.MarkedYAMLError):
    """Valid YAML that a kubeconfig has no business using; ``problem`` is our own wording."""


class _StrictSafeLoader(yaml.CSafeLoader):
    """libyaml's safe loader, refusing duplicate keys (aliases and depth: see :func:`_screen`).

    libyaml parses and composes in C, several times faster than PyYAML's Python parser; a burst of
    a thousand objects spent a tenth of the operator's CPU time in it.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        # After merge keys are flattened, fewer keys than entries means a key was repeated.
        if len(mapping) != len(node.value):
            raise _RefusedYAMLError(problem="duplicate key", problem_mark=node.start_mark)
        return mapping


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictSafeLoader.construct_mapping
)


def _mark(event: yaml.Event) -> yaml.error.Mark | None:
    """Where ``event`` starts, as PyYAML's own type (libyaml's has the same line and column)."""
    start = event.start_mark
    if start is None:
        return None
    return yaml.error.Mark("<kubeconfig>", 0, start.line, start.column, None, 0)


def _screen(text: str) -> None:
    """Refuse anchors, aliases and deep nesting from the event stream, before anything recurses.

    libyaml composes nodes recursively in C: a body of nested brackets must be refused before
    that, or it would exhaust the stack instead of failing cleanly.
    """
    depth = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _RefusedYAMLError(
                problem="anchors and aliases are not allowed", problem_mark=_mark(event)
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_NESTING:
                raise _RefusedYAMLError(problem="nested too deeply", problem_mark=_mark(event))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _load_document(raw: bytes) -> Mapping[str, Any]:
    if len(raw) > MAX_KUBECONFIG_BYTES:
        raise InvalidKubeconfigError(f"larger than {MAX_KUBECONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # `from None`: the decode error's repr carries the whole body, token included.
        raise InvalidKubeconfigError(f"not UTF-8 (at byte offset {exc.start})") from None
    try:
        _screen(text)
        document = yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _RefusedYAMLError as exc:
        raise InvalidKubeconfigError(f"{exc.problem}{_yaml_position(exc)}") from None
    except yaml.YAMLError as exc:
        # `from None`: YAML errors quote the offending line, which may be the token's line.
        raise InvalidKubeconfigError(f"not valid YAML{_yaml_position(exc)}") from None
    if not isinstance(document, Mapping):
        raise InvalidKubeconfigError("the document is not a mapping")
    if document.get("kind", "Config") != "Config":
        raise InvalidKubeconfigError("kind is not Config")
    return document


def _yaml_position(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def _single_entry(
    document: Mapping[str, Any], *, section: str, body_key: str
) -> tuple[str, Mapping[str, Any]]:
    """The name and body of the single entry of ``clusters``, ``users`` or ``contexts``."""
    entries = document.get(section)
    if not isinstance(entries, list):
        raise InvalidKubeconfigError(f"{section} is missing or not a list")
    if len(entries) != 1:
        raise InvalidKubeconfigError(
            f"{section} has {len(entries)} entries; exactly one is required"
        )
    entry = entries[0]
    if not isinstance(entry, Mapping):
        raise InvalidKubeconfigError(f"{section}[0] is not a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidKubeconfigError(f"{section}[0].name is missing or not a string")
    body = entry.get(body_key)
    if not isinstance(body, Mapping):
        raise InvalidKubeconfigError(f"{section}[0].{body_key} is missing or not a mapping")
    return name, body


def _check_context(context: Mapping[str, Any], *, cluster_name: str, user_name: str) -> None:
    if context.get("cluster") != cluster_name:
        raise InvalidKubeconfigError("contexts[0].context.cluster does not name the cluster")
    if context.get("user") != user_name:
        raise InvalidKubeconfigError("contexts[0].context.user does not name the user")


def _check_current_context(document: Mapping[str, Any], *, context_name: str) -> None:
    if "current-context" in document and document["current-context"] != context_name:
        raise InvalidKubeconfigError("current-context does not name the context")


def _check_cluster(cluster: Mapping[str, Any]) -> tuple[str, bytes]:
    """The server URL and the CA bundle (PEM) of ``clusters[0].cluster``."""
    _refuse_fields(cluster, _FORBIDDEN_CLUSTER_FIELDS, where="clusters[0].cluster")
    if cluster.get("insecure-skip-tls-verify", False) is not False:
        raise InvalidKubeconfigError("clusters[0].cluster.insecure-skip-tls-verify is set")
    server = cluster.get("server")
    if not isinstance(server, str) or not _is_https_url(server):
        raise InvalidKubeconfigError("clusters[0].cluster.server is not an https:// URL")
    ca_pem = _decode_base64(
        cluster.get("certificate-authority-data"),
        where="clusters[0].cluster.certificate-authority-data",
    )
    _load_certificates(ca_pem, where="clusters[0].cluster.certificate-authority-data")
    return server, ca_pem


def _is_https_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
        port = parts.port  # raises on a malformed port
    except ValueError:
        return False
    del port
    # Credentials in the URL would ride along to every consumer; a server URL never has them.
    no_userinfo = parts.username is None and parts.password is None
    return parts.scheme == "https" and bool(hostname) and no_userinfo


def _check_user(user: Mapping[str, Any]) -> tuple[str | None, _ClientCertificate | None]:
    """Exactly one of: the bearer token, or the (legacy) client certificate and key."""
    _refuse_fields(user, _FORBIDDEN_USER_FIELDS, where="users[0].user")
    has_token = "token" in user
    has_certificate = "client-certificate-data" in user or "client-key-data" in user
    if has_token and has_certificate:
        raise InvalidKubeconfigError("users[0].user has both a token and a client certificate")
    if has_token:
        token = user["token"]
        if not isinstance(token, str) or not token:
            raise InvalidKubeconfigError("users[0].user.token is empty or not a string")
        return token, None
    if has_certificate:
        return None, _check_client_certificate(user)
    raise InvalidKubeconfigError("users[0].user has neither a token nor a client certificate")


def _check_client_certificate(user: Mapping[str, Any]) -> _ClientCertificate:
    where_certificate = "users[0].user.client-certificate-data"
    where_key = "users[0].user.client-key-data"
    if "client-certificate-data" not in user:
        raise InvalidKubeconfigError(f"{where_certificate} is missing")
    if "client-key-data" not in user:
        raise InvalidKubeconfigError(f"{where_key} is missing")
    certificate_pem = _decode_base64(user["client-certificate-data"], where=where_certificate)
    key_pem = _decode_base64(user["client-key-data"], where=where_key)
    certificate = _load_certificates(certificate_pem, where=where_certificate)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKubeconfigError(f"{where_key} is not an unencrypted PEM private key") from exc
    if _public_key_der(key.public_key()) != _public_key_der(certificate.public_key()):
        raise InvalidKubeconfigError(f"{where_key} does not match the client certificate")
    return _ClientCertificate(
        certificate_pem=certificate_pem,
        key_pem=key_pem,
        not_after=certificate.not_valid_after_utc,
    )


def _public_key_der(key: Any) -> bytes:
    encoded: bytes = key.public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return encoded


def _refuse_fields(section: Mapping[str, Any], fields: tuple[str, ...], *, where: str) -> None:
    for field in fields:
        if field in section:
            raise InvalidKubeconfigError(f"{where}.{field} is not allowed")


def _decode_base64(value: object, *, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidKubeconfigError(f"{where} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKubeconfigError(f"{where} is not valid base64") from exc


def _load_certificates(pem: bytes, *, where: str) -> list[x509.Certificate]:
    if _PEM_CERTIFICATE_MARKER not in pem:
        raise InvalidKubeconfigError(f"{where} is not a PEM certificate")
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidKubeconfigError(f"{where} does not hold a valid X.509 certificate") from exc
