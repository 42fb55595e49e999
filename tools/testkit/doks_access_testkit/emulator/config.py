"""What an emulator starts with: where it listens, its accounts and clusters, limits and faults.

One frozen :class:`EmulatorConfig` serves both the Python API (tests build it in code) and the
command line (a YAML file, see :meth:`EmulatorConfig.from_dict` for the format). Unknown keys are
errors, so a typo in a config file fails loudly instead of silently running with defaults.
:meth:`EmulatorConfig.demo` is the embedded data the command runs with when given no file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from doks_access_testkit.emulator.faults import Fault
from doks_access_testkit.emulator.quirks import parse_quirks
from doks_access_testkit.emulator.ratelimit import RateLimits
from doks_access_testkit.emulator.state import (
    ALL_SCOPES,
    DEFAULT_ACCOUNT,
    KUBERNETES_READ,
    ApiToken,
    Cluster,
    Identity,
    InvalidInputError,
)

DEMO_TOKEN = "dop_v1_" + "d3m0" * 16
DEMO_READ_ONLY_TOKEN = "dop_v1_" + "5ead" * 16


@dataclasses.dataclass(frozen=True)
class EmulatorConfig:
    """Everything an :class:`~doks_access_testkit.emulator.server.Emulator` is created with.

    ``port``/``webhook_port`` 0 let the kernel choose; the ports are bound when the emulator is
    constructed, so its URLs are known before it starts. ``tls`` applies to the API only: the
    token webhook is always HTTPS, as the apiserver requires. ``quirks`` names the realism quirks
    to start with (see :mod:`~doks_access_testkit.emulator.quirks`; none by default).
    """

    host: str = "127.0.0.1"
    port: int = 0
    webhook_port: int = 0
    tls: bool = True
    tokens: tuple[ApiToken, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    rate_limits: RateLimits = dataclasses.field(default_factory=RateLimits)
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    admin_token: str | None = None  # None: a random one
    quirks: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        parse_quirks(self.quirks)  # an unknown quirk fails here, not at the first request

    @classmethod
    def demo(cls, **overrides: Any) -> EmulatorConfig:
        """One account with a full-access and a read-only token (no ``tag:read``: it sees no
        tags), and a few kinds of cluster, two of them tagged ``production`` and ``staging``."""
        return dataclasses.replace(cls.from_dict(_DEMO), **overrides)

    @classmethod
    def from_yaml(cls, path: Path) -> EmulatorConfig:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise InvalidInputError(f"{path}: the top level must be a mapping")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        """Parse the file format::

        server: {host: 127.0.0.1, port: 0, webhook_port: 0, tls: true}
        admin_token: s3cret            # optional
        seed: 0                        # for error_rate faults
        quirks: [no_links_on_single_page]   # realism quirks, see emulator.quirks; none by default
        rate_limits: {per_hour: 5000, per_minute: 250}
        accounts:
          - name: team-a
            tokens:
              - dop_v1_abc             # all scopes, or:
              - {token: dop_v1_def, scopes: [kubernetes:read]}
            clusters:
              - name: prod-cluster-01
                region: nyc1
                id: bd5f5959-5e1e-4205-a714-a914373942af   # optional
                mode: token            # or certificate
                sso: false
                status: running        # or provisioning, degraded, error, ...
                tags: [production, team-a]   # shown after the automatic k8s, k8s:<id>
                identity: {username: alice, groups: [system:masters]}
                max_lifetime: 3600     # seconds: caps every credential; 0 or absent: no cap
                sso: true              # SSO enabled: type defaults to sso
                sso_required: true     # only with sso: token credentials are refused ...
                sso_refusal: api       # ... by the API (422), or "cluster": by the webhook (401)
                sso_issuer_url: https://sso.example.com
                sso_client_id: doks-cluster-client
        faults:
          - {kind: latency, seconds: 0.5, endpoint: kubeconfig}
          - {kind: status, status: 422, message: "expiry_seconds must be at most 604800"}
        """
        top_level = {"server", "admin_token", "seed", "rate_limits", "accounts", "faults", "quirks"}
        _only(data, top_level, "")
        server = _mapping(data.get("server", {}), "server")
        _only(server, {"host", "port", "webhook_port", "tls"}, "server")
        tokens: list[ApiToken] = []
        clusters: list[Cluster] = []
        for account in data.get("accounts", []) or []:
            account_tokens, account_clusters = _account(_mapping(account, "accounts[]"))
            tokens += account_tokens
            clusters += account_clusters
        limits = _mapping(data.get("rate_limits", {}), "rate_limits")
        _only(limits, {"per_hour", "per_minute"}, "rate_limits")
        return cls(
            host=str(server.get("host", cls.host)),
            port=int(server.get("port", cls.port)),
            webhook_port=int(server.get("webhook_port", cls.webhook_port)),
            tls=bool(server.get("tls", cls.tls)),
            tokens=tuple(tokens),
            clusters=tuple(clusters),
            rate_limits=RateLimits(**limits),
            faults=tuple(Fault.from_dict(_mapping(f, "faults[]")) for f in data.get("faults", [])),
            seed=int(data.get("seed", 0)),
            admin_token=data.get("admin_token"),
            quirks=parse_quirks(data.get("quirks", []) or []),
        )


def _account(data: Mapping[str, Any]) -> tuple[list[ApiToken], list[Cluster]]:
    _only(data, {"name", "tokens", "clusters"}, "accounts[]")
    name = str(data.get("name", DEFAULT_ACCOUNT))
    tokens = []
    for entry in data.get("tokens", []) or []:
        if isinstance(entry, str):
            entry = {"token": entry}
        entry = _mapping(entry, f"accounts[{name}].tokens[]")
        _only(entry, {"token", "scopes", "name"}, f"accounts[{name}].tokens[]")
        scopes = parse_scopes(entry["scopes"]) if "scopes" in entry else ALL_SCOPES
        tokens.append(
            ApiToken(token=entry["token"], account=name, scopes=scopes, name=entry.get("name", ""))
        )
    clusters = [
        cluster_from_dict(_mapping(c, f"accounts[{name}].clusters[]"), account=name)
        for c in data.get("clusters", []) or []
    ]
    return tokens, clusters


_STRING_CHANGES = ("name", "status", "region", "sso_issuer_url", "sso_client_id", "sso_refusal")
_BOOLEAN_CHANGES = ("sso", "sso_required")
CLUSTER_CHANGES = frozenset({"tags", "max_lifetime", *_STRING_CHANGES, *_BOOLEAN_CHANGES})


def cluster_from_dict(data: Mapping[str, Any], *, account: str) -> Cluster:
    """A cluster from its config or admin-API form (``max_lifetime: 0`` is no cap)."""
    fields = {"version", "mode", "id", "identity", "account"} | CLUSTER_CHANGES
    _only(data, fields, "cluster")
    values = {k: v for k, v in data.items() if k not in ("identity", "account")}
    if "tags" in data:
        values["tags"] = parse_tags(data["tags"])
    if "max_lifetime" in data:
        values["max_lifetime"] = parse_max_lifetime(data["max_lifetime"]) or None
    if "identity" in data:
        identity = _mapping(data["identity"], "cluster.identity")
        _only(identity, {"username", "groups"}, "cluster.identity")
        values["identity"] = Identity(
            username=str(identity["username"]), groups=tuple(identity.get("groups", ()))
        )
    try:
        return Cluster(account=str(data.get("account", account)), **values)
    except TypeError as exc:  # a missing name, for example
        raise ValueError(f"invalid cluster: {exc}") from exc


def cluster_changes_from_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``update_cluster`` from an admin PATCH body, types checked.

    The values themselves (a known status, well-formed tags) are checked by the changed cluster.
    ``max_lifetime: 0`` clears the cap; ``null`` is refused like any other wrong type, since it
    could as well mean "leave it" as "clear it".
    """
    _only(data, set(CLUSTER_CHANGES), f"cluster changes ({', '.join(sorted(CLUSTER_CHANGES))})")
    changes: dict[str, Any] = {}
    for key in _STRING_CHANGES:
        if key in data:
            if not isinstance(data[key], str):
                raise InvalidInputError(f"cluster {key} must be a string, not {data[key]!r}")
            changes[key] = data[key]
    for key in _BOOLEAN_CHANGES:
        if key in data:
            if not isinstance(data[key], bool):
                raise InvalidInputError(f"cluster {key} must be true or false, not {data[key]!r}")
            changes[key] = data[key]
    if "tags" in data:
        changes["tags"] = parse_tags(data["tags"])
    if "max_lifetime" in data:
        changes["max_lifetime"] = parse_max_lifetime(data["max_lifetime"])
    return changes


