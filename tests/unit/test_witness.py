"""The session's token grep (``tests/witness.py``) really finds what it is there to find.

Every session ends with the witness scanning logs, recorded Events and status, and metrics
scrapes for token material; a scanner that could not fail would prove nothing. These tests plant
secrets, whole, sliced and encoded, in a directory laid out like pytest's basetemp.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, DEMO_TOKEN, Emulator, EmulatorConfig
from doks_access_testkit.emulator import server as emulator_server
from tests import witness
from tests.witness import Secret, SecretRegistry, files_to_scan, scan

TOKEN = secrets.token_hex(32)  # the shape of the emulator's bearer tokens
PLANTED = Secret(TOKEN, "planted")


def _log(basetemp: Path, text: str, name: str = "operator0/operator.log") -> Path:
    path = basetemp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"2030-01-01 INFO [ns/prod] fetching a credential\n{text}\nmore\n")
    return path


@pytest.mark.parametrize(
    "leak",
    [
        pytest.param(lambda t: f"Authorization: Bearer {t}", id="whole"),
        pytest.param(lambda t: f"token={t[:16]}...", id="truncated-to-16"),
        pytest.param(lambda t: f"...{t[30:50]}", id="a-slice-from-the-middle"),
        pytest.param(
            lambda t: base64.b64encode(f"users:\n- user:\n    token: {t}\n".encode()).decode(),
            id="base64-inside-a-kubeconfig",
        ),
        pytest.param(
            lambda t: json.dumps({"message": f"bad token {t}"}), id="inside-a-json-record"
        ),
    ],
)
def test_a_planted_token_is_found_with_its_file_and_line(tmp_path: Path, leak: object) -> None:
    assert callable(leak)
    path = _log(tmp_path, leak(TOKEN))

    hits, figures = scan(files_to_scan(tmp_path), [PLANTED])

    assert [(hit.path, hit.line) for hit in hits] == [(path, 2)]
    assert figures.files == 1
    assert figures.lines == 3


def test_a_hit_shows_the_first_six_characters_of_the_secret_only(tmp_path: Path) -> None:
    _log(tmp_path, TOKEN)

    (hit,) = scan(files_to_scan(tmp_path), [PLANTED])[0]

    assert TOKEN[:6] in str(hit)
    assert TOKEN[:7] not in str(hit)


def test_fifteen_characters_of_a_token_are_not_yet_a_leak(tmp_path: Path) -> None:
    _log(tmp_path, f"id {TOKEN[:15]} and {TOKEN[-15:]}")

    assert scan(files_to_scan(tmp_path), [PLANTED])[0] == []


def test_records_and_scrapes_are_scanned_and_files_that_hold_credentials_by_design_are_not(
    tmp_path: Path,
) -> None:
    for name in ("witness/events.jsonl", "operator3/scrape-1.prom", "t/kubeconfig", "t/x.yaml"):
        _log(tmp_path, TOKEN, name)

    hits, _ = scan(files_to_scan(tmp_path), [PLANTED])

    assert sorted(hit.path.relative_to(tmp_path).as_posix() for hit in hits) == [
        "operator3/scrape-1.prom",
        "witness/events.jsonl",
    ]


def _key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_a_private_key_is_found_as_pem_and_as_client_key_data_and_no_other_key_is(
    tmp_path: Path,
) -> None:
    key, other = _key_pem(), _key_pem()
    searched = witness.private_key_secrets(key, what="planted")
    _log(tmp_path, key.decode(), "pem.log")
    _log(tmp_path, f"client-key-data: {base64.b64encode(key).decode()}", "data.log")
    # Another key of the same type shares its armour and DER prefix: no false positive.
    _log(tmp_path, other.decode(), "other-pem.log")
    _log(tmp_path, f"client-key-data: {base64.b64encode(other).decode()}", "other-data.log")

    hits, _ = scan(files_to_scan(tmp_path), searched)

    assert sorted({hit.path.name for hit in hits}) == ["data.log", "pem.log"]


def _secret(data: dict[str, str]) -> client.V1Secret:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name="prod-kubeconfig", namespace="team"), data=encoded
    )


def test_credentials_are_harvested_from_every_format_the_operator_writes() -> None:
    key = _key_pem()
    kubeconfig = {"users": [{"name": "u", "user": {"token": TOKEN}}]}
    legacy = {"users": [{"user": {"client-key-data": base64.b64encode(key).decode()}}]}
    argocd = {"name": "prod", "config": json.dumps({"bearerToken": TOKEN[::-1]})}

    found = {
        s.value
        for data in (
            {"kubeconfig": yaml.safe_dump(kubeconfig)},
            {"value": yaml.safe_dump(legacy)},
            argocd,
        )
        for s in witness.credentials_in_secret(_secret(data))
    }

    assert found == {
        TOKEN,
        TOKEN[::-1],
        *(s.value for s in witness.private_key_secrets(key, what="")),
    }


@pytest.fixture
def registry() -> Iterator[SecretRegistry]:
    registry = SecretRegistry()
    emulator_server.creation_hooks.append(registry.watch_emulator)
    yield registry
    emulator_server.creation_hooks.remove(registry.watch_emulator)


def test_every_emulator_created_tells_the_registry_its_tokens_and_what_it_issues(
    registry: SecretRegistry,
) -> None:
    emulator = Emulator(config=EmulatorConfig.demo())
    try:
        added = emulator.add_token()
        clusters = {c.id: c for c in emulator.clusters()}
        token_mode = emulator.emulation.issue(
            clusters[DEMO_CLUSTER_IDS["prod-cluster-01"]], lifetime=600
        )
        certificate_mode = emulator.emulation.issue(
            clusters[DEMO_CLUSTER_IDS["legacy-cluster"]], lifetime=600
        )
    finally:
        emulator.stop()
    key_pem = certificate_mode.credential.client_key_pem
    assert key_pem is not None

    values = {s.value for s in registry.secrets()}

    assert {DEMO_TOKEN, added.token, token_mode.credential.token} <= values
    assert {s.value for s in witness.private_key_secrets(key_pem, what="")} <= values
    assert emulator.admin_token not in values
