"""The ``doks-access`` command line.

``run`` is the operator. ``fetch`` is the one-shot debugging tool: it makes exactly the API call
the operator makes for one credential and reports what came back, without printing the token.
``status``, ``renew`` and ``check`` are the day-2 commands (:mod:`doks_access.day2`), also
installed as the kubectl plugin ``kubectl-doca`` (``kubectl doca status``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
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
    day2,
    day2view,
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
PLUGIN = "kubectl doca"  # the kubectl plugin: kubectl-doca, the day-2 commands only
# The variable doctl reads too; a token on the command line would be visible to every local user.
TOKEN_ENV = "DIGITALOCEAN_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret
SET_WORKERS = 2  # reconciliations of DOClusterAccessSets at once
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_parser(*, program: str = PROGRAM, day2_only: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program,
        description="Keep DigitalOcean Kubernetes (DOKS) kubeconfigs fresh in Kubernetes Secrets.",
    )
    parser.add_argument("--version", action="version", version=f"{program} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    if not day2_only:
        _add_operator_commands(commands)
    _add_day2_commands(commands)
    return parser


def _add_operator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_day2_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show DOClusterAccess objects and sets, Ready or not",
        description="A table of DOClusterAccess and DOClusterAccessSet objects: Ready, why, when "
        "the credential expires and is renewed, the last failure, a set's cluster counts. Exit "
        "status 0 when everything shown is Ready, 1 when something is not (or on an API error), "
        "2 on a usage error.",
    )
    _add_connection_arguments(status, all_namespaces=True)
    status.add_argument("name", nargs="?", metavar="NAME", help="only objects with this name")
    status.add_argument(
        "-o",
        "--output",
        choices=("table", "wide", "json"),
        default="table",
        help="table (default), wide (absolute expiry, Secret, message) or json (README)",
    )
    renew = commands.add_parser(
        "renew",
        help="fetch new credentials now and wait for them",
        description="Set the doks-access.dev/refresh-requested-at annotation of each "
        "DOClusterAccess, then wait until each has a new credential (status.issuedAt changes and "
        "Ready is True). Progress goes to stderr. Exit status 0 when every one was renewed. Sets "
        "are refused: renew their children with --all -l doks-access.dev/set=NAME.",
    )
    _add_connection_arguments(renew, all_namespaces=False)
    renew.add_argument("targets", nargs="*", metavar="NS/NAME", help="NS/NAME, or NAME with -n")
    renew.add_argument(
        "--all", action="store_true", help="every DOClusterAccess in the namespace (-n)"
    )
    renew.add_argument(
        "-l", "--selector", help="with --all: only objects with these labels (a label selector)"
    )
    renew.add_argument(
        "--timeout",
        type=_duration,
        default=_duration("2m"),
        help="how long to wait for the new credentials, e.g. 90s, 2m, 1h (default: 2m)",
    )
    renew.add_argument(
        "--no-wait", dest="wait", action="store_false", help="request the renewals and exit"
    )
    check = commands.add_parser(
        "check",
        help="check the CRDs, the operator and your RBAC",
        description="Check that the CRDs are served, that an operator is running (a current "
        "leader-election Lease, or Ready pods labelled app.kubernetes.io/name="
        "doks-access-operator) and that you may run status and renew. Exit status 0 only when "
        "every check passes; each failed check says how to fix it.",
    )
    _add_connection_arguments(check, all_namespaces=True)
    check.add_argument(
        "--lease-namespace",
        help="namespace of the operator's Lease and pods (default: look in every namespace)",
    )
    check.add_argument(
        "--lease-name",
        default=config.OperatorConfig.leader_election_lease_name,
        help="name of the operator's Lease (default: %(default)s)",
    )


def _add_connection_arguments(parser: argparse.ArgumentParser, *, all_namespaces: bool) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default: in-cluster, else $KUBECONFIG, else ~/.kube/config)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-n", "--namespace", help="namespace (default: the current context's namespace)"
    )
    if all_namespaces:
        where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    parser.set_defaults(subparser=parser)


def _duration(text: str) -> datetime.timedelta:
    try:
        return day2view.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(
    argv: Sequence[str] | None = None, *, program: str = PROGRAM, day2_only: bool = False
) -> int:
    parser = build_parser(program=program, day2_only=day2_only)
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(config.from_arguments(args))
    if args.command == "fetch":
        return _fetch(args)
    if args.command in ("status", "renew", "check"):
        return _day2(args, program=program)
    parser.print_help(sys.stderr)
    return day2view.EXIT_USAGE


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """``kubectl-doca``: the day-2 commands as a kubectl plugin (``kubectl doca status``)."""
    return main(argv, program=PLUGIN, day2_only=True)


def _day2(args: argparse.Namespace, *, program: str) -> int:
    """status, renew, check: find the credentials as ``run`` does, then run the command."""
    subparser: argparse.ArgumentParser = args.subparser
    if args.command == "renew":
        _check_renew_usage(args, subparser)  # usage errors before anything else
    try:
        source = kube.find_source(explicit=args.kubeconfig)
    except kube.StartupError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return day2view.EXIT_NOT_READY
    default = day2.context_namespace(source)
    namespace = None if getattr(args, "all_namespaces", False) else args.namespace or default
    command: day2.Command
    if args.command == "status":
        command = functools.partial(
            day2.status,
            namespace=namespace,
            name=args.name,
            output=args.output,
            out=sys.stdout,
            err=sys.stderr,
        )
    elif args.command == "check":
        command = functools.partial(
            day2.check,
            namespaces=[namespace],
            lease_namespace=args.lease_namespace,
            lease_name=args.lease_name,
            out=sys.stdout,
        )
    else:
        command = functools.partial(
            day2.renew,
            targets=_renew_targets(args, subparser, default=default),
            every_in=namespace if args.all else None,
            selector=args.selector,
            patience=args.timeout,
            wait=args.wait,
            err=sys.stderr,
        )
    return asyncio.run(day2.connected(source, command, err=sys.stderr))


def _renew_targets(
    args: argparse.Namespace, parser: argparse.ArgumentParser, *, default: str
) -> list[tuple[str, str]]:
    """The objects named (none with --all); a usage error (exit 2) for a malformed name."""
    try:
        return [
            day2view.parse_target(text, namespace=args.namespace, default=default)
            for text in args.targets
        ]
    except ValueError as exc:
        parser.error(str(exc))


def _check_renew_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Exit with status 2 unless renew is given either names or --all."""
    if args.all and args.targets:
        parser.error("name objects or pass --all, not both")
    if not args.all and not args.targets:
        parser.error("name the objects to renew (NS/NAME, or NAME with -n) or pass --all")
    if args.selector and not args.all:
        parser.error("--selector needs --all")


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
    if await deps.kube.accounts_listable():
        handlers.watch_accounts()
    else:
        logger.info(
            "ClusterDOAccounts are not served to this operator (their CRD is not installed, or "
            "its RBAC does not include them): objects with accountRef will be stalled"
        )

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
