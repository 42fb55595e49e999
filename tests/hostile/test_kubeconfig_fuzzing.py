"""The kubeconfig validator, fed anything: it returns a credential or raises its own error.

Whatever the bytes -- garbage, YAML of any shape, a good kubeconfig with one thing changed -- the
validator either accepts them or raises :class:`InvalidKubeconfigError` (never another exception,
which would escape the reconciler's handling), finishes quickly, and never quotes the token or key
it was given. No cluster needed.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from doks_access.kubeconfig import Credential, InvalidKubeconfigError, parse_kubeconfig
from tests.hostile import bodies
from tests.hostile.bodies import SECRET
from tests.unit.conftest import CertificateAuthority

ISSUED_AT = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.UTC)
AUTHORITY = CertificateAuthority()
CERTIFICATE_PEM, KEY_PEM = AUTHORITY.issue_client_certificate(
    not_after=ISSUED_AT + datetime.timedelta(days=30)
)
# A line from the middle of the private key: it must never be quoted either.
KEY_LINE = KEY_PEM.decode().splitlines()[2]
KEY_DATA = base64.b64encode(KEY_PEM).decode()
# Cheap examples: many more of them than for the cluster tests; a deadline proves no hang.
FAST = settings(max_examples=settings().max_examples * 20, deadline=datetime.timedelta(seconds=5))


def _refused_or_accepted(raw: bytes) -> Credential | None:
    """The property itself: a credential, or our error with nothing secret in it."""
    try:
        return parse_kubeconfig(raw, issued_at=ISSUED_AT, expiry_seconds=3600)
    except InvalidKubeconfigError as exc:
        texts = []
        error: BaseException | None = exc
        while error is not None:  # a traceback shows the chain, but for a context `from None`
            texts += [str(error), repr(error)]
            shown_context = None if error.__suppress_context__ else error.__context__
            error = error.__cause__ or shown_context
        for secret in (SECRET, KEY_LINE, KEY_DATA[:40]):
            assert not [text for text in texts if secret in text]
        return None


def _kubeconfig(*, certificate: bool) -> dict[str, Any]:
    user = {"token": SECRET}
    if certificate:
        user = {
            "client-certificate-data": base64.b64encode(CERTIFICATE_PEM).decode(),
            "client-key-data": KEY_DATA,
        }
    return bodies.kubeconfig(ca_pem=AUTHORITY.pem, user=user)


_KEYS = st.sampled_from(
    [
        "clusters",
        "users",
        "contexts",
        "cluster",
        "user",
        "context",
        "name",
        "server",
        "token",
        "exec",
        "auth-provider",
        "certificate-authority-data",
        "client-key-data",
        "insecure-skip-tls-verify",
        "current-context",
        "kind",
    ]
)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.just(SECRET),
    st.just(bodies.SERVER),
    st.just(KEY_DATA),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_KEYS, st.text(max_size=10)), inner, max_size=5),
    ),
    max_leaves=40,
)


def _set_at(document: Any, path: list[int], value: Any) -> Any:
    """``document`` with the node that ``path`` picks (indices into children) replaced."""
    if not path or not isinstance(document, dict | list) or not document:
        return value
    keys = list(document) if isinstance(document, dict) else list(range(len(document)))
    key = keys[path[0] % len(keys)]
    document[key] = _set_at(document[key], path[1:], value)
    return document


@FAST
@given(raw=st.binary(max_size=4096), secret_at=st.integers(0, 4096))
def test_arbitrary_bytes_are_refused_without_quoting_them(raw: bytes, secret_at: int) -> None:
    raw = raw[:secret_at] + SECRET.encode() + raw[secret_at:]
    assert _refused_or_accepted(raw) is None


@FAST
@given(tree=_TREES, as_json=st.booleans())
def test_any_yaml_structure_is_accepted_or_refused_with_our_error(tree: Any, as_json: bool) -> None:
    raw = json.dumps(tree).encode() if as_json else yaml.safe_dump(tree).encode()
    _refused_or_accepted(raw)


@FAST
@given(
    certificate=st.booleans(),
    path=st.lists(st.integers(0, 10), max_size=6),
    value=_TREES,
)
def test_a_valid_kubeconfig_with_one_node_replaced_is_never_a_crash(
    certificate: bool, path: list[int], value: Any
) -> None:
    document = _set_at(copy.deepcopy(_kubeconfig(certificate=certificate)), path, value)
    _refused_or_accepted(yaml.safe_dump(document).encode())


@FAST
@given(
    certificate=st.booleans(),
    position=st.integers(0, 10_000),
    cut=st.integers(0, 50),
    insert=st.binary(max_size=20),
)
def test_a_valid_kubeconfig_with_its_bytes_damaged_is_never_a_crash(
    certificate: bool, position: int, cut: int, insert: bytes
) -> None:
    raw = yaml.safe_dump(_kubeconfig(certificate=certificate)).encode()
    position %= len(raw)
    damaged = raw[:position] + insert + raw[position + cut :]
    credential = _refused_or_accepted(damaged)
    if credential is not None:  # damage that still validates (a comment, another host name)
        assert credential.raw == damaged
        assert credential.server.startswith("https://")


@pytest.mark.parametrize("certificate", [False, True], ids=["token", "client-certificate"])
def test_the_undamaged_kubeconfigs_are_accepted(certificate: bool) -> None:
    credential = _refused_or_accepted(yaml.safe_dump(_kubeconfig(certificate=certificate)).encode())
    assert credential is not None


@pytest.mark.parametrize(
    "hostile", bodies.catalogue(ca_pem=AUTHORITY.pem), ids=lambda hostile: hostile.id
)
def test_every_catalogued_hostile_answer_is_refused(hostile: bodies.HostileBody) -> None:
    assert _refused_or_accepted(hostile.body) is None
