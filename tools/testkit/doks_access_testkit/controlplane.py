"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

This is what the integration and end-to-end tests run against instead of a mocked API: the
same binaries a cluster runs, built from pinned Go modules (``tools/controlplane/build.sh``),
started in a temporary directory with freshly generated PKI. There is no kubelet, so pods never
run; everything the operator needs (CRDs, Secrets, RBAC, events, Leases, garbage collection,
namespace deletion) works.

Authentication is by client certificate (the harness keeps the client CA's key and mints users
with :meth:`ControlPlane.user_kubeconfig`) and, optionally, by bearer tokens checked by a webhook
token authenticator (:class:`TokenWebhook`), which the DigitalOcean API emulator serves so that
the tokens it issues expire when it says.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import http.client
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from doks_access_testkit.pki import ControlPlanePKI, KeyPair
from doks_access_testkit.processes import ManagedProcess

HOST = "127.0.0.1"
ADMIN_USER = "doks-access-test-admin"
_START_TIMEOUT_SECONDS = 90.0
_POLL_SECONDS = 0.1


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or did not become ready."""


@dataclasses.dataclass(frozen=True)
class TokenWebhook:
    """An HTTPS endpoint that answers ``TokenReview`` requests for the apiserver.

    Only its address is needed at start; the endpoint itself may come up later, since the
    apiserver calls it when a bearer token arrives. Results are not cached by the apiserver
    (TTL 0), so a token stops working as soon as the webhook says so.
    """

    url: str
    ca_pem: bytes


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now (the kernel's choice; tiny race until the server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def kubeconfig(*, name: str, server: str, ca_pem: bytes, user: dict[str, str]) -> dict[str, Any]:
    """A kubeconfig document with one cluster, one user and one context, all called ``name``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def client_certificate_user(pair: KeyPair) -> dict[str, str]:
    """The ``user`` stanza of a kubeconfig that authenticates with a client certificate."""
    return {"client-certificate-data": _b64(pair.cert_pem), "client-key-data": _b64(pair.key_pem)}


