"""The lifetime guard's timing, driven by hand with a clock of the test's own.

Real parts: the API server, the emulator, and the SelfSubjectReviews, which the API server answers
by asking the emulator's token webhook. The controller runs on a clock the test moves, so the
quarter marks of a one-hour credential come in seconds; the credentials themselves live in real
time (an hour), so every check made here is one the cluster really answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator

import httpx
import pytest
from kubernetes import client

from doks_access import config, dispatch, verify
from doks_access.controller import Controller
from doks_access.dependencies import Dependencies
from doks_access.kubeconfig import Credential
from doks_access.objects import AccessObject
from doks_access_testkit.emulator import Emulator
from tests.conftest import Cluster
from tests.e2e.objects import CLUSTER_ID, apply_access, create_token_secret, get_access

LIFETIME = datetime.timedelta(hours=1)
QUARTER = LIFETIME / 4


class Clock:
    """The controller's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


class Cluster503:
    """The target cluster as the verifier sees it: real, until the test makes it answer 503."""

    def __init__(self) -> None:
        self.down = False

    async def __call__(self, credential: Credential) -> str:
        if not self.down:
            return await verify.identity_of(credential)
        unavailable = httpx.MockTransport(lambda request: httpx.Response(503))
        return await verify.identity_of(credential, transport=unavailable)


@contextlib.asynccontextmanager
async def _controller(
    cluster: Cluster, emulator: Emulator, clock: Clock, verifier: Cluster503 | None = None
) -> AsyncIterator[tuple[Controller, Dependencies]]:
    settings = config.OperatorConfig(
        kubeconfig=cluster.kubeconfig_path,
        digitalocean_api_url=emulator.api_url,
        digitalocean_ca_file=emulator.ca_file,
    )
    deps = await Dependencies.create(settings)
    if verifier is not None:
        deps = dataclasses.replace(deps, verifier=verifier)
    try:
        yield Controller(deps=deps, dispatcher=dispatch.Dispatcher(workers=1), clock=clock), deps
    finally:
        await deps.aclose()


def _checks(deps: Dependencies, result: str) -> float:
    found = deps.metrics.registry.get_sample_value(
        "doks_access_guard_checks_total", {"result": result}
    )
    return found or 0.0


async def _reconcile(
    controller: Controller, api: client.ApiClient, namespace: str, clock: Clock
) -> datetime.datetime | None:
    """One reconciliation of ``guarded``; when it wants to be looked at again (wall clock)."""
    controller.observe(AccessObject.from_body(get_access(api, namespace, "guarded")))
    due = await controller.reconcile((namespace, "guarded"))
    if due is None:
        return None
    return clock.now + datetime.timedelta(seconds=due - asyncio.get_running_loop().time())


def _digitalocean_calls(emulator: Emulator) -> dict[str, dict[str, int]]:
    """The API calls the emulator answered: its token webhook (the cluster's side) left out."""
    return {endpoint: n for endpoint, n in emulator.stats().items() if endpoint != "token_review"}


def _issued_at(api: client.ApiClient, namespace: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(
        get_access(api, namespace, "guarded")["status"]["issuedAt"]
    )


def _near(moment: datetime.datetime | None, expected: datetime.datetime) -> bool:
    return moment is not None and abs((moment - expected).total_seconds()) < 2


@pytest.fixture
def guarded(crds: list[str], api: client.ApiClient, namespace: str) -> str:
    del crds
    create_token_secret(api, namespace)
    spec = {"clusterID": CLUSTER_ID, "expirySeconds": int(LIFETIME.total_seconds()), "verify": True}
    apply_access(api, namespace, "guarded", spec)
    return namespace


@pytest.mark.asyncio
async def test_the_guard_checks_at_the_quarter_marks_and_costs_no_digitalocean_call(
    cluster: Cluster, fresh_digitalocean: Emulator, api: client.ApiClient, guarded: str
) -> None:
    clock = Clock()
    async with _controller(cluster, fresh_digitalocean, clock) as (controller, deps):
        first_due = await _reconcile(controller, api, guarded, clock)
        issued = _issued_at(api, guarded)
        assert _near(first_due, issued + QUARTER), "woken at the first mark, not at renewal"

        clock.now = issued + QUARTER + datetime.timedelta(seconds=1)
        second_due = await _reconcile(controller, api, guarded, clock)
        clock.now = issued + 2 * QUARTER + datetime.timedelta(seconds=1)
        await _reconcile(controller, api, guarded, clock)

        assert _checks(deps, "accepted") == 2
        assert _checks(deps, "rejected") == _checks(deps, "unknown") == 0
    assert _near(second_due, issued + 2 * QUARTER)
    assert _digitalocean_calls(fresh_digitalocean) == {"kubeconfig": {"200": 1}}
    ready = get_access(api, guarded, "guarded")["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Issued")


@pytest.mark.asyncio
async def test_a_cluster_that_cannot_answer_says_nothing_about_the_credential(
    cluster: Cluster, fresh_digitalocean: Emulator, api: client.ApiClient, guarded: str
) -> None:
    clock, target = Clock(), Cluster503()
    async with _controller(cluster, fresh_digitalocean, clock, target) as (controller, deps):
        await _reconcile(controller, api, guarded, clock)
        issued = _issued_at(api, guarded)
        target.down = True

        clock.now = issued + QUARTER + datetime.timedelta(seconds=1)
        due = await _reconcile(controller, api, guarded, clock)

        assert _checks(deps, "unknown") == 1
        assert _checks(deps, "rejected") == 0
    assert _near(due, issued + 2 * QUARTER), "tried again at the next mark"
    assert fresh_digitalocean.request_count("kubeconfig") == 1
    ready = get_access(api, guarded, "guarded")["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Issued")


@pytest.mark.asyncio
async def test_after_a_restart_the_guard_resumes_at_the_next_mark(
    cluster: Cluster, fresh_digitalocean: Emulator, api: client.ApiClient, guarded: str
) -> None:
    clock = Clock()
    async with _controller(cluster, fresh_digitalocean, clock) as (controller, _):
        await _reconcile(controller, api, guarded, clock)
    issued = _issued_at(api, guarded)

    # A new process, past the first mark: no review at start-up, the next one at the second mark.
    clock.now = issued + QUARTER + datetime.timedelta(minutes=5)
    async with _controller(cluster, fresh_digitalocean, clock) as (controller, deps):
        due = await _reconcile(controller, api, guarded, clock)
        assert _checks(deps, "accepted") == 0
        assert _near(due, issued + 2 * QUARTER)

        clock.now = issued + 2 * QUARTER + datetime.timedelta(seconds=1)
        await _reconcile(controller, api, guarded, clock)
        assert _checks(deps, "accepted") == 1
    assert _digitalocean_calls(fresh_digitalocean) == {"kubeconfig": {"200": 1}}
