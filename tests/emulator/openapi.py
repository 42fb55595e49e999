"""DigitalOcean's OpenAPI description of the four DOKS operations, loaded for openapi-core.

The reference copy in ``<repo>/../shared`` holds the four operation files and everything they
reference, plus the root ``DigitalOcean-public.v2.yaml`` whose paths table references hundreds of
*other* files that are not there, so the root cannot be loaded as a whole. This module assembles a
small OpenAPI document instead: the root's ``openapi``, ``info``, security scheme and ``security``,
and for each of the four paths the operation file itself, inlined, with its relative ``$ref``\\ s
made absolute (``file://`` URIs) so they resolve exactly as they would from the root. Its server
is ``/`` so that any emulator address matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
SPEC_DIR = SHARED / "reference" / "digitalocean-openapi" / "specification"
ROOT_SPEC = SPEC_DIR / "DigitalOcean-public.v2.yaml"
PATHS = {
    "list_clusters": "/v2/kubernetes/clusters",
    "get_cluster": "/v2/kubernetes/clusters/{cluster_id}",
    "kubeconfig": "/v2/kubernetes/clusters/{cluster_id}/kubeconfig",
    "credentials": "/v2/kubernetes/clusters/{cluster_id}/credentials",
}


def available() -> bool:
    return ROOT_SPEC.is_file()


def operation_document() -> dict[str, Any]:
    """The reduced OpenAPI document (a plain dict)."""
    root = yaml.safe_load(ROOT_SPEC.read_text())
    paths = {}
    for path in PATHS.values():
        operation_file = SPEC_DIR / root["paths"][path]["get"]["$ref"]
        operation = yaml.safe_load(operation_file.read_text())
        operation.pop("x-codeSamples", None)  # examples for people, not part of the contract
        paths[path] = {"get": _absolute_refs(operation, base=operation_file.as_uri())}
    return {
        "openapi": root["openapi"],
        "info": root["info"],
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"securitySchemes": root["components"]["securitySchemes"]},
        "security": root["security"],
    }


def load() -> OpenAPI:
    return OpenAPI.from_dict(operation_document(), base_uri=ROOT_SPEC.as_uri())


def declared_statuses(document: dict[str, Any], endpoint: str) -> set[str]:
    """The response keys the spec declares for an operation (``"200"``, ..., ``"default"``)."""
    return set(document["paths"][PATHS[endpoint]]["get"]["responses"])


def validate(spec: OpenAPI, response: httpx.Response) -> None:
    """Raise if ``response`` (to its request) breaks the spec: status, headers, body schema."""
    request = response.request
    mock_request = MockRequest(
        host_url=f"{request.url.scheme}://{request.url.netloc.decode()}",
        method=request.method,
        path=request.url.path,
        args=dict(request.url.params),
        headers=dict(request.headers),
    )
    mock_response = MockResponse(
        data=response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=response.headers.get("content-type", ""),
    )
    spec.validate_response(mock_request, mock_response)


def _absolute_refs(node: Any, *, base: str) -> Any:
    if isinstance(node, dict):
        return {
            key: urljoin(base, value)
            if key == "$ref" and isinstance(value, str)
            else _absolute_refs(value, base=base)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_absolute_refs(item, base=base) for item in node]
    return node
