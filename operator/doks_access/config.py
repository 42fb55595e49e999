"""Operator settings, read once at start-up from flags and environment variables.

Every flag has an environment variable (``DOKS_ACCESS_<FLAG>``), which is what the Helm chart
sets; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from doks_access import digitalocean

ENV_PREFIX = "DOKS_ACCESS_"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...]  # empty: every namespace
    digitalocean_api_url: str
    digitalocean_ca_file: Path | None
    kubeconfig: Path | None  # None: in-cluster, else $KUBECONFIG or ~/.kube/config
    liveness_endpoint: str | None
    metrics_endpoint: str | None
    log_level: str
    log_format: str  # "text" or "json"
    rate_limits: digitalocean.RateLimits
    leader_election: bool
    leader_election_namespace: str
    leader_election_lease_name: str


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    env = _env(os.environ)
    parser.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    # Flags replace the environment's list rather than adding to it.
    parser.set_defaults(env_namespaces=[n for n in env.get("NAMESPACES", "").split(",") if n])
    parser.add_argument(
        "--digitalocean-api-url",
        default=env.get("DIGITALOCEAN_API_URL", digitalocean.DEFAULT_BASE_URL),
        help="DigitalOcean API base URL (default: %(default)s)",
    )
    parser.add_argument(
        "--digitalocean-ca-file",
        type=Path,
        default=env.get("DIGITALOCEAN_CA_FILE") or None,
        help="CA bundle to trust for the DigitalOcean API (a proxy, the emulator)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=env.get("KUBECONFIG") or None,
        help="kubeconfig file (default: in-cluster configuration, else $KUBECONFIG)",
    )
    parser.add_argument(
        "--liveness-endpoint",
        default=env.get("LIVENESS_ENDPOINT") or None,
        help="serve a liveness probe here, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--rate-limit-per-minute",
        type=int,
        default=int(env.get("RATE_LIMIT_PER_MINUTE", "250")),
        help="DigitalOcean requests per minute per token (default: %(default)s, the API's limit)",
    )
    parser.add_argument(
        "--rate-limit-per-hour",
        type=int,
        default=int(env.get("RATE_LIMIT_PER_HOUR", "5000")),
        help="DigitalOcean requests per hour per token (default: %(default)s, the API's limit)",
    )
    parser.add_argument(
        "--rate-limit-margin",
        type=float,
        default=float(env.get("RATE_LIMIT_MARGIN", "0.1")),
        help="fraction of each limit left unused, for other clients of the token "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=env.get("LEADER_ELECTION", "false").lower() == "true",
        help="hold a coordination.k8s.io Lease while reconciling, so that of several replicas "
        "one works and the others stand by (default: %(default)s)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=env.get("LEADER_ELECTION_NAMESPACE") or _own_namespace(),
        help="namespace of the Lease (default: the pod's namespace, else %(default)s)",
    )
    parser.add_argument(
        "--leader-election-lease-name",
        default=env.get("LEADER_ELECTION_LEASE_NAME", "doks-access-operator"),
        help="name of the Lease (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        default=env.get("LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="text, or one JSON object per line (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-endpoint",
        default=env.get("METRICS_ENDPOINT") or None,
        help="serve Prometheus metrics here, e.g. http://0.0.0.0:9090/metrics",
    )
    parser.add_argument(
        "--log-level",
        default=env.get("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
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
        leader_election=args.leader_election,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_lease_name=args.leader_election_lease_name,
        rate_limits=digitalocean.RateLimits(
            per_minute=args.rate_limit_per_minute,
            per_hour=args.rate_limit_per_hour,
            safety_margin=args.rate_limit_margin,
        ),
    )


def _own_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k.removeprefix(ENV_PREFIX): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}
