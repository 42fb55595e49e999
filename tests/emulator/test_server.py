"""The emulator's lifecycle: addresses before start, one start, a clean stop, no leftovers."""

from __future__ import annotations

import datetime
import socket
import threading

import httpx
import pytest
import yaml

from doks_access_testkit.controlplane import TokenWebhook, free_port
from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    DEMO_TOKEN,
    Emulator,
    EmulatorConfig,
    KubernetesBackend,
    ManualClock,
)
from doks_access_testkit.pki import CertificateAuthority
from tests.emulator.conftest import client_for

KUBECONFIG = f"/v2/kubernetes/clusters/{DEMO_CLUSTER_IDS['prod-cluster-01']}/kubeconfig"


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "doks-access-emulator"]


def test_addresses_and_the_webhook_exist_before_start_and_the_ports_are_taken() -> None:
    emulator = Emulator()
    try:
        assert isinstance(emulator.token_webhook, TokenWebhook)
        assert emulator.token_webhook.ca_pem == emulator.ca_pem
        port = int(emulator.api_url.rsplit(":", 1)[1])
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))
        assert emulator.ca_file.read_bytes() == emulator.ca_pem
        files = emulator.ca_file.parent
    finally:
        emulator.stop()  # also without a start: closes the sockets, removes the files
    assert not files.exists()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))


def test_an_emulator_starts_once_and_stops_without_leftovers(clock: ManualClock) -> None:
    before = len(_emulator_threads())
    emulator = Emulator(config=EmulatorConfig.demo(), clock=clock)
    emulator.start()
    files = emulator.ca_file.parent
    with pytest.raises(RuntimeError, match="starts once"):
        emulator.start()
    assert len(_emulator_threads()) == before + 1
    emulator.stop()
    assert len(_emulator_threads()) == before
    assert not files.exists()
    with pytest.raises(RuntimeError, match="starts once"):
        emulator.start()


def test_fixed_ports_are_honoured(clock: ManualClock) -> None:
    api_port, webhook_port = free_port(), free_port()
    config = EmulatorConfig.demo(port=api_port, webhook_port=webhook_port)
    with Emulator(config=config, clock=clock) as emulator:
        assert emulator.api_url == f"https://127.0.0.1:{api_port}"
        assert emulator.token_webhook.url == f"https://127.0.0.1:{webhook_port}/authenticate"


def test_a_kubernetes_backend_can_be_given_after_construction(emulator: Emulator) -> None:
    now = datetime.datetime.now(datetime.UTC)
    serving = CertificateAuthority.create(name="cluster-ca", now=now)
    backend = KubernetesBackend(
        server="https://127.0.0.1:6443",
        ca_pem=serving.cert_pem,
        client_ca=CertificateAuthority.create(name="client-ca", now=now),
    )
    emulator.use_kubernetes(backend)
    with client_for(emulator, DEMO_TOKEN) as client:
        document = yaml.safe_load(client.get(KUBECONFIG).text)
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_refused_connections_spare_the_webhook_and_resume_on_the_same_port(
    clock: ManualClock,
) -> None:
    with Emulator(config=EmulatorConfig.demo(), clock=clock) as emulator:
        emulator.refuse_connections()
        with client_for(emulator, DEMO_TOKEN) as client, pytest.raises(httpx.ConnectError):
            client.get(KUBECONFIG)
        webhook = httpx.get(emulator.webhook_url, verify=emulator.client_ssl_context())
        assert webhook.status_code == 404  # serving: only the TokenReview path exists

        emulator.accept_connections()
        with client_for(emulator, DEMO_TOKEN) as client:
            assert client.get(KUBECONFIG).status_code == 200
