"""No control-plane process outlives its owner: not after a stop, a failed start, or a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from doks_access_testkit.binaries import BIN_DIR_ENV
from doks_access_testkit.controlplane import ControlPlane, ControlPlaneError
from doks_access_testkit.processes import process_group_alive
from tests import kube
from tests.conftest import start_control_plane


def _all_gone(pgids: list[int]) -> bool:
    return not any(process_group_alive(pgid) for pgid in pgids)


def test_stopping_a_control_plane_ends_every_process(control_plane: ControlPlane) -> None:
    plane = start_control_plane()
    pgids = [process.pid for process in plane.processes]
    assert [p.name for p in plane.processes] == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
    ]
    assert all(process_group_alive(pgid) for pgid in pgids)

    plane.stop()

    assert _all_gone(pgids)
    assert not plane.work_dir.exists()


def test_a_failed_start_stops_what_already_started(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "etcd").symlink_to(control_plane.bin_dir / "etcd")
    broken = bin_dir / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'refusing to start' >&2\nexit 3\n")
    broken.chmod(0o755)
    plane = ControlPlane(bin_dir=bin_dir)

    with pytest.raises(ControlPlaneError, match="kube-apiserver exited with 3") as raised:
        plane.start()

    assert "refusing to start" in str(raised.value)
    assert _all_gone([process.pid for process in plane.processes])


def _start_cli(control_plane: ControlPlane, tmp_path: Path) -> tuple[subprocess.Popen[str], dict]:
    env = {**os.environ, BIN_DIR_ENV: str(control_plane.bin_dir)}
    cli = subprocess.Popen(
        [sys.executable, "-m", "doks_access_testkit.cli", "--kubeconfig", str(tmp_path / "kc")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert cli.stdout is not None
    described = json.loads(cli.stdout.readline())
    return cli, described


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_the_command_line_harness_leaves_nothing_behind_when_signalled(
    control_plane: ControlPlane, tmp_path: Path, signum: signal.Signals
) -> None:
    cli, described = _start_cli(control_plane, tmp_path)
    try:
        pgids = list(described["processes"].values())
        assert sorted(described["processes"]) == sorted(
            ["etcd", "kube-apiserver", "kube-controller-manager"]
        )
        assert (tmp_path / "kc").read_text().startswith("apiVersion: v1")

        cli.send_signal(signum)
        cli.wait(timeout=60)

        # After SIGKILL the harness cannot clean up; the kernel's parent-death signal must.
        kube.eventually(lambda: _all_gone(pgids), what="every control-plane process to exit")
        if signum == signal.SIGKILL:
            shutil.rmtree(described["workDir"])  # a killed harness cannot remove its files
        else:
            assert cli.returncode == 0
            assert not Path(described["workDir"]).exists()
    finally:
        cli.kill()
        cli.wait()
        if cli.stdout is not None:
            cli.stdout.close()