def parse_max_lifetime(value: Any) -> int:
    """A cap in whole seconds, 0 meaning none (the value that clears a cap at run time)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError(
            f"max_lifetime must be a whole number of seconds, 0 for no cap, not {value!r}"
        )
    return value


def parse_tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidInputError(f"cluster tags must be a list of strings, not {value!r}")
    return tuple(value)


def parse_scopes(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValueError(f"scopes must be a list of strings, not {value!r}")
    return frozenset(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{where or 'the config'} must be a mapping, not {value!r}")
    return value


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) in {where or 'the config'}: {', '.join(unknown)}")


DEMO_CLUSTER_IDS = {
    "prod-cluster-01": "bd5f5959-5e1e-4205-a714-a914373942af",  # the id in DigitalOcean's docs
    "staging-cluster-01": "0c8d5a27-3f61-4b6c-9a55-6f3e2d1b7c40",
    "legacy-cluster": "5f2b7e0a-91d4-4c3e-8b6a-2d9c4e1f0a83",  # certificate mode
    "sso-cluster": "9a4e6c1d-2b7f-4e8a-b3c5-7d1f0e2a6b94",  # SSO enabled: type defaults to sso
}

_DEMO: dict[str, Any] = {
    "accounts": [
        {
            "name": DEFAULT_ACCOUNT,
            "tokens": [
                {"token": DEMO_TOKEN, "name": "full-access"},
                {"token": DEMO_READ_ONLY_TOKEN, "name": "read-only", "scopes": [KUBERNETES_READ]},
            ],
            "clusters": [
                {"name": "prod-cluster-01", "region": "nyc1", "tags": ["production"]},
                {"name": "staging-cluster-01", "region": "fra1", "tags": ["staging"]},
                {"name": "legacy-cluster", "region": "ams3", "mode": "certificate"},
                {"name": "sso-cluster", "region": "sfo3", "sso": True},
            ],
        }
    ]
}
for _cluster in _DEMO["accounts"][0]["clusters"]:
    _cluster["id"] = DEMO_CLUSTER_IDS[_cluster["name"]]
