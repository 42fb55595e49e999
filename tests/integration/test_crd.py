"""The API server itself rejects malformed DOClusterAccess objects, with a clear message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests import kube

GROUP, VERSION, PLURAL = "doks-access.dev", "v1alpha1", "doclusteraccesses"
CLUSTER_ID = "bd5f5959-5e1e-4205-a714-a914373942af"


def _create(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DOClusterAccess",
        "metadata": {"name": "sample"},
        "spec": spec,
    }
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def _rejection(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as raised:
        _create(api, namespace, spec)
    assert raised.value.status == 422
    return str(raised.value.body)


@pytest.mark.usefixtures("crds")
def test_defaults_are_filled_in(api: client.ApiClient, namespace: str) -> None:
    created = _create(
        api, namespace, {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "do-token"}}
    )
    spec = created["spec"]
    assert spec["tokenSecretRef"] == {"name": "do-token", "key": "token"}
    assert spec["target"] == {"format": "Kubeconfig", "deletionPolicy": "Delete", "adopt": False}
    assert (spec["verify"], spec["suspend"]) == (False, False)


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"clusterID": CLUSTER_ID, "clusterName": "prod", "tokenSecretRef": {"name": "t"}},
            "exactly one of clusterID or clusterName must be set",
        ),
        ({"tokenSecretRef": {"name": "t"}}, "exactly one of clusterID or clusterName must be set"),
        (
            {
                "clusterID": CLUSTER_ID,
                "tokenSecretRef": {"name": "t"},
                "target": {"format": "Flux", "key": "kubeconfig"},
            },
            "key can only be set with format Kubeconfig",
        ),
        ({"clusterID": "not-a-uuid", "tokenSecretRef": {"name": "t"}}, "spec.clusterID"),
        (
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "expirySeconds": -1},
            "spec.expirySeconds",
        ),
        (  # DigitalOcean reads expiry_seconds as a 32-bit integer
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "expirySeconds": 2**31},
            "spec.expirySeconds",
        ),
        ({"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "Not_DNS"}}, "tokenSecretRef.name"),
        (
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "renewBefore": "2 hours"},
            "spec.renewBefore",
        ),
        (
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "target": {"format": "X"}},
            "spec.target.format",
        ),
        ({"clusterID": CLUSTER_ID}, "exactly one of tokenSecretRef or accountRef must be set"),
        (
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "accountRef": {"name": "a"}},
            "exactly one of tokenSecretRef or accountRef must be set",
        ),
        ({"clusterID": CLUSTER_ID, "accountRef": {"name": "Not_DNS"}}, "accountRef.name"),
    ],
)
def test_invalid_specs_are_rejected_with_a_message_naming_the_problem(
    api: client.ApiClient, namespace: str, spec: dict[str, Any], message: str
) -> None:
    assert message in _rejection(api, namespace, spec)


@pytest.mark.usefixtures("crds")
def test_a_set_template_with_an_expiry_beyond_32_bits_is_refused(
    api: client.ApiClient, namespace: str
) -> None:
    body = {
        "apiVersion": "doks-access.dev/v1alpha1",
        "kind": "DOClusterAccessSet",
        "metadata": {"name": "too-long"},
        "spec": {
            "tokenSecretRef": {"name": "t"},
            "selector": {"namePattern": "*"},
            "template": {"spec": {"expirySeconds": 2**31}},
        },
    }
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "doks-access.dev", "v1alpha1", namespace, "doclusteraccesssets", body
        )
    assert raised.value.status == 422
    assert "spec.template.spec.expirySeconds" in str(raised.value.body)


# --- no field names another namespace (DESIGN 2: the multi-tenancy boundary) -----------------

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "doclusteraccesses.doks-access.dev.yaml"
# The only open maps in the spec: label and annotation keys put on the Secret the operator writes
# in the object's own namespace; a key there is a label key, never a reference.
STRING_MAPS = {"spec.target.labels", "spec.target.annotations"}
CROSS_NAMESPACE = {
    "tokenSecretRef": {"name": "digitalocean-api", "namespace": "elsewhere"},
    "target": {"name": "stolen", "namespace": "elsewhere"},
}


def _spec_schema() -> dict[str, Any]:
    (version,) = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


def test_no_field_of_the_spec_can_name_a_namespace() -> None:
    for path, schema in _walk(_spec_schema(), "spec"):
        assert "namespace" not in path.rsplit(".", 1)[-1].lower(), path
        assert not schema.get("x-kubernetes-preserve-unknown-fields"), path
        assert "x-kubernetes-embedded-resource" not in schema, path
        if schema.get("type") == "object" and path not in STRING_MAPS:
            assert "properties" in schema, f"{path} is an open object"
            assert "additionalProperties" not in schema, path
    for path in STRING_MAPS:
        (schema,) = [s for p, s in _walk(_spec_schema(), "spec") if p == path]
        assert schema["additionalProperties"] == {"type": "string"}, path


def test_the_secret_references_have_closed_sets_of_fields() -> None:
    properties = _spec_schema()["properties"]
    assert set(properties["tokenSecretRef"]["properties"]) == {"name", "key"}
    assert set(properties["target"]["properties"]) == {
        "name",
        "format",
        "key",
        "labels",
        "annotations",
        "deletionPolicy",
        "adopt",
    }


def _body(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DOClusterAccess",
        "metadata": {"name": "sample"},
        "spec": {"clusterID": CLUSTER_ID, **spec},
    }


@pytest.mark.usefixtures("crds")
def test_the_apiserver_prunes_a_namespace_given_to_a_secret_reference(
    api: client.ApiClient, namespace: str
) -> None:
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _body(CROSS_NAMESPACE), field_validation="Ignore"
    )

    assert created["spec"]["tokenSecretRef"] == {"name": "digitalocean-api", "key": "token"}
    assert "namespace" not in created["spec"]["target"]
    stored = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "sample"
    )
    assert stored["spec"] == created["spec"]


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("field", ["tokenSecretRef", "target"])
def test_strict_field_validation_rejects_a_namespace_given_to_a_secret_reference(
    api: client.ApiClient, namespace: str, field: str
) -> None:
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            _body({"tokenSecretRef": {"name": "t"}, field: CROSS_NAMESPACE[field]}),
            field_validation="Strict",
        )

    assert raised.value.status == 400
    assert f'unknown field \\"spec.{field}.namespace\\"' in str(raised.value.body)
    assert kube.is_absent(
        lambda: client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "sample"
        )
    )
