"""Fixtures shared by every suite: a Kubernetes API server, a namespace per test, the CRDs.

By default the suite starts its own control plane (etcd, kube-apiserver, kube-controller-manager)
on loopback, once per session, together with a DigitalOcean API emulator that acts as the
apiserver's webhook token authenticator: the credentials it issues really work, and really expire.

Set ``DOKS_ACCESS_TEST_KUBECONFIG`` to a kubeconfig file to run the same tests against an existing
cluster instead (kind, for example); tests that need the local control plane's internals (its
binaries, its client CA, the emulator wired into it) are then skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from doks_access_testkit.binaries import control_plane_bin_dir
from doks_access_testkit.controlplane import ControlPlane, TokenWebhook
from doks_access_testkit.emulator import Emulator, EmulatorConfig
from doks_access_testkit.processes import process_group_alive
from tests import kube, witness

EXTERNAL_KUBECONFIG_ENV = "DOKS_ACCESS_TEST_KUBECONFIG"
REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"

# Operators the end-to-end tests run for the whole session (stoppable, see fresh_digitalocean).
SESSION_OPERATORS: list[Any] = []
# Process groups of every control plane started in this session, checked once the session ends.
_started_process_groups: list[tuple[str, int]] = []
# What the session's witness found once the session ended: (hits, a summary line).
_witnessed: list[Any] = []


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The Kubernetes API server the tests talk to."""

    kubeconfig_path: Path
    control_plane: ControlPlane | None  # None when running against an external cluster
    emulator: Emulator | None  # wired into control_plane; None against an external cluster

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig_path))


def start_control_plane(*, token_webhook: TokenWebhook | None = None) -> ControlPlane:
    """Start a control plane and register its processes for the leak check at session end."""
    plane = ControlPlane(bin_dir=control_plane_bin_dir(), token_webhook=token_webhook)
    plane.start()
    register_processes(plane)
    return plane


def register_processes(plane: ControlPlane) -> None:
    """Have the session-end check look for these processes (again, after a restart)."""
    _started_process_groups.extend((p.name, p.pid) for p in plane.processes)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster, with the session's witness recording its Events and DOClusterAccess objects
    for as long as it runs (see ``tests/witness.py``)."""
    basetemp = tmp_path_factory.getbasetemp()
    external = os.environ.get(EXTERNAL_KUBECONFIG_ENV)
    if external:
        with witness.SESSION.recording(kubeconfig=Path(external), basetemp=basetemp):
            yield Cluster(kubeconfig_path=Path(external), control_plane=None, emulator=None)
        return
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(Emulator(config=EmulatorConfig.demo()))
        plane = start_control_plane(token_webhook=emulator.token_webhook)
        stack.callback(plane.stop)
        emulator.use_control_plane(plane)
        stack.enter_context(
            witness.SESSION.recording(kubeconfig=plane.admin_kubeconfig_path, basetemp=basetemp)
        )
        yield Cluster(
            kubeconfig_path=plane.admin_kubeconfig_path, control_plane=plane, emulator=emulator
        )


@pytest.fixture(scope="session")
def control_plane(cluster: Cluster) -> ControlPlane:
    """The local control plane itself; tests that need it are skipped against external clusters."""
    if cluster.control_plane is None:
        pytest.skip(f"needs the local control plane; {EXTERNAL_KUBECONFIG_ENV} is set")
    return cluster.control_plane


@pytest.fixture(scope="session")
def digitalocean(cluster: Cluster) -> Emulator:
    """The session's DigitalOcean API emulator, whose credentials work against ``control_plane``.

    Tests that change its faults or counters must undo that (see ``fresh_digitalocean``).
    """
    if cluster.emulator is None:
        pytest.skip(f"needs the local control plane's emulator; {EXTERNAL_KUBECONFIG_ENV} is set")
    return cluster.emulator


@pytest.fixture
def fresh_digitalocean(digitalocean: Emulator) -> Iterator[Emulator]:
    """The session emulator with no faults, zeroed counters and empty rate-limit windows, and no
    operator of the end-to-end tests calling it (their ``operator`` fixture starts it again)."""
    for operator in SESSION_OPERATORS:
        operator.stop()
    digitalocean.clear_faults()
    digitalocean.reset_stats()
    digitalocean.reset_rate_limits()
    yield digitalocean
    digitalocean.clear_faults()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    """An administrator's API client."""
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    with kube.fresh_namespace(api) as name:
        yield name


@pytest.fixture(scope="session")
def crds(api: client.ApiClient) -> list[str]:
    """Every CRD in ``crds/``, applied server-side and ``Established``; returns their names."""
    documents = [
        document
        for path in sorted(CRD_DIR.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]
    return [kube.apply_crd(api, document) for document in documents]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test that uses the cluster fixture is a cluster test; marking it lets `-m "not cluster"`
    # select the suites that run anywhere.
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _witnessed:
        return
    hits, summary = _witnessed
    terminalreporter.write_line(summary)
    if hits:
        terminalreporter.write_line("ERROR: token material where none may be:", red=True)
        for hit in hits[:50]:
            terminalreporter.write_line(f"  {hit}")


def pytest_sessionstart(session: pytest.Session) -> None:
    witness.SESSION.start(_basetemp(session.config))


def _basetemp(config: pytest.Config) -> Path:
    # The same directory `tmp_path_factory` hands out; the hooks get no fixtures.
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    return factory.getbasetemp()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any control-plane process outlived its fixture, or if any token material
    reached a log, an Event, a status or a metrics scrape (see ``tests/witness.py``)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    _witnessed.extend(witness.SESSION.finish(_basetemp(session.config)))
    hits = _witnessed[0]
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    leaked = [(name, pgid) for name, pgid in _started_process_groups if process_group_alive(pgid)]
    if leaked:
        for _, pgid in leaked:
            os.killpg(pgid, 9)
        if reporter is not None:
            reporter.write_line(f"ERROR: control-plane processes outlived the tests: {leaked}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Close the event loop that looptime's own hook makes for a synchronous test.

    pytest-asyncio's ``event_loop_policy`` fixture is autouse, so looptime (0.9) asks it for the
    current loop on every test; in a synchronous test there is none, and the policy creates one
    that nobody closes. Its ``ResourceWarning`` then surfaces, as an error under
    ``filterwarnings = error``, in whatever test happens to run the garbage collector.
    """
    policy = pyfuncitem.funcargs.get("event_loop_policy")
    if not isinstance(policy, asyncio.AbstractEventLoopPolicy) or inspect.iscoroutinefunction(
        pyfuncitem.obj
    ):
        return (yield)
    before = _current_loop(policy)
    try:
        return (yield)
    finally:
        after = _current_loop(policy)
        if after is not None and after is not before and not after.is_running():
            after.close()
            policy.set_event_loop(before)


def _current_loop(policy: asyncio.AbstractEventLoopPolicy) -> asyncio.AbstractEventLoop | None:
    # Read without creating: `policy.get_event_loop()` would make the very loop we guard against.
    local = getattr(policy, "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
