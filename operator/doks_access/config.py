"""Operator settings, read once at start-up from flags and environment variables.

Every flag has an environment variable (``DOKS_ACCESS_<FLAG>``), which is what the Helm chart
sets; a flag given on the command line wins. Values are checked here, the environment's too: a bad
one is a usage error that names the flag or the variable, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn, TypeVar

from doks_access import digitalocean

ENV_PREFIX = "DOKS_ACCESS_"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")

# Reconciliations running at once. They wait on the network (two to six API round trips each) far
# more than they compute, so a few per core keep two cores busy in a burst of new objects; waits
# for DigitalOcean's rate limit do not take a worker. Measured in BENCHMARKS.md ("workers").
DEFAULT_WORKERS = 8

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    digitalocean_api_url: str = digitalocean.DEFAULT_BASE_URL
    digitalocean_ca_file: Path | None = None
    kubeconfig: Path | None = None  # None: in-cluster, else $KUBECONFIG, else ~/.kube/config
    liveness_endpoint: str | None = None
    metrics_endpoint: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # "text" or "json"
    rate_limits: digitalocean.RateLimits = dataclasses.field(
        default_factory=digitalocean.RateLimits
    )
    workers: int = DEFAULT_WORKERS
    leader_election: bool = False
    leader_election_namespace: str = "default"
    leader_election_lease_name: str = "doks-access-operator"
    # Where the token Secrets of ClusterDOAccounts are read from; never a tenant's namespace.
    account_namespace: str = "default"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    env = _Environment(os.environ, parser)
    parser.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    # Flags replace the environment's list rather than adding to it.
    parser.set_defaults(env_namespaces=[n for n in env.text("NAMESPACES", "").split(",") if n])
    parser.add_argument(
        "--digitalocean-api-url",
        default=env.text("DIGITALOCEAN_API_URL", digitalocean.DEFAULT_BASE_URL),
        help="DigitalOcean API base URL (default: %(default)s)",
    )
    parser.add_argument(
        "--digitalocean-ca-file",
        type=Path,
        default=env.text("DIGITALOCEAN_CA_FILE", "") or None,
        help="CA bundle to trust for the DigitalOcean API (a proxy, the emulator)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=env.text("KUBECONFIG", "") or None,
        help="kubeconfig file (default: in-cluster configuration, else $KUBECONFIG, "
        "else ~/.kube/config)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=env.value("WORKERS", positive_int, DEFAULT_WORKERS),
        help="reconciliations at once (default: %(default)s; see BENCHMARKS.md for sizing)",
    )
    parser.add_argument(
        "--liveness-endpoint",
        type=endpoint,
        default=env.value("LIVENESS_ENDPOINT", endpoint, None),
        help="serve a liveness probe here, e.g. http://:8080/healthz (no host: every address, "
        "IPv4 and IPv6)",
    )
    parser.add_argument(
        "--rate-limit-per-minute",
        type=positive_int,
        default=env.value("RATE_LIMIT_PER_MINUTE", positive_int, 250),
        help="DigitalOcean requests per minute per token (default: %(default)s, the API's limit)",
    )
    parser.add_argument(
        "--rate-limit-per-hour",
        type=positive_int,
        default=env.value("RATE_LIMIT_PER_HOUR", positive_int, 5000),
        help="DigitalOcean requests per hour per token (default: %(default)s, the API's limit)",
    )
    parser.add_argument(
        "--rate-limit-margin",
        type=fraction,
        default=env.value("RATE_LIMIT_MARGIN", fraction, 0.1),
        help="fraction of each limit left unused, for other clients of the token "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=env.value("LEADER_ELECTION", boolean, False),
        help="hold a coordination.k8s.io Lease while reconciling, so that of several replicas "
        "one works and the others stand by (default: %(default)s)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=env.text("LEADER_ELECTION_NAMESPACE", "") or _own_namespace(),
        help="namespace of the Lease (default: the pod's namespace, else %(default)s)",
    )
    parser.add_argument(
        "--leader-election-lease-name",
        default=env.text("LEADER_ELECTION_LEASE_NAME", "doks-access-operator"),
        help="name of the Lease (default: %(default)s)",
    )
    parser.add_argument(
        "--account-namespace",
        default=env.text("ACCOUNT_NAMESPACE", "") or _own_namespace(),
        help="namespace of the ClusterDOAccounts' token Secrets; keep tenants out of it "
        "(default: the pod's namespace, else %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        default=env.choice("LOG_FORMAT", LOG_FORMATS, "text"),
        choices=LOG_FORMATS,
        help="text, or one JSON object per line (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-endpoint",
        type=endpoint,
        default=env.value("METRICS_ENDPOINT", endpoint, None),
        help="serve Prometheus metrics here, e.g. http://:9090/metrics (no host: every address, "
        "IPv4 and IPv6)",
    )
    parser.add_argument(
        "--log-level",
        default=env.choice("LOG_LEVEL", LOG_LEVELS, "INFO"),
        choices=LOG_LEVELS,
        help="(default: %(default)s)",
    )


def from_arguments(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        namespaces=tuple(dict.fromkeys(args.namespaces or args.env_namespaces)),
        digitalocean_api_url=args.digitalocean_api_url,
        digitalocean_ca_file=args.digitalocean_ca_file,
        kubeconfig=args.kubeconfig,
        liveness_endpoint=args.liveness_endpoint,
        metrics_endpoint=args.metrics_endpoint,
        log_level=args.log_level,
        log_format=args.log_format,
        workers=args.workers,
        leader_election=args.leader_election,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_lease_name=args.leader_election_lease_name,
        account_namespace=args.account_namespace,
        rate_limits=digitalocean.RateLimits(
            per_minute=args.rate_limit_per_minute,
            per_hour=args.rate_limit_per_hour,
            safety_margin=args.rate_limit_margin,
        ),
    )


# -- value types: each raises ValueError with a message for the usage error ---------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not at least 1")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction from 0 up to (not incl.) 1")
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def endpoint(text: str) -> str:
    """``http://HOST:PORT/PATH``, the form of the liveness and metrics endpoints (HOST may be
    empty: every address)."""
    url = urllib.parse.urlsplit(text)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "http" or port is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form http://HOST:PORT/PATH")
    return text


class _Environment:
    """The ``DOKS_ACCESS_*`` variables, converted like the flags they stand for."""

    def __init__(self, environ: Mapping[str, str], parser: argparse.ArgumentParser) -> None:
        self._values = {
            k.removeprefix(ENV_PREFIX): v for k, v in environ.items() if k.startswith(ENV_PREFIX)
        }
        self._parser = parser

    def text(self, name: str, default: str) -> str:
        return self._values.get(name, default)

    def value(self, name: str, convert: Callable[[str], T], default: T) -> T:
        if name not in self._values or (self._values[name] == "" and default is None):
            return default
        try:
            return convert(self._values[name])
        except (argparse.ArgumentTypeError, ValueError) as exc:
            self._refuse(name, str(exc))

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self._values.get(name, default)
        if value not in choices:
            self._refuse(name, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def _refuse(self, name: str, problem: str) -> NoReturn:
        self._parser.error(f"environment variable {ENV_PREFIX}{name}: {problem}")


def _own_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"
