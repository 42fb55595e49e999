"""The process-wide liveness endpoint answers while the event loop runs."""

from __future__ import annotations

import socket

import httpx
import pytest

from doks_access import health


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.asyncio
async def test_the_endpoint_answers_200_on_its_path_only() -> None:
    port = _free_port()
    async with (
        health.serving(f"http://127.0.0.1:{port}/healthz"),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        alive = await http.get("/healthz")
        other = await http.get("/metrics")
    assert alive.status_code == 200
    assert alive.json() == {"status": "alive"}
    assert other.status_code == 404


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.asyncio
async def test_an_endpoint_without_a_host_answers_on_ipv4_and_ipv6() -> None:
    """The chart's form (``http://:8080/healthz``): IPv6-only and dual-stack clusters probe it
    over IPv6, single-stack ones over IPv4."""
    if not _has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    port = _free_port()
    async with health.serving(f"http://:{port}/healthz"):
        answers = []
        for host in ("127.0.0.1", "[::1]"):
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
                answers.append((await http.get("/healthz")).status_code)
    assert answers == [200, 200]


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", ["https://0.0.0.0:8080/healthz", "http://0.0.0.0/healthz"])
async def test_an_endpoint_without_http_and_a_port_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT/PATH"):
        async with health.serving(endpoint):
            pass


def test_a_reconciliation_running_too_long_is_reported_stuck() -> None:
    in_flight = {("ns", "fresh"): 800.0, ("ns", "hung"): 600.0}
    assert health.stuck(in_flight, now=600.0 + health.STUCK_AFTER) == []
    assert health.stuck(in_flight, now=600.0 + health.STUCK_AFTER + 1) == ["ns/hung"]


@pytest.mark.asyncio
async def test_the_endpoint_fails_while_something_is_stuck() -> None:
    port = _free_port()
    problems = ["ns/hung"]
    async with (
        health.serving(f"http://127.0.0.1:{port}/healthz", problems=lambda: problems),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        stuck = await http.get("/healthz")
        problems.clear()
        recovered = await http.get("/healthz")
    assert stuck.status_code == 500
    assert stuck.json() == {"status": "stuck", "problems": ["ns/hung"]}
    assert recovered.status_code == 200
