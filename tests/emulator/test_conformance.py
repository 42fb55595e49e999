"""Every kind of emulator answer, checked against DigitalOcean's own OpenAPI description.

For each of the four operations and each answer it can give (200s, and the errors 400, 401, 403,
404, 422, 429, 500, 503; with each realism quirk; for clusters that require SSO), the response is
validated by openapi-core: a declared status (explicitly, or through the operation's ``default``
response, which is how the spec covers 400, 403, 422 and 503 for these operations), the body
against its schema (formats included: uuid, uri, date-time, byte), the content type, and the
``ratelimit-*`` headers' types. The spec does not mark the rate-limit headers required, so their
presence is asserted here as well.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    DEMO_READ_ONLY_TOKEN,
    DEMO_TOKEN,
    Cluster,
    Emulator,
    EmulatorConfig,
    Fault,
    ManualClock,
    RateLimits,
)
from doks_access_testkit.emulator.faults import Endpoint
from doks_access_testkit.emulator.quirks import QUIRKS
from tests.emulator import openapi
from tests.emulator.conftest import client_for

pytestmark = pytest.mark.skipif(
    not openapi.available(),
    reason=f"no DigitalOcean OpenAPI reference at {openapi.SPEC_DIR} (shared/ beside the repo)",
)

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
LEGACY = DEMO_CLUSTER_IDS["legacy-cluster"]
SSO = DEMO_CLUSTER_IDS["sso-cluster"]
PATHS: dict[Endpoint, str] = {
    "list_clusters": "/v2/kubernetes/clusters",
    "get_cluster": f"/v2/kubernetes/clusters/{PROD}",
    "kubeconfig": f"/v2/kubernetes/clusters/{PROD}/kubeconfig",
    "credentials": f"/v2/kubernetes/clusters/{PROD}/credentials",
}
JSON = "application/json; charset=utf-8"


@dataclasses.dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    status: int
    path: str
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    token: str | None = DEMO_TOKEN
    fault: Fault | None = None
    content_type: str = JSON


def _successes() -> list[Case]:
    return [
        Case("list_clusters", 200, PATHS["list_clusters"]),
        Case("list_clusters", 200, PATHS["list_clusters"], {"per_page": "1", "page": "2"}),
        Case("get_cluster", 200, PATHS["get_cluster"]),
        Case("get_cluster", 200, f"/v2/kubernetes/clusters/{LEGACY}"),
        # Without tag:read the clusters have no "tags" key, which the schema allows.
        Case("list_clusters", 200, PATHS["list_clusters"], token=DEMO_READ_ONLY_TOKEN),
        Case("get_cluster", 200, PATHS["get_cluster"], token=DEMO_READ_ONLY_TOKEN),
        Case("kubeconfig", 200, PATHS["kubeconfig"], content_type="application/yaml"),
        Case("kubeconfig", 200, PATHS["kubeconfig"], {"expiry_seconds": "60", "type": "token"},
             content_type="application/yaml"),
        Case("kubeconfig", 200, f"/v2/kubernetes/clusters/{LEGACY}/kubeconfig",
             content_type="application/yaml"),
        Case("kubeconfig", 200, f"/v2/kubernetes/clusters/{SSO}/kubeconfig",
             content_type="application/yaml"),
        Case("credentials", 200, PATHS["credentials"], {"expiry_seconds": "300"}),
        Case("credentials", 200, f"/v2/kubernetes/clusters/{LEGACY}/credentials"),
    ]  # fmt: skip


def _errors() -> list[Case]:
    cases = []
    for endpoint, path in PATHS.items():
        cases.append(Case(endpoint, 401, path, token=None))
        cases.append(Case(endpoint, 401, path, token="dop_v1_unknown"))
        for status in (422, 429, 500, 503):
            cases.append(Case(endpoint, status, path, fault=Fault(kind="status", status=status)))
        if endpoint != "list_clusters":
            missing = path.replace(PROD, str(uuid.uuid4()))
            cases.append(Case(endpoint, 404, missing))
    for endpoint in ("kubeconfig", "credentials"):
        cases.append(Case(endpoint, 400, PATHS[endpoint], {"expiry_seconds": "-1"}))
        cases.append(Case(endpoint, 403, PATHS[endpoint], token=DEMO_READ_ONLY_TOKEN))
    cases.append(Case("list_clusters", 400, PATHS["list_clusters"], {"page": "0"}))
    return cases


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return openapi.load()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.operation_document()


def _check(spec: OpenAPI, document: dict[str, Any], case: Case, response: httpx.Response) -> None:
    assert response.status_code == case.status, response.text
    declared = openapi.declared_statuses(document, case.endpoint)
    assert str(case.status) in declared or "default" in declared
    assert response.headers["content-type"] == case.content_type
    for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert response.headers[name].isdigit(), name
    openapi.validate(spec, response)
    if case.content_type == "application/yaml":
        assert yaml.safe_load(response.text)["kind"] == "Config"


def _case_id(case: Case) -> str:
    detail = "-".join(f"{k}={v}" for k, v in case.params.items())
    who = "" if case.token == DEMO_TOKEN else f"-token={(case.token or 'none')[:12]}"
    return f"{case.endpoint}-{case.status}{'-' + detail if detail else ''}{who}"


@pytest.mark.parametrize("case", _successes() + _errors(), ids=_case_id)
def test_the_answer_conforms_to_the_openapi_description(
    spec: OpenAPI, document: dict[str, Any], emulator: Emulator, case: Case
) -> None:
    if case.fault is not None:
        emulator.add_fault(dataclasses.replace(case.fault, endpoint=case.endpoint))
    with client_for(emulator, case.token) as client:
        response = client.get(case.path, params=case.params)
    _check(spec, document, case, response)


def test_a_status_fault_with_its_own_message_conforms(
    spec: OpenAPI, document: dict[str, Any], emulator: Emulator
) -> None:
    message = "expiry_seconds must be at most 604800"
    emulator.add_fault(Fault(kind="status", status=422, message=message, endpoint="kubeconfig"))
    case = Case("kubeconfig", 422, PATHS["kubeconfig"], {"expiry_seconds": "604801"})
    with client_for(emulator, DEMO_TOKEN) as client:
        response = client.get(case.path, params=case.params)
    _check(spec, document, case, response)
    assert response.json()["message"] == message


@pytest.mark.parametrize("refusal", ["api", "cluster"])
def test_a_cluster_that_requires_sso_conforms(
    spec: OpenAPI, document: dict[str, Any], emulator: Emulator, refusal: str
) -> None:
    cluster = emulator.add_cluster(
        Cluster(
            name="locked",
            sso=True,
            sso_required=True,
            sso_refusal="api" if refusal == "api" else "cluster",
            sso_issuer_url="https://login.example.org/realms/doks",
            sso_client_id="doks-prod",
        )
    )
    base = f"/v2/kubernetes/clusters/{cluster.id}"
    token_status = 422 if refusal == "api" else 200
    yaml_type = "application/yaml" if refusal == "cluster" else JSON
    cases = [
        Case("get_cluster", 200, base),
        Case("list_clusters", 200, PATHS["list_clusters"]),
        Case("kubeconfig", 200, f"{base}/kubeconfig", content_type="application/yaml"),
        Case("kubeconfig", token_status, f"{base}/kubeconfig", {"type": "token"},
             content_type=yaml_type),
        Case("credentials", token_status, f"{base}/credentials"),
    ]  # fmt: skip
    with client_for(emulator, DEMO_TOKEN) as client:
        for case in cases:
            _check(spec, document, case, client.get(case.path, params=case.params))
        sso = client.get(base).json()["kubernetes_cluster"]["sso"]
    assert sso["required"] is True
    assert sso["issuer_url"] == "https://login.example.org/realms/doks"


@pytest.mark.parametrize("quirk", QUIRKS)
def test_every_quirk_conforms(
    spec: OpenAPI, document: dict[str, Any], emulator: Emulator, quirk: str
) -> None:
    emulator.set_quirks([quirk])
    cases = [
        Case("list_clusters", 200, PATHS["list_clusters"]),
        Case("list_clusters", 200, PATHS["list_clusters"], {"per_page": "1"}),
        Case("kubeconfig", 400, PATHS["kubeconfig"], {"expiry_seconds": "-1"}),
        Case("get_cluster", 404, PATHS["get_cluster"].replace(PROD, str(uuid.uuid4()))),
        Case("list_clusters", 401, PATHS["list_clusters"], token=None),
        Case("credentials", 500 if quirk == "zero_expiry_500" else 200, PATHS["credentials"],
             {"expiry_seconds": "0"}),
    ]  # fmt: skip
    for case in cases:
        with client_for(emulator, case.token) as client:
            _check(spec, document, case, client.get(case.path, params=case.params))


@pytest.fixture
def burst_limited(clock: ManualClock) -> Iterator[Emulator]:
    config = EmulatorConfig.demo(rate_limits=RateLimits(per_hour=100, per_minute=1))
    with Emulator(config=config, clock=clock) as emulator:
        yield emulator


@pytest.mark.parametrize("endpoint", list(PATHS))
def test_a_real_rate_limit_429_conforms(
    spec: OpenAPI, document: dict[str, Any], burst_limited: Emulator, endpoint: Endpoint
) -> None:
    with client_for(burst_limited, DEMO_TOKEN) as client:
        client.get(PATHS[endpoint])
        response = client.get(PATHS[endpoint])
    _check(spec, document, Case(endpoint, 429, PATHS[endpoint]), response)
    assert response.headers["retry-after"].isdigit()


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda body: body.replace(b'"meta"', b'"metadata"'),
        lambda body: body.replace(b'"region": "nyc1"', b'"region": 1'),
        lambda body: body.replace(b'"created_at": "', b'"created_at": "yesterday '),
    ],
    ids=["no-meta", "region-not-a-string", "created-at-not-a-date"],
)
def test_the_validator_catches_a_broken_answer(
    spec: OpenAPI, do_api: httpx.Client, corrupt: Callable[[bytes], bytes]
) -> None:
    good = do_api.get(PATHS["list_clusters"])
    broken = httpx.Response(
        200, headers=good.headers, content=corrupt(good.content), request=good.request
    )
    assert broken.content != good.content
    with pytest.raises(OpenAPIError, match="not valid"):
        openapi.validate(spec, broken)
