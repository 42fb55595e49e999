"""Names, query parameters and documents, as DigitalOcean builds them."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml

from doks_access_testkit.emulator.clock import rfc3339_nanoseconds
from doks_access_testkit.emulator.faults import Fault
from doks_access_testkit.emulator.kubeconfigs import (
    DEFAULT_EXPIRY_SECONDS,
    OVERSIZED_BYTES,
    break_bytes,
    break_credentials,
    break_kubeconfig,
    context_name,
    credentials_document,
    kubeconfig_document,
    parse_credential_type,
    parse_expiry_seconds,
    render_yaml,
    token_user,
    user_name,
)
from doks_access_testkit.emulator.state import DEFAULT_IDENTITY, Cluster, IssuedCredential

CLUSTER = Cluster(name="prod-cluster-01", region="nyc1", id="bd5f5959-5e1e-4205-a714-a914373942af")
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _document() -> dict[str, Any]:
    return kubeconfig_document(
        cluster=CLUSTER, server="https://k.example:6443", ca_pem=CA, user=token_user("s3cret")
    )


def test_names_follow_do_region_name_and_admin() -> None:
    assert context_name(CLUSTER) == "do-nyc1-prod-cluster-01"
    assert user_name(CLUSTER) == "do-nyc1-prod-cluster-01-admin"


@pytest.mark.parametrize(("raw", "seconds"), [(None, 604800), ("", 604800), ("0", 604800)])
def test_absent_or_zero_expiry_means_seven_days(raw: str | None, seconds: int) -> None:
    assert parse_expiry_seconds(raw) == seconds == DEFAULT_EXPIRY_SECONDS


def test_a_positive_expiry_is_taken_as_is() -> None:
    assert parse_expiry_seconds("5") == 5
    assert parse_expiry_seconds("86400") == 86400


@pytest.mark.parametrize("raw", ["-1", "1.5", "abc", "1e3", " 5", "0x10"])
def test_negative_or_non_integer_expiry_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="expiry_seconds"):
        parse_expiry_seconds(raw)


def test_type_defaults_by_the_clusters_sso_setting() -> None:
    assert parse_credential_type(None, cluster=CLUSTER) == "token"
    assert parse_credential_type(None, cluster=Cluster(name="s", sso=True)) == "sso"
    assert parse_credential_type("token", cluster=Cluster(name="s", sso=True)) == "token"
    assert parse_credential_type("sso", cluster=CLUSTER) == "sso"
    with pytest.raises(ValueError, match="token, sso"):
        parse_credential_type("certificate", cluster=CLUSTER)


def test_a_kubeconfig_has_one_cluster_context_and_user_with_sorted_keys() -> None:
    text = render_yaml(_document()).decode()
    document = yaml.safe_load(text)
    assert list(document) == sorted(document)
    assert text.startswith("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data:")
    assert document["current-context"] == "do-nyc1-prod-cluster-01"
    assert document["contexts"] == [
        {
            "context": {
                "cluster": "do-nyc1-prod-cluster-01",
                "user": "do-nyc1-prod-cluster-01-admin",
            },
            "name": "do-nyc1-prod-cluster-01",
        }
    ]
    assert document["users"] == [
        {"name": "do-nyc1-prod-cluster-01-admin", "user": {"token": "s3cret"}}
    ]
    cluster = document["clusters"][0]["cluster"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == CA
    assert document["preferences"] == {}


def test_expires_at_has_nanoseconds() -> None:
    assert re.fullmatch(
        r"2019-11-09T11:50:28\.889080\d{3}Z", rfc3339_nanoseconds(1573300228.889080521)
    )
    assert rfc3339_nanoseconds(1573300228.25) == "2019-11-09T11:50:28.250000000Z"
    assert rfc3339_nanoseconds(1573300228.0) == "2019-11-09T11:50:28.000000000Z"


def test_token_credentials_have_null_certificate_fields() -> None:
    credential = IssuedCredential(
        id="c",
        cluster_id=CLUSTER.id,
        kind="token",
        identity=DEFAULT_IDENTITY,
        issued_at=0.0,
        expires_at=1573300228.5,
        token="s3cret",
    )
    document = credentials_document(
        server="https://k.example", ca_pem=CA, credential=credential, certificate=None
    )
    assert document == {
        "server": "https://k.example",
        "certificate_authority_data": base64.b64encode(CA).decode(),
        "client_certificate_data": None,
        "client_key_data": None,
        "token": "s3cret",
        "expires_at": "2019-11-09T11:50:28.500000000Z",
    }


def test_exec_and_auth_provider_faults_replace_the_user() -> None:
    document = break_kubeconfig(_document(), [Fault(kind="exec_kubeconfig")], cluster=CLUSTER)
    assert document["users"][0]["user"]["exec"]["command"] == "doctl"
    document = break_kubeconfig(
        _document(), [Fault(kind="auth_provider_kubeconfig")], cluster=CLUSTER
    )
    assert "auth-provider" in document["users"][0]["user"]


def test_wrong_server_defaults_to_plain_http_or_takes_the_given_url() -> None:
    broken = break_kubeconfig(_document(), [Fault(kind="wrong_server")], cluster=CLUSTER)
    assert broken["clusters"][0]["cluster"]["server"] == "http://k.example:6443"
    other = Fault(kind="wrong_server", server="https://evil.example")
    broken = break_kubeconfig(_document(), [other], cluster=CLUSTER)
    assert broken["clusters"][0]["cluster"]["server"] == "https://evil.example"
    assert break_credentials({"server": "https://a"}, [Fault(kind="wrong_server")]) == {
        "server": "http://a"
    }


def test_an_oversized_body_is_still_a_valid_document() -> None:
    body = render_yaml(
        break_kubeconfig(_document(), [Fault(kind="oversized_body")], cluster=CLUSTER)
    )
    assert len(body) > OVERSIZED_BYTES > 1024 * 1024
    assert yaml.safe_load(body)["users"][0]["user"] == {"token": "s3cret"}


def test_a_malformed_body_does_not_parse() -> None:
    malformed = [Fault(kind="malformed_body")]
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(break_bytes(render_yaml(_document()), malformed, yaml_body=True))
    with pytest.raises(json.JSONDecodeError):
        json.loads(
            break_bytes(json.dumps({"server": "https://a"}).encode(), malformed, yaml_body=False)
        )
    assert break_bytes(b"ok", [], yaml_body=True) == b"ok"
