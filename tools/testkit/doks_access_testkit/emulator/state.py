"""What the emulated DigitalOcean account knows: API tokens, clusters, and credentials it issued.

Plain data and lookups, no HTTP and no clock of its own (callers pass "now"), so the rules are
testable on their own: a token sees only its own account's clusters (another account's cluster is
a 404, as on DigitalOcean); each issued cluster credential is remembered with its identity and
expiry, because the token webhook must later tell the apiserver who a bearer token is and whether
it still counts. Nothing is ever revoked: DigitalOcean has no revoke either.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from typing import Literal

KUBERNETES_READ = "kubernetes:read"
KUBERNETES_ACCESS_CLUSTER = "kubernetes:access_cluster"
ALL_SCOPES: frozenset[str] = frozenset({KUBERNETES_READ, KUBERNETES_ACCESS_CLUSTER})
DEFAULT_ACCOUNT = "default"
DEFAULT_VERSION = "1.33.1-do.0"

CLUSTER_STATES = (
    "running",
    "provisioning",
    "degraded",
    "error",
    "deleted",
    "upgrading",
    "deleting",
)

ClusterMode = Literal["token", "certificate"]
CredentialKind = Literal["token", "certificate"]


class InvalidInputError(ValueError):
    """Bad data from a config file, the admin API or a request; the message says what."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """The Kubernetes user a cluster credential authenticates as."""

    username: str
    groups: tuple[str, ...] = ()


DEFAULT_IDENTITY = Identity(username="doks-emulator-admin", groups=("system:masters",))


@dataclasses.dataclass(frozen=True)
class ApiToken:
    """A DigitalOcean API token of one account, with its scopes."""

    token: str
    account: str = DEFAULT_ACCOUNT
    scopes: frozenset[str] = ALL_SCOPES
    name: str = ""

    def __post_init__(self) -> None:
        if not self.token or any(c.isspace() for c in self.token):
            raise ValueError("an API token must be a non-empty string without whitespace")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A DOKS cluster; ``mode`` says whether it hands out bearer tokens or client certificates."""

    name: str
    region: str = "nyc1"
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    version: str = DEFAULT_VERSION
    account: str = DEFAULT_ACCOUNT
    mode: ClusterMode = "token"
    sso: bool = False
    identity: Identity = DEFAULT_IDENTITY
    status: str = "running"
    created_at: float | None = None  # epoch seconds; set when added if absent

    def __post_init__(self) -> None:
        uuid.UUID(self.id)  # raises ValueError for anything but a UUID
        if self.mode not in ("token", "certificate"):
            raise ValueError(f"cluster mode must be token or certificate, not {self.mode!r}")
        if not self.name or not self.region:
            raise ValueError("a cluster needs a name and a region")
        if self.status not in CLUSTER_STATES:
            raise ValueError(f"cluster status must be one of {', '.join(CLUSTER_STATES)}")

    @property
    def endpoint(self) -> str:
        """The documented public endpoint of the cluster's API server."""
        return f"https://{self.id}.k8s.ondigitalocean.com"


@dataclasses.dataclass(frozen=True)
class IssuedCredential:
    """One credential minted by a kubeconfig or credentials call.

    ``token`` (token mode) or ``client_key_pem`` (certificate mode) is the secret.
    """

    id: str
    cluster_id: str
    kind: CredentialKind
    identity: Identity
    issued_at: float
    expires_at: float
    token: str | None = None
    client_key_pem: bytes | None = dataclasses.field(default=None, repr=False)

    def valid_at(self, now: float) -> bool:
        return now < self.expires_at


class AccountState:
    """Tokens, clusters and issued credentials; thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[str, ApiToken] = {}
        self._clusters: dict[str, Cluster] = {}
        self._credentials: dict[str, IssuedCredential] = {}
        self._by_secret: dict[str, str] = {}
        self._lock = threading.Lock()

    def add_token(self, token: ApiToken) -> ApiToken:
        with self._lock:
            self._tokens[token.token] = token
            return token

    def add_cluster(self, cluster: Cluster, *, now: float) -> Cluster:
        with self._lock:
            if cluster.id in self._clusters:
                raise ValueError(f"a cluster with id {cluster.id} exists already")
            if cluster.created_at is None:
                cluster = dataclasses.replace(cluster, created_at=now)
            self._clusters[cluster.id] = cluster
            return cluster

    def tokens(self) -> list[ApiToken]:
        with self._lock:
            return list(self._tokens.values())

    def authenticate(self, bearer: str | None) -> ApiToken | None:
        if not bearer:
            return None
        with self._lock:
            return self._tokens.get(bearer)

    def clusters(self, *, account: str | None = None) -> list[Cluster]:
        """Clusters in creation order, all or one account's."""
        with self._lock:
            return [c for c in self._clusters.values() if account is None or c.account == account]

    def cluster(self, cluster_id: str, *, account: str) -> Cluster | None:
        with self._lock:
            cluster = self._clusters.get(cluster_id)
        return cluster if cluster is not None and cluster.account == account else None

    def record(self, credential: IssuedCredential) -> None:
        with self._lock:
            self._credentials[credential.id] = credential
            if credential.token is not None:
                self._by_secret[credential.token] = credential.id

    def review(self, bearer: str, *, now: float) -> IssuedCredential | None:
        """The credential behind a cluster bearer token, if it exists and has not expired."""
        with self._lock:
            credential_id = self._by_secret.get(bearer)
            credential = self._credentials.get(credential_id) if credential_id else None
        return credential if credential is not None and credential.valid_at(now) else None

    def credentials(self, *, cluster_id: str | None = None) -> list[IssuedCredential]:
        with self._lock:
            return [
                c
                for c in self._credentials.values()
                if cluster_id is None or c.cluster_id == cluster_id
            ]
