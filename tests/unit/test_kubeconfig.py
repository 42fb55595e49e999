"""The kubeconfig validator accepts what DigitalOcean issues, refuses the rest, and dates it."""

from __future__ import annotations

import base64
import copy
import datetime
from collections.abc import Callable
from typing import Any

import pytest

from doks_access import kubeconfig
from doks_access.kubeconfig import AuthKind, InvalidKubeconfigError, parse_kubeconfig
from tests.unit.conftest import (
    KUBECONFIG_TOKEN,
    SERVER,
    CertificateAuthority,
    b64,
    dump,
)

ISSUED_AT = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.UTC)

Document = dict[str, Any]


def parse(raw: bytes, *, expiry_seconds: int | None = None) -> kubeconfig.Credential:
    return parse_kubeconfig(raw, issued_at=ISSUED_AT, expiry_seconds=expiry_seconds)


def user(document: Document) -> dict[str, Any]:
    return document["users"][0]["user"]  # type: ignore[no-any-return]


def cluster(document: Document) -> dict[str, Any]:
    return document["clusters"][0]["cluster"]  # type: ignore[no-any-return]


# --- what is accepted ---------------------------------------------------------------------------


def test_accepts_the_token_kubeconfig_digitalocean_issues(
    kubeconfig_bytes: bytes, certificate_authority: CertificateAuthority
) -> None:
    credential = parse(kubeconfig_bytes)

    assert credential.raw == kubeconfig_bytes
    assert credential.server == SERVER
    assert credential.ca_pem == certificate_authority.pem
    assert credential.auth_kind is AuthKind.TOKEN
    assert credential.token == KUBECONFIG_TOKEN
    assert credential.client_certificate_pem is None
    assert credential.client_key_pem is None
    assert credential.cluster_name == "do-nyc1-prod-cluster-01"
    assert credential.context_name == "do-nyc1-prod-cluster-01"
    assert credential.user_name == "do-nyc1-prod-cluster-01-admin"
    assert credential.issued_at == ISSUED_AT


def test_keeps_the_raw_bytes_exactly_as_returned(kubeconfig_document: Document) -> None:
    raw = b"# comment kept\n" + dump(kubeconfig_document).replace(b": ", b":   ")

    assert parse(raw).raw == raw


def test_accepts_a_kubeconfig_without_current_context_or_kind(
    kubeconfig_document: Document,
) -> None:
    del kubeconfig_document["current-context"]
    del kubeconfig_document["kind"]

    assert parse(dump(kubeconfig_document)).context_name == "do-nyc1-prod-cluster-01"


def test_accepts_a_ca_bundle_of_several_certificates(
    kubeconfig_document: Document, certificate_authority: CertificateAuthority
) -> None:
    bundle = certificate_authority.pem + CertificateAuthority().pem
    cluster(kubeconfig_document)["certificate-authority-data"] = b64(bundle)

    assert parse(dump(kubeconfig_document)).ca_pem == bundle


def test_accepts_the_legacy_client_certificate_kubeconfig(
    certificate_kubeconfig: Callable[..., Document],
) -> None:
    document = certificate_kubeconfig(not_after=ISSUED_AT + datetime.timedelta(days=30))

    credential = parse(dump(document))

    assert credential.auth_kind is AuthKind.CLIENT_CERTIFICATE
    assert credential.token is None
    assert credential.client_certificate_pem == base64.b64decode(
        user(document)["client-certificate-data"]
    )
    assert credential.client_key_pem == base64.b64decode(user(document)["client-key-data"])


# --- expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("expiry_seconds", [None, 0])
def test_expires_seven_days_after_issue_when_no_expiry_is_asked(
    kubeconfig_bytes: bytes, expiry_seconds: int | None
) -> None:
    credential = parse(kubeconfig_bytes, expiry_seconds=expiry_seconds)

    assert credential.expires_at == ISSUED_AT + datetime.timedelta(days=7)
    assert credential.lifetime == datetime.timedelta(days=7)


def test_expires_the_asked_number_of_seconds_after_issue(kubeconfig_bytes: bytes) -> None:
    credential = parse(kubeconfig_bytes, expiry_seconds=3600)

    assert credential.expires_at == ISSUED_AT + datetime.timedelta(hours=1)


