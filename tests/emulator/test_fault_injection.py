"""Every fault mode, seen from a client on the other end of a real socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
import yaml

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    DEMO_TOKEN,
    Emulator,
    EmulatorConfig,
    Fault,
    ManualClock,
)
from tests.emulator.conftest import client_for

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
LIST = "/v2/kubernetes/clusters"
KUBECONFIG = f"/v2/kubernetes/clusters/{PROD}/kubeconfig"
CREDENTIALS = f"/v2/kubernetes/clusters/{PROD}/credentials"


def test_latency_delays_the_answer(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="latency", seconds=0.3, endpoint="kubeconfig"))
    started = time.monotonic()
    assert do_api.get(LIST).status_code == 200
    fast = time.monotonic() - started
    started = time.monotonic()
    assert do_api.get(KUBECONFIG).status_code == 200
    assert time.monotonic() - started >= 0.3 > fast


@pytest.mark.parametrize("status", [401, 404, 429, 500, 503])
def test_a_status_fault_answers_that_status_for_n_requests(
    do_api: httpx.Client, emulator: Emulator, status: int
) -> None:
    emulator.add_fault(Fault(kind="status", status=status, count=2, endpoint="kubeconfig"))
    answers = [do_api.get(KUBECONFIG) for _ in range(3)]
    assert [r.status_code for r in answers] == [status, status, 200]
    body = answers[0].json()
    assert set(body) == {"id", "message", "request_id"}
    assert answers[0].headers["ratelimit-remaining"] == ("0" if status == 429 else "4999")
    assert len(emulator.issued_credentials()) == 1
    assert emulator.stats()["kubeconfig"] == {str(status): 2, "200": 1}


def test_a_status_fault_can_carry_digitaloceans_message(
    do_api: httpx.Client, emulator: Emulator
) -> None:
    message = "expiry_seconds must be at most 604800"
    emulator.add_fault(Fault(kind="status", status=422, message=message, endpoint="kubeconfig"))
    refused = do_api.get(KUBECONFIG, params={"expiry_seconds": "604801"})
    assert refused.status_code == 422
    assert refused.json() == {
        "id": "unprocessable_entity",
        "message": message,
        "request_id": refused.headers["x-request-id"],
    }
    assert emulator.issued_credentials() == []
    assert do_api.get(CREDENTIALS).status_code == 200  # scoped to the kubeconfig endpoint


@pytest.mark.parametrize(
    ("status", "error_id", "message"),
    [
        (422, "unprocessable_entity", "The request could not be processed."),
        (400, "bad_request", "error parsing request"),
    ],
)
def test_without_a_message_a_status_fault_has_the_usual_one(
    do_api: httpx.Client, emulator: Emulator, status: int, error_id: str, message: str
) -> None:
    emulator.add_fault(Fault(kind="status", status=status, count=1))
    body = do_api.get(CREDENTIALS).json()
    assert (body["id"], body["message"]) == (error_id, message)


def test_an_admin_fault_carries_its_message(admin: httpx.Client, do_api: httpx.Client) -> None:
    fault = {"kind": "status", "status": 400, "message": "invalid expiry", "count": 1}
    assert admin.post("/_emulator/faults", json=fault).status_code == 201
    assert do_api.get(KUBECONFIG).json()["message"] == "invalid expiry"


def test_an_injected_429_can_carry_retry_after(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="status", status=429, retry_after=30, count=1))
    refused = do_api.get(KUBECONFIG)
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "30")
    assert refused.json()["id"] == "too_many_requests"


def test_a_status_fault_lasts_until_cleared(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="status", status=503))
    assert [do_api.get(CREDENTIALS).status_code for _ in range(5)] == [503] * 5
    assert do_api.get(CREDENTIALS).json()["id"] == "service_unavailable"
    emulator.clear_faults()
    assert do_api.get(CREDENTIALS).status_code == 200


def test_the_error_rate_is_seeded_and_reproducible(clock: ManualClock) -> None:
    def statuses() -> list[int]:
        fault = Fault(kind="error_rate", probability=0.3, status=502)
        config = EmulatorConfig.demo(faults=(fault,), seed=42)
        with (
            Emulator(config=config, clock=clock) as emulator,
            client_for(emulator, DEMO_TOKEN) as c,
        ):
            return [c.get(LIST).status_code for _ in range(30)]

    first = statuses()
    assert first == statuses()
    assert set(first) == {200, 502}


def test_a_drop_closes_the_connection_without_an_answer(
    do_api: httpx.Client, emulator: Emulator
) -> None:
    emulator.add_fault(Fault(kind="drop", count=1))
    with pytest.raises(httpx.RemoteProtocolError):
        do_api.get(KUBECONFIG)
    assert do_api.get(KUBECONFIG).status_code == 200
    assert emulator.stats()["kubeconfig"] == {"dropped": 1, "200": 1}
    assert len(emulator.issued_credentials()) == 1  # nothing minted for the dropped call


def test_a_hang_times_the_client_out(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="hang", endpoint="credentials"))
    with pytest.raises(httpx.ReadTimeout):
        do_api.get(CREDENTIALS, timeout=0.3)
    assert do_api.get(LIST).status_code == 200
    assert emulator.request_count("credentials", outcome="hung") == 1


def test_a_hang_with_seconds_ends_in_a_drop(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="hang", seconds=0.2, count=1))
    with pytest.raises(httpx.RemoteProtocolError):
        do_api.get(LIST)


@pytest.mark.asyncio
async def test_clearing_the_faults_releases_a_hung_request(emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="hang"))
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    verify = emulator.client_ssl_context()
    async with httpx.AsyncClient(base_url=emulator.api_url, headers=headers, verify=verify) as c:
        pending = asyncio.create_task(c.get(KUBECONFIG, timeout=10))
        await _until(lambda: emulator.request_count("kubeconfig", outcome="hung") == 1)
        assert not pending.done()
        emulator.clear_faults()
        response = await pending
    assert response.status_code == 200
    assert emulator.stats()["kubeconfig"] == {"hung": 1}  # one request, counted once


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for a condition that the emulator's thread makes true."""
    async with asyncio.timeout(10):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def test_stopping_the_emulator_ends_hung_requests(clock: ManualClock) -> None:
    emulator = Emulator(config=EmulatorConfig.demo(), clock=clock)
    with emulator, client_for(emulator, DEMO_TOKEN) as client:
        emulator.add_fault(Fault(kind="hang"))
        with pytest.raises(httpx.ReadTimeout):
            client.get(LIST, timeout=0.2)
    started = time.monotonic()
    emulator.stop()  # again: harmless
    assert time.monotonic() - started < 1


