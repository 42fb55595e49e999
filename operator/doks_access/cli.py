"""The ``doks-access`` command line.

``run`` is the operator. ``fetch`` is the one-shot debugging tool: it makes exactly the API call
the operator makes for one credential and reports what came back, without printing the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import ssl
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doks_access import (
    __version__,
    config,
    digitalocean,
    issuance,
    kube,
    kubeconfig,
    logs,
    rendering,
    spec,
    verify,
)

if TYPE_CHECKING:
    from doks_access import controller, dependencies, dispatch

logger = logging.getLogger(__name__)

PROGRAM = "doks-access"
# The variable doctl reads too; a token on the command line would be visible to every local user.
TOKEN_ENV = "DIGITALOCEAN_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret
SET_WORKERS = 2  # reconciliations of DOClusterAccessSets at once
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Keep DigitalOcean Kubernetes (DOKS) kubeconfigs fresh in Kubernetes Secrets.",
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the operator",
        description="Watch DOClusterAccess objects and keep their Secrets fresh. Every flag can "
        "also be set as DOKS_ACCESS_<FLAG> (e.g. DOKS_ACCESS_DIGITALOCEAN_API_URL).",
    )
    config.add_run_arguments(run)
    fetch = commands.add_parser(
        "fetch",
        help="fetch one kubeconfig through the DigitalOcean API and describe it",
        description=f"Fetch one kubeconfig (token from ${TOKEN_ENV}), validate it like the "
        "operator does, print a JSON summary without secrets, and optionally save it. A failure "
        "is reported as '<reason>: <detail>' with the operator's reasons (RequestRefused, "
        "SSORequired, Unauthorized, ...) and exit status 1.",
    )
    fetch.add_argument("--cluster-id", required=True, help="the DOKS cluster's UUID")
    fetch.add_argument(
        "--expiry-seconds",
        type=int,
        default=0,
        help="credential lifetime; 0 (default) means the API's 7 days",
    )
    fetch.add_argument("--output", type=Path, help="write the kubeconfig here (mode 0600)")
    fetch.add_argument(
        "--api-url", default=digitalocean.DEFAULT_BASE_URL, help="DigitalOcean API base URL"
    )
    fetch.add_argument("--ca-file", type=Path, help="CA bundle to trust for the API (a proxy)")
    fetch.add_argument(
        "--show-secret",
        metavar="NAME",
        help="also print the Secret the operator would write for a DOClusterAccess called NAME "
        "(format Kubeconfig), its data redacted",
    )
    fetch.add_argument(
        "--reveal", action="store_true", help="with --show-secret: print the data unredacted"
    )
    fetch.add_argument(
        "--verify",
        action="store_true",
        help="also prove the credential works: one SelfSubjectReview on the cluster, as "
        "spec.verify does (the identity is printed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(config.from_arguments(args))
    if args.command == "fetch":
        return _fetch(args)
    parser.print_help(sys.stderr)
    return 2


def _run(settings: config.OperatorConfig) -> int:
    logs.configure(level=settings.log_level, json_format=settings.log_format == "json")
    return asyncio.run(_until_signalled(_serve(settings)))


async def _until_signalled(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work``; SIGTERM or SIGINT cancels it, so that the process stops cleanly at once.

    In a container the operator is PID 1, for which the kernel ignores a signal that has no
    handler: a standby, which never starts Kopf (Kopf handles the signals while it runs), would
    wait out the grace period for its SIGKILL. Cancelling unwinds everything as on any exit; a
    leader hands its Lease back on the way.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        logger.info("stopping on %s", signum.name)
        received.append(signum)
        task.cancel()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        return 0
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _serve(settings: config.OperatorConfig) -> int:
    """Build the clients, check the API, then operate (with leader election: while leading).

    A problem that waiting cannot fix (no credentials, no CRD, no access, a busy port) ends the
    process at once with one line on stderr and exit status 1, so that it shows in the pod's
    status instead of in a log of retries.
    """
    # Imported here: Kopf registers the handlers on import, and --version should stay instant.
    from doks_access import dependencies, metrics

    collected = metrics.Metrics()
    try:
        deps = await dependencies.Dependencies.create(settings, collected=collected)
    except kube.StartupError as exc:
        return _cannot_start(exc)
    try:
        await deps.kube.check_access(namespaces=settings.namespaces)
        return await _operate(settings, deps)
    except kube.StartupError as exc:
        return _cannot_start(exc)
    finally:
        await deps.aclose()


async def _operate(settings: config.OperatorConfig, deps: dependencies.Dependencies) -> int:
    """Metrics and liveness for the whole process (a standby answers too); then the operator."""
    import kopf

    from doks_access import controller, dispatch, fleet, handlers, health, metrics

    dispatcher: dispatch.Dispatcher[tuple[str, str]] = dispatch.Dispatcher(workers=settings.workers)
    keeper = controller.Controller(deps=deps, dispatcher=dispatcher)
    # Sets have their own few workers: a fleet's listing never waits behind credentials.
    set_dispatcher: dispatch.Dispatcher[tuple[str, str]] = dispatch.Dispatcher(workers=SET_WORKERS)
    sets = fleet.SetController(deps=deps, dispatcher=set_dispatcher)

    async def operate() -> None:
        # The dispatchers and Kopf's watches start and stop together: losing the Lease cancels
        # this, and with it all of them.
        async with (
            dispatcher.running(keeper.reconcile),
            set_dispatcher.running(sets.reconcile),
        ):
            await kopf.operator(
                registry=handlers.registry(),
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
                standalone=True,
                liveness_endpoint=None,  # served below, for standbys too
                memo=kopf.Memo(deps=deps, controller=keeper, sets=sets),
            )

    async with contextlib.AsyncExitStack() as stack:
        if settings.metrics_endpoint:
            await stack.enter_async_context(
                _serving(metrics.serving(deps.metrics, settings.metrics_endpoint), "metrics")
            )
        if settings.liveness_endpoint:
            problems = functools.partial(_stuck, keeper, set_dispatcher)
            await stack.enter_async_context(
                _serving(health.serving(settings.liveness_endpoint, problems=problems), "liveness")
            )
        logger.info("started; Kubernetes credentials from %s", deps.source.described)
        if not settings.leader_election:
            await operate()
            return 0
        return await _lead(settings, deps, operate)


def _stuck(keeper: controller.Controller, sets: dispatch.Dispatcher[tuple[str, str]]) -> list[str]:
    from doks_access import health

    now = health.loop_time()
    stuck_sets = health.stuck(sets.in_flight(), now=now)
    return health.stuck(keeper.in_flight(), now=now) + [f"set {name}" for name in stuck_sets]


@contextlib.asynccontextmanager
async def _serving(
    endpoint: contextlib.AbstractAsyncContextManager[None], what: str
) -> AsyncIterator[None]:
    try:
        async with endpoint:
            yield
    except OSError as exc:
        raise kube.StartupError(f"cannot serve {what}: {exc}") from None


async def _lead(
    settings: config.OperatorConfig,
    deps: dependencies.Dependencies,
    operate: Callable[[], Awaitable[None]],
) -> int:
    """Reconcile only while holding the Lease; exit at once when it is lost (DESIGN 6)."""
    from doks_access import leadership

    outcome = await leadership.run_while_leading(
        api=deps.api,
        namespace=settings.leader_election_namespace,
        lease_name=settings.leader_election_lease_name,
        identity=f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
        work=operate,
    )
    if outcome.lost:
        print(f"{PROGRAM}: {outcome.reason}; exiting so that a standby takes over", file=sys.stderr)
        return 1
    return 0


def _cannot_start(exc: kube.StartupError) -> int:
    print(f"{PROGRAM}: {exc}", file=sys.stderr)
    return 1


def _fetch(args: argparse.Namespace) -> int:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        print(f"{PROGRAM}: set {TOKEN_ENV} to a DigitalOcean API token", file=sys.stderr)
        return 2
    if args.expiry_seconds < 0:
        print(f"{PROGRAM}: --expiry-seconds must be 0 or more", file=sys.stderr)
        return 2
    trust = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else True
    try:
        credential, identity = asyncio.run(
            _fetch_credential(
                api_url=args.api_url,
                trust=trust,
                token=token,
                cluster_id=args.cluster_id,
                expiry_seconds=args.expiry_seconds or None,
                verifier=verify.identity_of if args.verify else None,
            )
        )
    except issuance.FETCH_ERRORS as exc:
        # The operator's own reasons (status.lastFailureReason), so that both say the same.
        failure = issuance.failure_of(exc)
        print(f"{PROGRAM}: {failure.reason.value}: {failure.detail}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 1
    if args.output is not None:
        _write_private(args.output, credential.raw)
    summary = _summary(credential)
    if identity is not None:
        summary["identity"] = identity
    print(json.dumps(summary, indent=2))
    if args.show_secret:
        preview = _secret_preview(credential, name=args.show_secret, cluster_id=args.cluster_id)
        print(json.dumps(preview if args.reveal else _redacted(preview), indent=2))
    return 0


def _secret_preview(
    credential: kubeconfig.Credential, *, name: str, cluster_id: str
) -> dict[str, object]:
    body = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterID": cluster_id, "tokenSecretRef": {"name": "digitalocean-api"}},
    }
    owner = rendering.Owner(namespace="default", name=name, uid="<uid of the DOClusterAccess>")
    manifest = rendering.render_secret(
        credential=credential,
        spec=spec.parse_spec(body),
        owner=owner,
        cluster_id=cluster_id,
        refresh_request=None,
    )
    return dict(manifest)


def _redacted(manifest: dict[str, object]) -> dict[str, object]:
    data = manifest.get("data")
    if isinstance(data, dict):
        sizes = {key: f"<redacted: {len(value)} base64 characters>" for key, value in data.items()}
        manifest = {**manifest, "data": sizes}
    return manifest


async def _fetch_credential(
    *,
    api_url: str,
    trust: ssl.SSLContext | bool,
    token: str,
    cluster_id: str,
    expiry_seconds: int | None,
    verifier: issuance.Verifier | None,
) -> tuple[kubeconfig.Credential, str | None]:
    async with digitalocean.DigitalOceanClient(base_url=api_url, verify=trust) as client:
        return await issuance.fetch_credential(
            client,
            token=token,
            cluster_id=cluster_id,
            expiry_seconds=expiry_seconds,
            verifier=verifier,
        )


def _summary(credential: kubeconfig.Credential) -> dict[str, str]:
    return {
        "cluster": credential.cluster_name,
        "server": credential.server,
        "auth": credential.auth_kind.value,
        "issuedAt": credential.issued_at.isoformat(),
        "expiresAt": credential.expires_at.isoformat(),
    }


def _write_private(path: Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