def test_expires_when_the_client_certificate_does_if_that_is_earlier(
    certificate_kubeconfig: Callable[..., Document],
) -> None:
    not_after = ISSUED_AT + datetime.timedelta(days=2)
    document = certificate_kubeconfig(not_after=not_after)

    assert parse(dump(document)).expires_at == not_after


def test_expires_as_asked_when_the_client_certificate_outlives_the_ask(
    certificate_kubeconfig: Callable[..., Document],
) -> None:
    document = certificate_kubeconfig(not_after=ISSUED_AT + datetime.timedelta(days=30))

    credential = parse(dump(document), expiry_seconds=86400)

    assert credential.expires_at == ISSUED_AT + datetime.timedelta(days=1)


def test_refuses_a_client_certificate_that_has_already_expired(
    certificate_kubeconfig: Callable[..., Document],
) -> None:
    document = certificate_kubeconfig(not_after=ISSUED_AT - datetime.timedelta(seconds=1))

    with pytest.raises(InvalidKubeconfigError, match="already expired"):
        parse(dump(document))


def test_wants_an_aware_issue_time(kubeconfig_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_kubeconfig(
            kubeconfig_bytes, issued_at=ISSUED_AT.replace(tzinfo=None), expiry_seconds=None
        )


def test_wants_a_non_negative_expiry(kubeconfig_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse(kubeconfig_bytes, expiry_seconds=-1)


# --- what is refused: the document --------------------------------------------------------------


def test_refuses_a_document_over_one_mebibyte_before_parsing_it() -> None:
    # Not even UTF-8: a parser would fail differently, so the size check must have come first.
    raw = b"\xff" * (kubeconfig.MAX_KUBECONFIG_BYTES + 1)

    with pytest.raises(InvalidKubeconfigError, match="larger than 1048576 bytes"):
        parse(raw)


def test_accepts_a_document_of_exactly_one_mebibyte(kubeconfig_bytes: bytes) -> None:
    padding = kubeconfig.MAX_KUBECONFIG_BYTES - len(kubeconfig_bytes) - 1
    raw = kubeconfig_bytes + b"#" + b" " * padding

    assert len(raw) == kubeconfig.MAX_KUBECONFIG_BYTES
    assert parse(raw).raw == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"users: [\xff]", "not UTF-8 (at byte offset 8)", id="not-utf8"),
        pytest.param(b"users: [unclosed", "not valid YAML", id="bad-yaml"),
        pytest.param(b"a: 1\n a: 2\n\tb", "not valid YAML", id="tab-indent"),
        pytest.param(b"!!python/object/apply:os.system [ls]", "not valid YAML", id="python-tag"),
        pytest.param(b"x: &a [1]\ny: *a\n", "anchors and aliases are not allowed", id="alias"),
        pytest.param(b"kind: Config\nkind: Config\n", "duplicate key (line 1", id="duplicate-key"),
        pytest.param(b"[" * 100 + b"]" * 100, "nested too deeply", id="deep-nesting"),
        pytest.param(
            b"".join(b"  " * level + b"a:\n" for level in range(80)),
            "nested too deeply",
            id="deep-block-nesting",
        ),
        # libyaml's own limit (1,000 levels) refuses this while scanning ahead, before our count.
        pytest.param(b"[" * 5000 + b"]" * 5000, "not valid YAML", id="deeper-than-libyaml"),
        pytest.param(b"", "not a mapping", id="empty"),
        pytest.param(b"- a\n- b\n", "not a mapping", id="list"),
        pytest.param(b"just text", "not a mapping", id="scalar"),
        pytest.param(b"kind: Pod\n", "kind is not Config", id="wrong-kind"),
    ],
)
def test_refuses_what_is_not_a_plain_yaml_kubeconfig(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidKubeconfigError) as raised:
        parse(raw)

    assert reason in raised.value.reason


def test_refuses_a_repeated_key_that_another_parser_would_read_differently(
    kubeconfig_bytes: bytes,
) -> None:
    # PyYAML keeps the last `users`, Go's yaml refuses the document: neither may see an `exec`.
    hidden = b"users:\n- name: x\n  user:\n    exec: {command: sh}\n"

    with pytest.raises(InvalidKubeconfigError, match="duplicate key"):
        parse(hidden + kubeconfig_bytes)