def test_a_malformed_kubeconfig_is_not_yaml(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="malformed_body", count=1))
    response = do_api.get(KUBECONFIG)
    assert (response.status_code, response.headers["content-type"]) == (200, "application/yaml")
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(response.content)


def test_malformed_credentials_are_not_json(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="malformed_body", endpoint="credentials"))
    response = do_api.get(CREDENTIALS)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.parametrize("path", [KUBECONFIG, CREDENTIALS])
def test_an_oversized_body_is_over_one_mebibyte(
    do_api: httpx.Client, emulator: Emulator, path: str
) -> None:
    emulator.add_fault(Fault(kind="oversized_body"))
    response = do_api.get(path)
    assert response.status_code == 200
    assert len(response.content) > 1024 * 1024
    assert do_api.get(LIST).status_code == 200  # other endpoints are untouched


def test_an_exec_kubeconfig_runs_a_command(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="exec_kubeconfig", count=1))
    user = yaml.safe_load(do_api.get(KUBECONFIG).text)["users"][0]["user"]
    assert set(user) == {"exec"}
    assert "token" in yaml.safe_load(do_api.get(KUBECONFIG).text)["users"][0]["user"]


def test_an_auth_provider_kubeconfig(do_api: httpx.Client, emulator: Emulator) -> None:
    emulator.add_fault(Fault(kind="auth_provider_kubeconfig"))
    assert "auth-provider" in yaml.safe_load(do_api.get(KUBECONFIG).text)["users"][0]["user"]


def test_a_wrong_server_is_plain_http_or_another_host(
    do_api: httpx.Client, emulator: Emulator
) -> None:
    emulator.add_fault(Fault(kind="wrong_server", count=2))
    kubeconfig = yaml.safe_load(do_api.get(KUBECONFIG).text)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"http://{PROD}.k8s.ondigitalocean.com"
    assert do_api.get(CREDENTIALS).json()["server"].startswith("http://")
    emulator.add_fault(Fault(kind="wrong_server", server="https://attacker.example"))
    assert do_api.get(CREDENTIALS).json()["server"] == "https://attacker.example"


@pytest.mark.parametrize("path", [KUBECONFIG, CREDENTIALS])
def test_a_body_fault_answers_exactly_its_bytes_and_content_type(
    do_api: httpx.Client, emulator: Emulator, path: str
) -> None:
    garbage = bytes(range(256)) * 3
    emulator.add_fault(Fault(kind="body", body=garbage, content_type="text/html", count=1))
    replaced = do_api.get(path)
    assert (replaced.status_code, replaced.content) == (200, garbage)
    assert replaced.headers["content-type"] == "text/html"
    assert len(emulator.issued_credentials()) == 1  # minted, as a real upstream would have
    assert do_api.get(path).content != garbage  # count=1: the next answer is the real one


def test_a_body_fault_keeps_the_endpoints_content_type_unless_told(
    do_api: httpx.Client, emulator: Emulator
) -> None:
    emulator.add_fault(Fault(kind="body", body="kind: Config\n"))
    assert do_api.get(KUBECONFIG).headers["content-type"] == "application/yaml"
    assert do_api.get(CREDENTIALS).headers["content-type"] == "application/json; charset=utf-8"


def test_faults_given_at_start_are_active_from_the_first_request(clock: ManualClock) -> None:
    config = EmulatorConfig.demo(faults=(Fault(kind="status", status=500, count=1),))
    with Emulator(config=config, clock=clock) as emulator, client_for(emulator, DEMO_TOKEN) as c:
        assert [c.get(LIST).status_code for _ in range(2)] == [500, 200]


def test_removing_one_fault_keeps_the_others(do_api: httpx.Client, emulator: Emulator) -> None:
    first = emulator.add_fault(Fault(kind="status", status=500, endpoint="kubeconfig"))
    emulator.add_fault(Fault(kind="status", status=503, endpoint="credentials"))
    assert emulator.remove_fault(first.id)
    assert not emulator.remove_fault(first.id)
    assert do_api.get(KUBECONFIG).status_code == 200
    assert do_api.get(CREDENTIALS).status_code == 503
    assert [f.status for f in emulator.faults()] == [503]


def test_status_faults_still_need_authentication_and_count_against_the_limit(
    emulator: Emulator,
) -> None:
    emulator.add_fault(Fault(kind="status", status=500))
    with client_for(emulator, "wrong") as stranger:
        assert stranger.get(LIST).status_code == 401
    with client_for(emulator, DEMO_TOKEN) as client:
        response = client.get(LIST)
    assert (response.status_code, response.headers["ratelimit-remaining"]) == (500, "4999")
