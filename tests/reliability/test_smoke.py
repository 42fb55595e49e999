"""``make soak`` and ``make chaos`` keep working: the scenarios with no faster analogue in this
suite run at tiny sizes on a control plane of their own, and every check they make must pass.

The other fault scenarios have representative cases here already: a 429 with retry-after and an
expiry in tests/e2e/test_lifecycle.py, restarts of kube-apiserver and etcd in the same file, the
leader's death in tests/e2e/test_high_availability.py, a revoked token and a capped lifetime
caught by the lifetime guard in tests/e2e/test_digitalocean_behaviour.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from doks_access_testkit.controlplane import ControlPlane
from tests.conftest import REPO_ROOT

SCENARIOS = ["soak", "brownout", "operator-kill"]


def test_the_soak_and_the_faults_without_a_faster_test_hold(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    del control_plane  # the suites start their own, wired to their own emulator
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "reliability",
            "--smoke",
            *(f"--scenario={name}" for name in SCENARIOS),
            f"--out={out}",
            f"--keep-logs={tmp_path / 'logs'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-3000:]
    outcomes = {o["scenario"]: o for o in json.loads(out.read_text())["outcomes"]}

    assert list(outcomes) == [*SCENARIOS, "secrecy"]
    assert all(o["passed"] for o in outcomes.values())
    soak = outcomes["soak"]
    assert soak["consumer_refused"] == 0
    assert soak["consumer_attempts"] > 100
    assert min(soak["figures"]["rotations seen per object"].values()) >= 2
    assert outcomes["operator-kill"]["objects_lost"] == 0
    assert outcomes["secrecy"]["figures"]["hits"] == 0
