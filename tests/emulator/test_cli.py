"""``doks-access-emulator`` / ``python -m doks_access_testkit.emulator`` from a shell."""

from __future__ import annotations

import json
import select
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, DEMO_TOKEN

STARTUP_SECONDS = 30


@contextmanager
def _running(*args: str) -> Iterator[dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "doks_access_testkit.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_SECONDS)
        assert ready, "the emulator printed nothing"
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        yield json.loads(line)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STARTUP_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_runs_the_demo_over_https_with_no_arguments(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    with _running("--ca-file", str(ca_file)) as described:
        assert described["api_url"].startswith("https://127.0.0.1:")
        assert described["ca_file"] == str(ca_file)
        assert described["tokens"][0]["token"] == DEMO_TOKEN
        assert {c["id"] for c in described["clusters"]} == set(DEMO_CLUSTER_IDS.values())
        headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
        trust = ssl.create_default_context(cafile=str(ca_file))
        with httpx.Client(base_url=described["api_url"], verify=trust) as client:
            prod = DEMO_CLUSTER_IDS["prod-cluster-01"]
            response = client.get(f"/v2/kubernetes/clusters/{prod}/kubeconfig", headers=headers)
            assert response.status_code == 200
            admin = {"Authorization": f"Bearer {described['admin_token']}"}
            stats = client.get("/_emulator/stats", headers=admin).json()
            assert stats["requests"] == {"kubeconfig": {"200": 1}}


def test_takes_a_config_file_and_plain_http(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text(
        "accounts:\n"
        "  - tokens: [dop_v1_mine]\n"
        "    clusters: [{name: only, region: lon1}]\n"
        "faults: [{kind: status, status: 503, count: 1}]\n"
    )
    with _running("--config", str(config), "--plain-http", "--admin-token", "adm") as described:
        assert described["api_url"].startswith("http://")
        assert described["admin_token"] == "adm"
        headers = {"Authorization": "Bearer dop_v1_mine"}
        with httpx.Client(base_url=described["api_url"], headers=headers) as client:
            assert client.get("/v2/kubernetes/clusters").status_code == 503
            body = client.get("/v2/kubernetes/clusters").json()
            assert [c["name"] for c in body["kubernetes_clusters"]] == ["only"]


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "doks-access-emulator"
    completed = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "--kube-server" in completed.stdout
