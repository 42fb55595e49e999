"""What a benchmark runs against: a Kubernetes API server, DigitalOcean API emulators, the operator.

By default a local control plane (etcd, kube-apiserver, kube-controller-manager) built from the
pinned Go modules; with a kubeconfig, any cluster (kind, for example). The operator always runs as
a process of its own on this machine, exactly as ``doks-access run``, so its memory and CPU are
read from ``/proc`` and nothing the benchmark does is counted as the operator's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench import census as bench_census
from bench import procstat
from doks_access_testkit.binaries import control_plane_bin_dir
from doks_access_testkit.controlplane import ControlPlane, free_port
from doks_access_testkit.emulator import ApiToken, Cluster, Emulator, EmulatorConfig, RateLimits
from doks_access_testkit.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"
CRD_PATH = CRD_DIR / "doclusteraccesses.doks-access.dev.yaml"
TOKEN = "dop_v1_" + "be7c" * 16
# Limits no scenario reaches: DigitalOcean's own are scenario 6's subject, not the others'.
UNLIMITED = RateLimits(per_hour=10_000_000, per_minute=1_000_000)
DIGITALOCEAN_LIMITS = RateLimits()  # 5,000 per hour, 250 per minute, per token


@dataclasses.dataclass(frozen=True)
class Target:
    """The cluster the benchmark talks to."""

    kubeconfig: Path
    local: bool  # our own control plane (its figures are comparable with BENCHMARKS.md)


def fleet_emulator(*, clusters: int, limits: RateLimits) -> Emulator:
    """An emulator with one token and ``clusters`` token-mode clusters (not started)."""
    return account_emulator(
        (Cluster(name=f"bench-{i:03d}", region="nyc1") for i in range(clusters)), limits=limits
    )


def account_emulator(clusters: Iterable[Cluster], *, limits: RateLimits) -> Emulator:
    """An emulator with one account: the benchmark's token and ``clusters``, listed in this
    order (not started)."""
    config = EmulatorConfig(
        tokens=(ApiToken(token=TOKEN, name="bench"),),
        clusters=tuple(clusters),
        rate_limits=limits,
    )
    return Emulator(config=config)


class OperatorProcess:
    """``doks-access run`` against ``kubeconfig`` and ``emulator``, watching ``namespaces``."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        emulator: Emulator,
        namespaces: list[str],
        log_path: Path,
        limits: RateLimits,
        profile: Path | None = None,
        extra_args: Sequence[str] = (),
        census: Path | None = None,
    ) -> None:
        self.metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
        # cProfile (deterministic, in the process; it slows the operator down, so a profiled run's
        # timings are not benchmark figures) writes its stats when the operator exits.
        profiling = [] if profile is None else ["-m", "cProfile", "-o", f"{profile}.pstats"]
        # With a census prefix, the same command through bench.census, which answers SIGUSR1 with
        # a census of the live objects (see census()); the operator's code is the same.
        entry = ["doks_access"] if census is None else ["bench.census", "--"]
        self._args = [
            sys.executable,
            *profiling,
            "-m",
            *entry,
            "run",
            f"--kubeconfig={kubeconfig}",
            *(f"--namespace={namespace}" for namespace in namespaces),
            *extra_args,
        ]
        self._env = {
            **os.environ,
            "DOKS_ACCESS_DIGITALOCEAN_API_URL": emulator.api_url,
            "DOKS_ACCESS_DIGITALOCEAN_CA_FILE": str(emulator.ca_file),
            "DOKS_ACCESS_RATE_LIMIT_PER_MINUTE": str(limits.per_minute),
            "DOKS_ACCESS_RATE_LIMIT_PER_HOUR": str(limits.per_hour),
            "DOKS_ACCESS_METRICS_ENDPOINT": self.metrics_url,
            "DOKS_ACCESS_LOG_FORMAT": "json",
            "DOKS_ACCESS_LOG_LEVEL": "INFO",
        }
        self._census_prefix = census
        self._census_requests = 0
        if census is not None:
            path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
            self._env.update({bench_census.ENV: str(census), "PYTHONPATH": path})
        self.log_path = log_path
        self.process = self._spawn()

    def _spawn(self) -> ManagedProcess:
        self._census_requests = 0  # a new process counts its requests from 1 again
        process = ManagedProcess(
            name="doks-access", args=self._args, log_path=self.log_path, env=self._env
        )
        try:
            self._wait_serving(process)
        except RuntimeError:
            process.stop()  # one that never served is not left running
            raise
        return process

    def _wait_serving(self, process: ManagedProcess) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.exit_code() is not None:
                raise RuntimeError(f"the operator exited:\n{process.log_tail()}")
            with contextlib.suppress(OSError):
                self.metrics()
                return
            time.sleep(0.1)
        raise RuntimeError(f"the operator did not start serving metrics:\n{process.log_tail()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return procstat.rss_bytes(self.pid)

    def peak_rss(self) -> int:
        return procstat.peak_rss_bytes(self.pid)

    def cpu(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def census(self, *, timeout: float = 120.0) -> dict[str, Any]:
        """Ask the operator for a census of its live objects (SIGUSR1) and wait for it.

        Only for an operator started with ``census``. Blocking: call it in a thread from async code.
        """
        if self._census_prefix is None:
            raise RuntimeError("this operator was not started through bench.census")
        self._census_requests += 1
        path = bench_census.path_for(
            self._census_prefix, pid=self.pid, request=self._census_requests
        )
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not self.alive():
                raise RuntimeError(f"the operator exited:\n{self.process.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no census in {path} after {timeout:.0f} s")
            time.sleep(0.05)
        document: dict[str, Any] = json.loads(path.read_text())
        if "error" in document:
            raise RuntimeError(f"the census failed: {document['error']}")
        return document

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:  # noqa: S310 - ours
            text: str = response.read().decode()
        return text

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as when a node dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop()

    def start(self) -> None:
        self.process = self._spawn()

    def stop(self) -> None:
        self.process.stop()

    def alive(self) -> bool:
        return self.process.exit_code() is None


def crd_document() -> dict[str, object]:
    """The DOClusterAccess CRD alone."""
    document: dict[str, object] = yaml.safe_load(CRD_PATH.read_text())
    return document


def crd_documents() -> list[dict[str, object]]:
    """Every CRD of ``crds/``: the operator refuses to start unless all of them are installed."""
    documents: list[dict[str, object]] = [
        yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("*.yaml"))
    ]
    return documents


def local_control_plane(stack: contextlib.ExitStack) -> ControlPlane:
    plane = ControlPlane(bin_dir=control_plane_bin_dir())
    stack.enter_context(plane)
    return plane
