"""``doks-access-emulator``: the DigitalOcean API emulator from a shell, for demos and debugging.

With no arguments it serves the embedded demo account (see ``EmulatorConfig.demo``) over HTTPS on
a free loopback port, and prints one JSON line saying where it listens, the CA file to trust, the
admin token, the API tokens and the clusters. Without ``--kube-server`` the kubeconfigs point at
each cluster's documented endpoint and the webhook only vouches for the emulator's own tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import sys
from pathlib import Path

from doks_access_testkit.emulator.config import EmulatorConfig
from doks_access_testkit.emulator.issuing import KubernetesBackend
from doks_access_testkit.emulator.server import Emulator
from doks_access_testkit.pki import CertificateAuthority, KeyPair


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = EmulatorConfig.from_yaml(args.config) if args.config else EmulatorConfig.demo()
    overrides = {
        "host": args.host,
        "port": args.port,
        "webhook_port": args.webhook_port,
        "tls": False if args.plain_http else None,
        "admin_token": args.admin_token,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})

    # SIGTERM ends the wait below like Ctrl-C does, so the emulator always stops cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with Emulator(config=config, kubernetes=_backend(args)) as emulator:
        description = emulator.describe()
        if args.ca_file:
            shutil.copyfile(emulator.ca_file, args.ca_file)
            description["ca_file"] = str(args.ca_file)
        description["tokens"] = [
            {"token": t.token, "account": t.account, "scopes": sorted(t.scopes)}
            for t in config.tokens
        ]
        description["clusters"] = [
            {"id": c.id, "name": c.name, "region": c.region, "mode": c.mode, "account": c.account}
            for c in emulator.clusters()
        ]
        print(json.dumps(description), flush=True)
        print(
            "DigitalOcean API emulator running; press Ctrl-C to stop", file=sys.stderr, flush=True
        )
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doks-access-emulator",
        description="Serve an emulated DigitalOcean Kubernetes API until interrupted.",
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file with accounts, clusters, faults, quirks"
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="API port (default: a free one)")
    parser.add_argument("--webhook-port", type=int, help="TokenReview webhook port")
    parser.add_argument("--plain-http", action="store_true", help="serve the API without TLS")
    parser.add_argument("--admin-token", help="token for /_emulator/... (default: random)")
    parser.add_argument("--ca-file", type=Path, help="also copy the emulator's CA here")
    kube = parser.add_argument_group("a real Kubernetes API server for the issued credentials")
    kube.add_argument("--kube-server", help="its https URL")
    kube.add_argument("--kube-ca-file", type=Path, help="the CA of its serving certificate")
    kube.add_argument("--client-ca-cert", type=Path, help="the client CA it trusts (certificate)")
    kube.add_argument("--client-ca-key", type=Path, help="the client CA's private key")
    return parser


def _backend(args: argparse.Namespace) -> KubernetesBackend | None:
    given = [args.kube_server, args.kube_ca_file, args.client_ca_cert, args.client_ca_key]
    if not any(given):
        return None
    if not all(given):
        raise SystemExit(
            "--kube-server, --kube-ca-file, --client-ca-cert and --client-ca-key go together"
        )
    client_ca = CertificateAuthority(
        name="client-ca",
        pair=KeyPair(
            cert_pem=args.client_ca_cert.read_bytes(), key_pem=args.client_ca_key.read_bytes()
        ),
    )
    return KubernetesBackend(
        server=args.kube_server, ca_pem=args.kube_ca_file.read_bytes(), client_ca=client_ca
    )


if __name__ == "__main__":
    sys.exit(main())
