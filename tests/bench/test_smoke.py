"""``make bench`` keeps working: every scenario runs, at tiny sizes, against the test cluster.

The figures of a smoke run say nothing about speed; what is checked here are the ones that are
not about speed at all: one DigitalOcean call per credential, none on a restart, no 429 storm;
that the idle scenario's census and the workers scenario produced what the report shows; and that
a set over a fleet makes every child Ready with one list call per page and no 429; and that a
change of a ClusterDOAccount reaches every object using it without a DigitalOcean call. The fleet at
the rate limit is left out: at any size it waits a minute for the limit, and proves nothing the
rate-limited burst does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.cli import ORDER
from tests.conftest import REPO_ROOT, SESSION_OPERATORS, Cluster

# Every scenario but the fleet at the rate limit (skipped below), in the benchmark's order.
SCENARIOS = [name for name in ORDER if name != "fleet-rate-limited"]
SMOKE_WORKERS = (2, 8)
SMOKE_FLEET = (30, 190)  # selected, unselected: 220 clusters, two pages


def test_every_scenario_runs_and_reports(cluster: Cluster, crds: list[str], tmp_path: Path) -> None:
    del crds  # the benchmark applies the CRD itself too
    for operator in SESSION_OPERATORS:  # it watches every namespace, the benchmark's too
        operator.stop()
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            f"--kubeconfig={cluster.kubeconfig_path}",
            f"--out={out}",
            f"--keep-logs={tmp_path / 'logs'}",  # for the session's witness: no token in them
            "--skip=fleet-rate-limited",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    document = json.loads(out.read_text())
    results = {result["scenario"]: result for result in document["results"]}

    def value(scenario: str, what: str) -> Any:
        (figure,) = [f for f in results[scenario]["figures"] if f["what"] == what]
        return figure["value"]

    assert list(results) == SCENARIOS
    assert document["machine"]["cpus"] >= 1
    assert value("latency", "objects (sequential)") == 5
    assert value("burst", "DigitalOcean calls per object") == 1.0
    assert value("burst", "API writes per issuance") <= 4
    assert value("restart", "DigitalOcean calls") == 0
    assert value("restart", "API writes") == 0
    assert value("sustained", "DigitalOcean calls per credential issued") == 1.0
    assert value("sustained", "renewals seen") >= 10
    assert value("sustained", "objects expired at the end") == 0
    assert value("rate-limited", "429 responses") == 0
    assert value("rate-limited", "all Ready after") is not None
    assert value("accounts", "all Stalled after") is not None, results["accounts"]["notes"]
    assert value("accounts", "all resumed after") is not None, results["accounts"]["notes"]
    assert value("accounts", "DigitalOcean calls for both changes") == 0
    assert value("accounts", "credentials replaced") == 0
    assert value("idle", "DigitalOcean calls at 40") == 0
    assert value("idle", "RSS at 40") is not None
    census = results["idle"]["details"]["census"]
    assert [taken["watched"] for taken in census["taken"]] == [0, 20, 40]
    breakdown = census["breakdown"]
    assert (breakdown["objects_from"], breakdown["objects_to"]) == (20, 40)
    assert breakdown["rows"]
    assert all(row["type"] and "bytes_per_object" in row for row in breakdown["rows"])
    workers = results["workers"]
    for count in SMOKE_WORKERS:
        label = f"all Ready after, {count} workers"
        (ready,) = [f for f in workers["figures"] if f["what"].startswith(label)]
        assert ready["value"] is not None, workers["notes"]
    runs = workers["details"]["runs"]
    assert [run["workers"] for run in runs] == list(SMOKE_WORKERS)
    assert all(run["digitalocean_calls_per_object"] == 1.0 for run in runs)
    assert "Where the memory per object goes" in completed.stdout
    assert "table" not in completed.stderr
    assert "6. Rate-limited burst" in completed.stdout
    selected, unselected = SMOKE_FLEET
    fleet = results["fleet"]["details"]["run"]
    assert (fleet["clusters"], fleet["selected"]) == (selected + unselected, selected)
    assert fleet["set_ready_s"] is not None, results["fleet"]["notes"]
    assert (fleet["matched"], fleet["ready"], fleet["pending"]) == (selected, selected, 0)
    assert fleet["children_ready"] == selected
    assert fleet["list_calls"] == fleet["pages"] == 2
    assert fleet["kubeconfig_calls"] == selected
    assert fleet["responses_429"] == 0
    assert fleet["quiet"]["digitalocean_calls"] == 0
    assert "LIST doclusteraccesses" in fleet["api_requests"]
    resync = fleet["resync"]
    assert resync["synced_s"] is not None
    assert (resync["list_calls"], resync["kubeconfig_calls"]) == (fleet["pages"], 0)
