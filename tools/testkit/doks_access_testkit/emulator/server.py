"""Running the emulator: a background thread with its own event loop, on loopback, TLS by default.

:class:`Emulator` is built to slot into the control-plane harness. Its constructor creates the TLS
material and *binds* its listening sockets, so its URLs and :attr:`Emulator.token_webhook` exist
before anything runs; a test therefore does::

    emulator = Emulator(config=...)
    plane = ControlPlane(bin_dir=..., token_webhook=emulator.token_webhook)
    emulator.use_control_plane(plane)       # credentials now work against that apiserver
    with emulator, plane:
        ...

It serves from a thread of its own, so synchronous tests, ``pydo`` and asyncio tests (including
ones on a virtual clock such as looptime) all talk to it the same way, over real sockets. The
methods below are the test-side API; they are safe to call while requests are being answered.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from doks_access_testkit.controlplane import ControlPlane, TokenWebhook
from doks_access_testkit.emulator.app import create_api_app
from doks_access_testkit.emulator.clock import Clock, system_clock
from doks_access_testkit.emulator.config import EmulatorConfig
from doks_access_testkit.emulator.core import Emulation
from doks_access_testkit.emulator.faults import Fault, FaultPlan
from doks_access_testkit.emulator.issuing import KubernetesBackend
from doks_access_testkit.emulator.quirks import parse_quirks
from doks_access_testkit.emulator.ratelimit import SlidingWindowLimiter
from doks_access_testkit.emulator.state import (
    ALL_SCOPES,
    DEFAULT_ACCOUNT,
    AccountState,
    ApiToken,
    Cluster,
    IssuedCredential,
    SsoRefusal,
)
from doks_access_testkit.emulator.stats import RequestStats
from doks_access_testkit.emulator.webhook import WEBHOOK_PATH, create_webhook_app
from doks_access_testkit.pki import CertificateAuthority

_START_TIMEOUT_SECONDS = 30.0
_SHUTDOWN_TIMEOUT_SECONDS = 5.0

# Opt-in: called with every Emulator created in this process, so that a test session can learn
# the secrets of every emulator its tests made, and prove none of them leaked (tests/witness.py).
creation_hooks: list[Callable[[Emulator], None]] = []


class Emulator:
    """The DigitalOcean API emulator and its TokenReview webhook; start once, stop once."""

    def __init__(
        self,
        *,
        config: EmulatorConfig | None = None,
        kubernetes: KubernetesBackend | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.config = config = config or EmulatorConfig()
        now = datetime.datetime.now(datetime.UTC)  # TLS validity is real time, whatever `clock`
        self.ca = CertificateAuthority.create(name="doks-access-emulator-ca", now=now)
        hosts = list(dict.fromkeys([config.host, "127.0.0.1", "localhost"]))
        self._serving = self.ca.issue_server(
            common_name="doks-access-emulator", hosts=hosts, now=now
        )
        self.emulation = Emulation(
            state=AccountState(),
            limiter=SlidingWindowLimiter(limits=config.rate_limits),
            faults=FaultPlan(faults=config.faults, seed=config.seed),
            stats=RequestStats(),
            clock=clock,
            admin_token=config.admin_token or _random_token(),
            backend=kubernetes or KubernetesBackend.standalone(now=now),
            quirks=parse_quirks(config.quirks),
        )
        for token in config.tokens:
            self.emulation.state.add_token(token)
        for cluster in config.clusters:
            self.emulation.state.add_cluster(cluster, now=clock())
        self._api_socket = _bound_socket(config.host, config.port)
        try:
            self._webhook_socket = _bound_socket(config.host, config.webhook_port)
        except BaseException:
            self._api_socket.close()
            raise
        self._api_port: int = self._api_socket.getsockname()[1]
        url_host = _url_host(config.host)
        scheme = "https" if config.tls else "http"
        self.api_url = f"{scheme}://{url_host}:{self._api_port}"
        self.webhook_url = f"https://{url_host}:{self._webhook_socket.getsockname()[1]}"
        self.token_webhook = TokenWebhook(url=self.webhook_url + WEBHOOK_PATH, ca_pem=self.ca_pem)
        self._files: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._api_runner: web.AppRunner | None = None
        self._stopped = False
        for hook in creation_hooks:
            hook(self)

    # -- addresses and trust -----------------------------------------------------------------------

    @property
    def ca_pem(self) -> bytes:
        """The CA that signed the API's and the webhook's serving certificates."""
        return self.ca.cert_pem

    @property
    def ca_file(self) -> Path:
        """:attr:`ca_pem` in a file (for ``pydo``'s ``connection_verify``, curl's ``--cacert``)."""
        return self._file_dir() / "ca.crt"

    @property
    def admin_token(self) -> str:
        return self.emulation.admin_token

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the emulator (for httpx ``verify=``, aiohttp ``ssl=``)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def use_kubernetes(self, backend: KubernetesBackend) -> None:
        """Issue credentials for ``backend`` from now on (before or after start)."""
        self.emulation.backend = backend

    def use_control_plane(self, plane: ControlPlane) -> None:
        """Issue credentials that work against the local control plane ``plane``."""
        self.use_kubernetes(
            KubernetesBackend(
                server=plane.server,
                ca_pem=plane.pki.serving_ca.cert_pem,
                client_ca=plane.pki.client_ca,
            )
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Emulator:
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
        """Serve the API and the webhook; returns once both accept connections."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("an Emulator starts once; create a new one")
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="doks-access-emulator", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(_START_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop serving (hung requests are dropped), close the sockets, remove the files."""
        self._stopped = True
        self.emulation.stopping = True
        loop, thread = self._loop, self._thread
        try:
            if loop is not None and thread is not None and thread.is_alive():
                try:
                    future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                    future.result(_SHUTDOWN_TIMEOUT_SECONDS * 4)
                finally:
                    loop.call_soon_threadsafe(loop.stop)
                    thread.join(_SHUTDOWN_TIMEOUT_SECONDS * 4)
        finally:
            self._api_socket.close()
            self._webhook_socket.close()
            if self._files is not None:
                shutil.rmtree(self._files, ignore_errors=True)
                self._files = None

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        await self._serve_api()
        webhook = create_webhook_app(self.emulation)
        await self._serve_app(webhook, self._webhook_socket, self._server_ssl_context())

    async def _serve_api(self) -> None:
        api_tls = self._server_ssl_context() if self.config.tls else None
        self._api_runner = await self._serve_app(
            create_api_app(self.emulation), self._api_socket, api_tls
        )

    async def _serve_app(
        self, app: web.Application, sock: socket.socket, tls: ssl.SSLContext | None
    ) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock, ssl_context=tls).start()
        return runner

    # -- an unreachable API ------------------------------------------------------------------------

    def refuse_connections(self) -> None:
        """Stop listening on the API's port (open connections are cut): clients get "connection
        refused", as when DigitalOcean is unreachable. The token webhook keeps serving, because a
        DOKS cluster authenticates its users without the DigitalOcean API."""
        self._call_in_loop(self._close_api())

    def accept_connections(self) -> None:
        """Listen on the API's port again, after :meth:`refuse_connections`."""
        self._api_socket = _bound_socket(self.config.host, self._api_port)
        self._call_in_loop(self._serve_api())

    async def _close_api(self) -> None:
        runner = self._api_runner
        if runner is None:
            return
        self._api_runner = None
        self._runners.remove(runner)
        await runner.cleanup()
        self._api_socket.close()

    def _call_in_loop(self, work: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            work.close()
            raise RuntimeError("the emulator is not running")
        asyncio.run_coroutine_threadsafe(work, self._loop).result(_START_TIMEOUT_SECONDS)

    async def _shutdown(self) -> None:
        transports = [
            (c.transport, c.transport.get_extra_info("socket"))
            for r in self._runners
            if r.server
            for c in r.server.connections
            if c.transport is not None
        ]
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        # A TLS connection would go on closing (close_notify) after the loop stops and be
        # collected unclosed; a test emulator owes its clients no graceful goodbye: abort.
        still_open = [
            (t, sock) for t, sock in transports if sock is not None and sock.fileno() != -1
        ]
        for transport, _ in still_open:
            transport.abort()
        deadline = asyncio.get_running_loop().time() + _SHUTDOWN_TIMEOUT_SECONDS
        while any(sock.fileno() != -1 for _, sock in still_open):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.001)

    def _server_ssl_context(self) -> ssl.SSLContext:
        directory = self._file_dir()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        return context

    def _file_dir(self) -> Path:
        if self._files is None:
            self._files = Path(tempfile.mkdtemp(prefix="doks-access-emulator-"))
            for name, content in [
                ("ca.crt", self.ca_pem),
                ("tls.crt", self._serving.cert_pem),
                ("tls.key", self._serving.key_pem),
            ]:
                (self._files / name).write_bytes(content)
            (self._files / "tls.key").chmod(0o600)
        return self._files

    # -- the test-side API -------------------------------------------------------------------------

    def add_token(
        self,
        token: str | None = None,
        *,
        account: str = DEFAULT_ACCOUNT,
        scopes: frozenset[str] = ALL_SCOPES,
    ) -> ApiToken:
        """Register an API token (a random ``dop_v1_...`` one if not given)."""
        api_token = ApiToken(
            token=token or f"dop_v1_{_random_token()}", account=account, scopes=scopes
        )
        return self.emulation.state.add_token(api_token)

    def add_cluster(self, cluster: Cluster) -> Cluster:
        return self.emulation.state.add_cluster(cluster, now=self.emulation.clock())

    def add_clusters(self, clusters: Iterable[Cluster]) -> list[Cluster]:
        """Add a whole fleet at once (all or none), listed in the order given."""
        return self.emulation.state.add_clusters(clusters, now=self.emulation.clock())

    def update_cluster(
        self,
        cluster_id: str,
        *,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        status: str | None = None,
        region: str | None = None,
        max_lifetime: int | None = None,
        sso: bool | None = None,
        sso_required: bool | None = None,
        sso_issuer_url: str | None = None,
        sso_client_id: str | None = None,
        sso_refusal: SsoRefusal | None = None,
    ) -> Cluster:
        """Change a cluster (what the API shows, its lifetime cap, its SSO); ``None`` leaves a
        field as it is, and ``max_lifetime=0`` clears the cap (see :class:`Cluster`).

        The id, the place in listings and the credentials already issued stay (a new cap applies
        to the next ones; requiring SSO with ``sso_refusal="cluster"`` refuses the old tokens
        too, since the webhook judges every review). Raises KeyError for an unknown id and
        ValueError for a bad value (then nothing changes).
        """
        cluster = self.emulation.state.update_cluster(
            cluster_id,
            name=name,
            tags=tags,
            status=status,
            region=region,
            max_lifetime=max_lifetime,
            sso=sso,
            sso_required=sso_required,
            sso_issuer_url=sso_issuer_url,
            sso_client_id=sso_client_id,
            sso_refusal=sso_refusal,
        )
        if cluster is None:
            raise KeyError(f"no cluster with id {cluster_id}")
        return cluster

    def remove_cluster(self, cluster_id: str) -> bool:
        """Delete a cluster: the API forgets it (404) and the token webhook refuses its bearer
        tokens. Client certificates it issued are not revoked (the local apiserver trusts its
        client CA), though the kubeconfig endpoint no longer mints any. False if unknown."""
        return self.emulation.state.remove_cluster(cluster_id)

    def clusters(self) -> list[Cluster]:
        return self.emulation.state.clusters()

    def revoke(self, *, cluster_id: str | None = None, token: str | None = None) -> int:
        """Revoke every bearer token of ``cluster_id``, or the one bearer token ``token``; returns
        how many were revoked. The webhook refuses them from now on (an apiserver that accepted
        one in the last ~10 s may go on accepting it from its cache until then).

        Only bearer tokens can be revoked: a certificate-mode cluster raises ValueError, because
        the apiserver checks client certificates by TLS and they last until their NotAfter.
        Raises KeyError for an unknown cluster; an unknown token revokes nothing (0).
        """
        return self.emulation.state.revoke(cluster_id=cluster_id, token=token)

    def set_quirks(self, quirks: Iterable[str]) -> frozenset[str]:
        """Turn on exactly these realism quirks (``()``: none), from the next request on; an
        unknown name is a ValueError. See :mod:`doks_access_testkit.emulator.quirks`."""
        self.emulation.quirks = chosen = parse_quirks(quirks)
        return chosen

    def quirks(self) -> frozenset[str]:
        return self.emulation.quirks

    def add_fault(self, fault: Fault) -> Fault:
        """Inject ``fault``; returns it with its id (for :meth:`remove_fault`)."""
        return self.emulation.faults.add(fault)

    def remove_fault(self, fault_id: str) -> bool:
        return self.emulation.faults.remove(fault_id)

    def clear_faults(self) -> None:
        """Remove every fault; requests hanging because of one are answered now."""
        self.emulation.faults.clear()

    def faults(self) -> list[Fault]:
        return self.emulation.faults.faults()

    def stats(self) -> dict[str, dict[str, int]]:
        """``{endpoint: {outcome: count}}``; outcomes are statuses, ``dropped`` or ``hung``."""
        return self.emulation.stats.snapshot()

    def request_count(
        self,
        endpoint: str | None = None,
        *,
        outcome: str | int | None = None,
        account: str | None = None,
    ) -> int:
        """Requests answered so far; ``account``: only those made with that account's tokens
        (and answered past authentication)."""
        return self.emulation.stats.count(endpoint=endpoint, outcome=outcome, account=account)

    def reset_stats(self) -> None:
        self.emulation.stats.reset()

    def reset_rate_limits(self) -> None:
        self.emulation.limiter.reset()

    def issued_credentials(self, *, cluster_id: str | None = None) -> list[IssuedCredential]:
        """Every credential minted so far, secrets included (``revoked`` says which were)."""
        return self.emulation.state.credentials(cluster_id=cluster_id)

    def describe(self) -> dict[str, Any]:
        """Where it listens and how to talk to it, for people and scripts."""
        return {
            "api_url": self.api_url,
            "webhook_url": self.token_webhook.url,
            "ca_file": str(self.ca_file),
            "admin_token": self.admin_token,
        }


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - an address to print, not to bind
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _random_token() -> str:
    return secrets.token_hex(32)