def test_yaml_errors_give_the_position_but_not_the_line(kubeconfig_document: Document) -> None:
    raw = dump(kubeconfig_document).replace(
        f"token: {KUBECONFIG_TOKEN}".encode(), f"token: {KUBECONFIG_TOKEN}: x".encode()
    )

    with pytest.raises(InvalidKubeconfigError) as raised:
        parse(raw)

    assert "(line " in str(raised.value)
    assert KUBECONFIG_TOKEN not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


# --- what is refused: the structure --------------------------------------------------------------


def _drop(section: str) -> Callable[[Document], None]:
    return lambda document: document.pop(section)


def _duplicate(section: str) -> Callable[[Document], None]:
    return lambda document: document[section].append(copy.deepcopy(document[section][0]))


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        target: Any = document
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[Document], None]:
    def mutate(document: Document) -> None:
        target: Any = document
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return mutate


CLUSTER = ("clusters", 0, "cluster")
USER = ("users", 0, "user")
CONTEXT = ("contexts", 0, "context")

STRUCTURE_RULES = [
    pytest.param(_drop("clusters"), "clusters is missing or not a list", id="no-clusters"),
    pytest.param(_set(("clusters",), []), "clusters has 0 entries", id="zero-clusters"),
    pytest.param(_duplicate("clusters"), "clusters has 2 entries", id="two-clusters"),
    pytest.param(
        _set(("clusters",), {"a": 1}), "clusters is missing or not a list", id="clusters-map"
    ),
    pytest.param(_set(("clusters", 0), "x"), "clusters[0] is not a mapping", id="cluster-scalar"),
    pytest.param(
        _delete(("clusters", 0, "name")), "clusters[0].name is missing", id="cluster-nameless"
    ),
    pytest.param(
        _set(("clusters", 0, "name"), 7), "clusters[0].name is missing", id="cluster-name-int"
    ),
    pytest.param(_delete(CLUSTER), "clusters[0].cluster is missing", id="cluster-bodyless"),
    pytest.param(_drop("users"), "users is missing or not a list", id="no-users"),
    pytest.param(_duplicate("users"), "users has 2 entries", id="two-users"),
    pytest.param(_set(("users", 0, "user"), None), "users[0].user is missing", id="user-null"),
    pytest.param(_drop("contexts"), "contexts is missing or not a list", id="no-contexts"),
    pytest.param(_duplicate("contexts"), "contexts has 2 entries", id="two-contexts"),
    pytest.param(
        _delete(("contexts", 0, "name")), "contexts[0].name is missing", id="context-nameless"
    ),
    pytest.param(
        _set((*CONTEXT, "cluster"), "elsewhere"),
        "contexts[0].context.cluster does not name the cluster",
        id="context-other-cluster",
    ),
    pytest.param(
        _set((*CONTEXT, "user"), "someone-else"),
        "contexts[0].context.user does not name the user",
        id="context-other-user",
    ),
    pytest.param(
        _set(("current-context",), "another"),
        "current-context does not name the context",
        id="current-context-other",
    ),
]


@pytest.mark.parametrize(("mutate", "reason"), STRUCTURE_RULES)
def test_refuses_anything_but_one_cluster_one_user_one_context(
    kubeconfig_document: Document, mutate: Callable[[Document], None], reason: str
) -> None:
    mutate(kubeconfig_document)

    with pytest.raises(InvalidKubeconfigError) as raised:
        parse(dump(kubeconfig_document))

    assert reason in raised.value.reason


# --- what is refused: the cluster ---------------------------------------------------------------