class ControlPlane:
    """Starts, waits for and stops one control plane; use it as a context manager."""

    def __init__(
        self,
        *,
        bin_dir: Path,
        work_dir: Path | None = None,
        token_webhook: TokenWebhook | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="doks-access-controlplane-"))
        self.token_webhook = token_webhook
        self.pki = ControlPlanePKI.generate(now=_now(), hosts=[HOST, "localhost"])
        self.apiserver_port = free_port()
        self.server = f"https://{HOST}:{self.apiserver_port}"
        self.admin_kubeconfig_path = self.work_dir / "admin.kubeconfig"
        self.processes: list[ManagedProcess] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start etcd, the apiserver and the controller-manager; return once all are usable."""
        try:
            self._write_pki()
            self._write_admin_kubeconfig()
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._start_controller_manager()
            self._wait_for_default_service_account()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process (newest first, so etcd outlives its clients) and remove the files."""
        for process in reversed(self.processes):
            process.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- users -------------------------------------------------------------------------------------

    def user_kubeconfig(
        self,
        *,
        user: str,
        groups: tuple[str, ...] = (),
        lifetime: datetime.timedelta,
    ) -> dict[str, Any]:
        """A kubeconfig for ``user`` in ``groups``; its certificate expires after ``lifetime``."""
        now = _now()
        pair = self.pki.client_ca.issue_client(
            user=user, groups=groups, not_after=now + lifetime, now=now
        )
        return kubeconfig(
            name=user,
            server=self.server,
            ca_pem=self.pki.serving_ca.cert_pem,
            user=client_certificate_user(pair),
        )

    def write_user_kubeconfig(
        self,
        path: Path,
        *,
        user: str,
        groups: tuple[str, ...] = (),
        lifetime: datetime.timedelta,
    ) -> Path:
        document = self.user_kubeconfig(user=user, groups=groups, lifetime=lifetime)
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        return path

    # -- steps -------------------------------------------------------------------------------------

    def _path(self, name: str, content: bytes) -> Path:
        path = self.work_dir / name
        path.write_bytes(content)
        path.chmod(0o600)
        return path

    def _write_pki(self) -> None:
        self._path("serving-ca.crt", self.pki.serving_ca.cert_pem)
        self._path("client-ca.crt", self.pki.client_ca.cert_pem)
        self._path("apiserver.crt", self.pki.apiserver.cert_pem)
        self._path("apiserver.key", self.pki.apiserver.key_pem)
        self._path("sa.key", self.pki.service_account_key_pem)
        self._path("sa.pub", self.pki.service_account_public_pem)

    def _write_admin_kubeconfig(self) -> None:
        # The admin lives as long as the CAs; system:masters bypasses RBAC like a cluster's admin.
        self.write_user_kubeconfig(
            self.admin_kubeconfig_path,
            user=ADMIN_USER,
            groups=("system:masters",),
            lifetime=datetime.timedelta(days=6),
        )

    def _spawn(self, name: str, args: list[str]) -> ManagedProcess:
        process = ManagedProcess(
            name=name,
            args=[str(self.bin_dir / name), *args],
            log_path=self.work_dir / f"{name}.log",
        )
        self.processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
        self._etcd_args = [
            f"--data-dir={self.work_dir / 'etcd'}",
            "--name=default",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
        self._etcd_port = client_port
        self._run_etcd()
        return client_url

    def _run_etcd(self) -> None:
        etcd = self._spawn("etcd", self._etcd_args)
        port = self._etcd_port
        self._wait(etcd, "etcd /health", lambda: _http_ok(HOST, port, "/health", None))

    def _start_apiserver(self, etcd_url: str) -> None:
        w = self.work_dir
        args = [
            f"--etcd-servers={etcd_url}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            # The endpoint reconciler refuses loopback addresses; nothing here routes to them.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={w / 'apiserver-certs'}",
            f"--tls-cert-file={w / 'apiserver.crt'}",
            f"--tls-private-key-file={w / 'apiserver.key'}",
            f"--client-ca-file={w / 'client-ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={w / 'sa.pub'}",
            f"--service-account-signing-key-file={w / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
        ]
        if self.token_webhook is not None:
            args += self._token_webhook_args(self.token_webhook)
        self._apiserver_args = args
        self._run_apiserver()

    def _run_apiserver(self) -> None:
        apiserver = self._spawn("kube-apiserver", self._apiserver_args)
        context = self.admin_ssl_context()
        self._wait(
            apiserver,
            "kube-apiserver /readyz",
            lambda: _http_ok(HOST, self.apiserver_port, "/readyz", context),
        )

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same address: clients see an outage."""
        self._restart("kube-apiserver", self._run_apiserver)

    def restart_etcd(self) -> None:
        """Stop etcd and start it again on its data and addresses: the apiserver loses its store
        for a moment (it answers with errors, then reconnects by itself)."""
        self._restart("etcd", self._run_etcd)

    def _restart(self, name: str, run: Callable[[], None]) -> None:
        (old,) = [p for p in self.processes if p.name == name]
        old.stop()
        # Keep the order etcd, apiserver, ...: stop() walks it backwards, clients before servers.
        index = self.processes.index(old)
        self.processes.remove(old)
        run()
        self.processes.insert(index, self.processes.pop())

    def _token_webhook_args(self, webhook: TokenWebhook) -> list[str]:
        config = kubeconfig(
            name="token-webhook", server=webhook.url, ca_pem=webhook.ca_pem, user={}
        )
        path = self._path("token-webhook.kubeconfig", yaml.safe_dump(config).encode())
        return [
            f"--authentication-token-webhook-config-file={path}",
            "--authentication-token-webhook-version=v1",
            "--authentication-token-webhook-cache-ttl=0s",
        ]

    def _start_controller_manager(self) -> None:
        w = self.work_dir
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.admin_kubeconfig_path}",
                "--controllers=garbage-collector-controller,namespace-controller,"
                "serviceaccount-controller,serviceaccount-token-controller,"
                "root-ca-certificate-publisher-controller",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={w / 'sa.key'}",
                f"--root-ca-file={w / 'serving-ca.crt'}",
                "--leader-elect=false",
                f"--bind-address={HOST}",
                f"--secure-port={free_port()}",
                f"--cert-dir={w / 'controller-manager-certs'}",
            ],
        )

    def _wait_for_default_service_account(self) -> None:
        # The serviceaccount controller creating "default" proves the controller-manager is up and
        # talking to the apiserver.
        manager = self.processes[-1]
        context = self.admin_ssl_context()
        path = "/api/v1/namespaces/default/serviceaccounts/default"
        self._wait(
            manager,
            "the default ServiceAccount",
            lambda: _http_ok(HOST, self.apiserver_port, path, context),
        )

    def admin_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the apiserver and presents the admin's client certificate."""
        context = ssl.create_default_context(cadata=self.pki.serving_ca.cert_pem.decode())
        document = yaml.safe_load(self.admin_kubeconfig_path.read_text())
        user = document["users"][0]["user"]
        cert = self._path("admin.crt", base64.b64decode(user["client-certificate-data"]))
        key = self._path("admin.key", base64.b64decode(user["client-key-data"]))
        context.load_cert_chain(cert, key)
        return context

    def _wait(self, process: ManagedProcess, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.exit_code() is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with {process.exit_code()} while waiting for {what}; "
                    f"last lines of {process.log_path}:\n{process.log_tail()}"
                )
            if ready():
                return
            time.sleep(_POLL_SECONDS)
        raise ControlPlaneError(
            f"timed out after {_START_TIMEOUT_SECONDS:.0f}s waiting for {what}; "
            f"last lines of {process.log_path}:\n{process.log_tail()}"
        )

    def describe(self) -> dict[str, Any]:
        """Facts about the running control plane, for people and scripts (no key material)."""
        return {
            "server": self.server,
            "kubeconfig": str(self.admin_kubeconfig_path),
            "workDir": str(self.work_dir),
            "processes": {p.name: p.pid for p in self.processes},
        }


def _http_ok(host: str, port: int, path: str, context: ssl.SSLContext | None) -> bool:
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection(host, port, timeout=2)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=2, context=context)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
