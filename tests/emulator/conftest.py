"""Fixtures for the emulator's own tests: a running emulator on a manual clock, and clients.

Each test gets a fresh emulator (demo data, HTTPS on a free loopback port) whose clock only moves
when the test moves it, an httpx client authenticated with the demo's full-access token, one with
the admin token, and one for the token webhook (with :func:`authenticates` to ask it about a
token, as the apiserver would). Fixtures stop in reverse order, so clients close before the
server stops.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from doks_access_testkit.emulator import DEMO_TOKEN, Emulator, EmulatorConfig, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    # A whole second, so that "ratelimit-reset" (rounded up to a second) is exact in tests.
    return ManualClock(start=float(int(time.time())))


@pytest.fixture
def config() -> EmulatorConfig:
    """What the ``emulator`` fixture starts with; override it in a module to change that."""
    return EmulatorConfig.demo()


@pytest.fixture
def emulator(config: EmulatorConfig, clock: ManualClock) -> Iterator[Emulator]:
    with Emulator(config=config, clock=clock) as running:
        yield running


def client_for(emulator: Emulator, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=emulator.api_url,
        verify=emulator.client_ssl_context() if emulator.config.tls else True,
        headers=headers,
        timeout=10,
    )


@pytest.fixture
def do_api(emulator: Emulator) -> Iterator[httpx.Client]:
    with client_for(emulator, DEMO_TOKEN) as client:
        yield client


@pytest.fixture
def admin(emulator: Emulator) -> Iterator[httpx.Client]:
    with client_for(emulator, emulator.admin_token) as client:
        yield client


@pytest.fixture
def webhook(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(verify=emulator.client_ssl_context(), timeout=10) as client:
        yield client


def authenticates(webhook: httpx.Client, emulator: Emulator, token: str) -> bool:
    """Whether the token webhook vouches for ``token`` (one TokenReview, as the apiserver asks)."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    answer = webhook.post(emulator.token_webhook.url, json=body)
    assert answer.status_code == 200
    authenticated: bool = answer.json()["status"]["authenticated"]
    return authenticated