CLUSTER_RULES = [
    pytest.param(_delete((*CLUSTER, "server")), "server is not an https:// URL", id="no-server"),
    pytest.param(_set((*CLUSTER, "server"), 443), "server is not an https:// URL", id="server-int"),
    pytest.param(
        _set((*CLUSTER, "server"), SERVER.replace("https", "http")),
        "server is not an https:// URL",
        id="plain-http",
    ),
    pytest.param(
        _set((*CLUSTER, "server"), "https://"), "server is not an https:// URL", id="no-host"
    ),
    pytest.param(
        _set((*CLUSTER, "server"), "https://host:notaport"),
        "server is not an https:// URL",
        id="bad-port",
    ),
    pytest.param(
        _set((*CLUSTER, "server"), "https://user:pw@host"),
        "server is not an https:// URL",
        id="userinfo",
    ),
    pytest.param(
        _delete((*CLUSTER, "certificate-authority-data")),
        "certificate-authority-data is missing",
        id="no-ca",
    ),
    pytest.param(
        _set((*CLUSTER, "certificate-authority-data"), "not base64!"),
        "certificate-authority-data is not valid base64",
        id="ca-not-base64",
    ),
    pytest.param(
        _set((*CLUSTER, "certificate-authority-data"), b64(b"plain text, no PEM")),
        "certificate-authority-data is not a PEM certificate",
        id="ca-not-pem",
    ),
    pytest.param(
        _set(
            (*CLUSTER, "certificate-authority-data"),
            b64(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        ),
        "certificate-authority-data does not hold a valid X.509 certificate",
        id="ca-garbage-in-pem",
    ),
    pytest.param(
        _set((*CLUSTER, "certificate-authority"), "/etc/ca.pem"),
        "clusters[0].cluster.certificate-authority is not allowed",
        id="ca-file-path",
    ),
    pytest.param(
        _set((*CLUSTER, "insecure-skip-tls-verify"), True),
        "insecure-skip-tls-verify is set",
        id="insecure",
    ),
    pytest.param(
        _set((*CLUSTER, "insecure-skip-tls-verify"), "true"),
        "insecure-skip-tls-verify is set",
        id="insecure-string",
    ),
    pytest.param(
        _set((*CLUSTER, "proxy-url"), "http://proxy.example:3128"),
        "clusters[0].cluster.proxy-url is not allowed",
        id="proxy-url",
    ),
]


@pytest.mark.parametrize(("mutate", "reason"), CLUSTER_RULES)
def test_refuses_a_cluster_without_an_https_server_and_a_pinned_ca(
    kubeconfig_document: Document, mutate: Callable[[Document], None], reason: str
) -> None:
    mutate(kubeconfig_document)

    with pytest.raises(InvalidKubeconfigError) as raised:
        parse(dump(kubeconfig_document))

    assert reason in raised.value.reason


def test_accepts_insecure_skip_tls_verify_when_it_is_false(kubeconfig_document: Document) -> None:
    cluster(kubeconfig_document)["insecure-skip-tls-verify"] = False

    assert parse(dump(kubeconfig_document)).server == SERVER


# --- what is refused: the user ------------------------------------------------------------------

EXEC = {"apiVersion": "client.authentication.k8s.io/v1", "command": "doctl", "args": ["x"]}

USER_RULES = [
    pytest.param(_set((*USER, "exec"), EXEC), "users[0].user.exec is not allowed", id="exec"),
    pytest.param(
        _set(USER, {"exec": EXEC}), "users[0].user.exec is not allowed", id="exec-without-token"
    ),
    pytest.param(
        _set((*USER, "auth-provider"), {"name": "oidc", "config": {}}),
        "users[0].user.auth-provider is not allowed",
        id="auth-provider",
    ),
    pytest.param(
        _set((*USER, "tokenFile"), "/var/run/token"),
        "users[0].user.tokenFile is not allowed",
        id="token-file",
    ),
    pytest.param(
        _set(USER, {"username": "admin", "password": "pw"}),
        "users[0].user.username is not allowed",
        id="basic-auth",
    ),
    pytest.param(
        _set(USER, {"password": "pw", "token": KUBECONFIG_TOKEN}),
        "users[0].user.password is not allowed",
        id="password",
    ),
    pytest.param(
        _set(USER, {"client-certificate": "/c.pem", "client-key": "/k.pem"}),
        "users[0].user.client-certificate is not allowed",
        id="certificate-paths",
    ),
    pytest.param(
        _set(USER, {"client-key": "/k.pem", "token": KUBECONFIG_TOKEN}),
        "users[0].user.client-key is not allowed",
        id="key-path",
    ),
    pytest.param(
        _set(USER, {}), "has neither a token nor a client certificate", id="no-credential"
    ),
    pytest.param(_set((*USER, "token"), ""), "users[0].user.token is empty", id="empty-token"),
    pytest.param(_set((*USER, "token"), 12345), "users[0].user.token is empty", id="int-token"),
]


@pytest.mark.parametrize(("mutate", "reason"), USER_RULES)
def test_refuses_a_user_that_is_not_a_plain_token(
    kubeconfig_document: Document, mutate: Callable[[Document], None], reason: str
) -> None:
    mutate(kubeconfig_document)

    with pytest.raises(InvalidKubeconfigError) as raised:
        parse(dump(kubeconfig_document))

    assert reason in raised.value.reason


CERTIFICATE_RULES = [
    pytest.param(
        lambda user: user.update(token=KUBECONFIG_TOKEN),
        "has both a token and a client certificate",
        id="token-and-certificate",
    ),
    pytest.param(
        lambda user: user.pop("client-key-data"),
        "users[0].user.client-key-data is missing",
        id="certificate-without-key",
    ),
    pytest.param(
        lambda user: user.pop("client-certificate-data"),
        "users[0].user.client-certificate-data is missing",
        id="key-without-certificate",
    ),
    pytest.param(
        lambda user: user.update({"client-certificate-data": b64(b"no pem here")}),
        "client-certificate-data is not a PEM certificate",
        id="certificate-not-pem",
    ),
    pytest.param(
        lambda user: user.update({"client-key-data": "%%%"}),
        "client-key-data is not valid base64",
        id="key-not-base64",
    ),
    pytest.param(
        lambda user: user.update({"client-key-data": b64(b"-----BEGIN PRIVATE KEY-----\nAA\n")}),
        "client-key-data is not an unencrypted PEM private key",
        id="key-garbage",
    ),
]


@pytest.mark.parametrize(("mutate", "reason"), CERTIFICATE_RULES)
def test_refuses_a_client_certificate_that_is_incomplete_or_broken(
    certificate_kubeconfig: Callable[..., Document],
    mutate: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    document = certificate_kubeconfig(not_after=ISSUED_AT + datetime.timedelta(days=30))
    mutate(user(document))

    with pytest.raises(InvalidKubeconfigError) as raised:
        parse(dump(document))

    assert reason in raised.value.reason


def test_refuses_a_client_key_that_does_not_match_the_certificate(
    certificate_kubeconfig: Callable[..., Document], certificate_authority: CertificateAuthority
) -> None:
    not_after = ISSUED_AT + datetime.timedelta(days=30)
    document = certificate_kubeconfig(not_after=not_after)
    _, other_key_pem = certificate_authority.issue_client_certificate(not_after=not_after)
    user(document)["client-key-data"] = b64(other_key_pem)

    with pytest.raises(InvalidKubeconfigError, match="does not match the client certificate"):
        parse(dump(document))


# --- secrets stay secret ------------------------------------------------------------------------


ALL_RULES = STRUCTURE_RULES + CLUSTER_RULES + USER_RULES


@pytest.mark.parametrize(("mutate", "reason"), ALL_RULES)
def test_refusals_never_quote_the_token(
    kubeconfig_document: Document, mutate: Callable[[Document], None], reason: str
) -> None:
    mutate(kubeconfig_document)

    with pytest.raises(InvalidKubeconfigError) as raised:
        parse(dump(kubeconfig_document))

    error: BaseException | None = raised.value
    while error is not None:
        assert KUBECONFIG_TOKEN not in str(error)
        assert KUBECONFIG_TOKEN not in repr(error)
        error = error.__cause__


def test_the_credential_never_shows_its_token_or_key(
    kubeconfig_bytes: bytes, certificate_kubeconfig: Callable[..., Document]
) -> None:
    token_credential = parse(kubeconfig_bytes)
    certificate_credential = parse(
        dump(certificate_kubeconfig(not_after=ISSUED_AT + datetime.timedelta(days=3)))
    )
    assert certificate_credential.client_key_pem is not None
    key_line = certificate_credential.client_key_pem.splitlines()[1].decode()

    for text in (repr(token_credential), str(token_credential)):
        assert KUBECONFIG_TOKEN not in text
        assert "do-nyc1-prod-cluster-01" in text  # the rest is still there to help debugging
    for text in (repr(certificate_credential), str(certificate_credential)):
        assert key_line not in text
        assert "PRIVATE KEY" not in text
